import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { type SpawnResult, spawnPlugin, spawnWithBinding, spawnWithChildProcess } from "./spawn.ts";

const root = mkdtempSync(join(tmpdir(), "fts-cni-spawn-"));
after(() => rmSync(root, { recursive: true, force: true }));

function script(name: string, body: string, mode = 0o755): string {
  const p = join(root, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, mode);
  return p;
}

const cases: { name: string; path: string; stdin: string }[] = [
  // stdin echoed back, more than spawnSync's default 1 MiB output limit, and an environment variable
  {
    name: "round trip",
    path: script("cat", 'cat; printf "%s" "$FTS_X" >&2'),
    stdin: "x".repeat(3 * 1024 * 1024),
  },
  {
    name: "exit status",
    path: script("exit3", "cat >/dev/null; echo out; echo err >&2; exit 3"),
    stdin: "{}",
  },
  { name: "killed", path: script("killed", "cat >/dev/null; kill -TERM $$"), stdin: "{}" },
  // exits without reading a stdin larger than the pipe: EPIPE, with its status
  { name: "stdin not read", path: script("noread", "exit 0"), stdin: "y".repeat(1024 * 1024) },
  { name: "missing", path: join(root, "does-not-exist"), stdin: "{}" },
  { name: "not executable", path: script("noexec", "exit 0", 0o644), stdin: "{}" },
];

function summary(r: SpawnResult): unknown {
  return {
    status: r.status,
    signal: r.signal,
    stdout: r.stdout.toString("utf8"),
    stderr: r.stderr.toString("utf8"),
    error: r.error && {
      code: r.error.code,
      errno: r.error.errno,
      message: r.error.message,
      syscall: r.error.syscall,
    },
  };
}

const env = { PATH: process.env["PATH"] ?? "/usr/bin:/bin", FTS_X: "from-env" };

test("this Node offers the spawn_sync binding (the fast path is taken)", () => {
  assert.notEqual(spawnWithBinding(cases[1]!.path, "", env), undefined);
});

for (const c of cases) {
  test(`binding and child_process agree: ${c.name}`, async () => {
    const fast = spawnWithBinding(c.path, c.stdin, env);
    assert.ok(fast, "binding unavailable");
    const slow = await spawnWithChildProcess(c.path, c.stdin, env);
    assert.deepEqual(summary(fast), summary(slow));
  });
}

test("the results are what the scripts do", async () => {
  const [cat, exit3, killed, noread, missing, noexec] = cases;
  const r1 = await spawnPlugin(cat!.path, cat!.stdin, env);
  assert.equal(r1.status, 0);
  assert.equal(r1.stdout.length, 3 * 1024 * 1024);
  assert.equal(r1.stderr.toString(), "from-env");
  assert.equal(r1.error, undefined);
  const r2 = await spawnPlugin(exit3!.path, exit3!.stdin, env);
  assert.deepEqual([r2.status, r2.stdout.toString(), r2.stderr.toString()], [3, "out\n", "err\n"]);
  const r3 = await spawnPlugin(killed!.path, killed!.stdin, env);
  assert.deepEqual([r3.status, r3.signal], [null, "SIGTERM"]);
  const r4 = await spawnPlugin(noread!.path, noread!.stdin, env);
  assert.deepEqual([r4.status, r4.error?.code], [0, "EPIPE"]);
  const r5 = await spawnPlugin(missing!.path, missing!.stdin, env);
  assert.deepEqual([r5.status, r5.error?.code], [null, "ENOENT"]);
  assert.equal(r5.error?.message, `spawnSync ${missing!.path} ENOENT`);
  const r6 = await spawnPlugin(noexec!.path, noexec!.stdin, env);
  assert.equal(r6.error?.code, "EACCES");
});

test("a plugin run with deprecation warnings on uses child_process and prints no warning", () => {
  const main = join(root, "main.mjs");
  writeFileSync(
    main,
    `import { spawnWithBinding, spawnPlugin } from ${JSON.stringify(new URL("./spawn.ts", import.meta.url).href)};\n` +
      `if (spawnWithBinding("/bin/true", "", {}) !== undefined) throw new Error("binding used");\n` +
      `const r = await spawnPlugin("/bin/echo", "", {});\n` +
      `process.stdout.write(String(r.status) + ":" + r.stdout.toString());\n`,
  );
  for (const flag of ["--pending-deprecation", "--throw-deprecation"]) {
    const out = execFileSync(process.execPath, ["--import", "tsx", flag, main], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    assert.equal(out, "0:\n");
  }
});
