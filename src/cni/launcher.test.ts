// bin/flannel, the plugin's /bin/sh launcher, with stand-in bundles that report how they were started.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, test } from "node:test";
import { SAVED_EXTRA_CA_CERTS } from "./exec.ts";

const LAUNCHER = resolve(import.meta.dirname, "../../bin/flannel");
const root = mkdtempSync(join(tmpdir(), "fts-cni-launcher-"));
after(() => rmSync(root, { recursive: true, force: true }));

// What a stand-in bundle prints: which file ran, its arguments and the variables the launcher handles.
const REPORT = (file: string): string =>
  `process.stdout.write(JSON.stringify({ file: ${JSON.stringify(file)}, args: process.argv.slice(2), ` +
  `ca: process.env.NODE_EXTRA_CA_CERTS ?? null, saved: process.env.${SAVED_EXTRA_CA_CERTS} ?? null }));\n`;

/** An install: <dir>/bin/flannel and the given stand-in bundles in <dir>/dist. */
function install(name: string, bundles: ("flannel.cjs" | "flannel.js")[]): string {
  const dir = join(root, name);
  mkdirSync(join(dir, "bin"), { recursive: true });
  mkdirSync(join(dir, "dist"));
  copyFileSync(LAUNCHER, join(dir, "bin/flannel"));
  for (const b of bundles) writeFileSync(join(dir, "dist", b), REPORT(b));
  return join(dir, "bin/flannel");
}

function run(bin: string, env: Record<string, string>): Record<string, unknown> {
  const res = spawnSync(bin, ["x"], {
    encoding: "utf8",
    env: { PATH: `${dirname(process.execPath)}:/usr/bin:/bin`, ...env },
  });
  assert.equal(res.status, 0, res.stderr);
  return JSON.parse(res.stdout) as Record<string, unknown>;
}

test("runs dist/flannel.cjs with the arguments, also through a symlink", () => {
  const bin = install("cjs", ["flannel.cjs", "flannel.js"]);
  const want = { file: "flannel.cjs", args: ["x"], ca: null, saved: null };
  assert.deepEqual(run(bin, {}), want);
  const link = join(root, "link-dir", "flannel");
  mkdirSync(dirname(link));
  symlinkSync(bin, link);
  assert.deepEqual(run(link, {}), want);
});

test("finds its bundle when started by a relative path or a bare name", () => {
  const bin = install("relative", ["flannel.cjs"]);
  const want = { file: "flannel.cjs", args: ["x"], ca: null, saved: null };
  const env = { PATH: `${dirname(process.execPath)}:/usr/bin:/bin` };
  for (const [cmd, args] of [
    ["./flannel", ["x"]],
    ["sh", ["flannel", "x"]],
  ] as const) {
    const res = spawnSync(cmd, args, { cwd: dirname(bin), encoding: "utf8", env });
    assert.equal(res.status, 0, res.stderr);
    assert.deepEqual(JSON.parse(res.stdout), want, `${cmd} ${args.join(" ")}`);
  }
});

test("runs dist/flannel.js when only the ES module bundle was built", () => {
  assert.deepEqual(run(install("esm-only", ["flannel.js"]), {}), {
    file: "flannel.js",
    args: ["x"],
    ca: null,
    saved: null,
  });
});

test("starts Node without NODE_EXTRA_CA_CERTS and keeps the caller's value, even an empty one", () => {
  const bin = install("ca", ["flannel.cjs"]);
  assert.deepEqual(run(bin, { NODE_EXTRA_CA_CERTS: "/etc/ssl/certs/ca-certificates.crt" }), {
    file: "flannel.cjs",
    args: ["x"],
    ca: null,
    saved: "/etc/ssl/certs/ca-certificates.crt",
  });
  assert.deepEqual(run(bin, { NODE_EXTRA_CA_CERTS: "" }), {
    file: "flannel.cjs",
    args: ["x"],
    ca: null,
    saved: "",
  });
});
