import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { CniError } from "./cni-error.ts";
import {
  PathDelegateExecutor,
  SAVED_EXTRA_CA_CERTS,
  callerEnvironment,
  execPlugin,
  findInPath,
  isOwnNetns,
} from "./exec.ts";

const root = mkdtempSync(join(tmpdir(), "fts-cni-exec-"));
after(() => rmSync(root, { recursive: true, force: true }));
const a = join(root, "a");
const b = join(root, "b");
mkdirSync(a);
mkdirSync(b);
mkdirSync(join(a, "dir-not-plugin"));

function plugin(dir: string, name: string, script: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${script}\n`);
  chmodSync(p, 0o755);
  return p;
}
// echoes its command, the conf it got and one inherited variable
plugin(
  b,
  "echo",
  'printf \'{"cmd":"%s","conf":%s,"x":"%s"}\' "$CNI_COMMAND" "$(cat)" "$X_INHERITED"; echo note >&2',
);
plugin(b, "fails", 'echo \'{"code":7,"msg":"bad conf","details":"d"}\'; exit 1');
plugin(b, "stderr-only", "echo oops >&2; exit 2");
plugin(b, "garbage", "echo not-json; exit 1");
plugin(b, "bad-result", "echo not-json");
plugin(b, "ignores-stdin", "echo '{\"ok\":true}'");
plugin(b, "killed", "kill -KILL $$");
plugin(b, "big-output", "head -c 3000000 /dev/zero | tr '\\0' x");

test("findInPath searches CNI_PATH in order and names the plugin and the path when absent", () => {
  assert.equal(findInPath("echo", `${a}:${b}`), join(b, "echo"));
  assert.throws(
    () => findInPath("bridge", `${a}:${b}`),
    new Error(
      `failed to find plugin "bridge" in path [${a} ${b}]: install it into one of these directories or add its directory to CNI_PATH`,
    ),
  );
  assert.throws(() => findInPath("dir-not-plugin", a), /failed to find plugin "dir-not-plugin"/);
  assert.throws(() => findInPath("../b/echo", a), /invalid plugin name: \.\.\/b\/echo/);
  assert.throws(() => findInPath("", a), /no plugin name provided/);
});

test("the executor passes the environment, sets CNI_COMMAND, sends the conf on stdin, forwards stderr", async () => {
  const logged: string[] = [];
  const ex = new PathDelegateExecutor(
    { CNI_PATH: `${a}:${b}`, CNI_COMMAND: "ADD", X_INHERITED: "yes" },
    (t) => logged.push(t),
  );
  assert.deepEqual(JSON.parse(await ex.add("echo", '{"k":1}')), { cmd: "ADD", conf: { k: 1 }, x: "yes" });
  await ex.del("echo", "{}");
  assert.deepEqual(logged, ["note\n", "note\n"]);
  await assert.rejects(
    ex.add("bad-result", "{}"),
    /delegate plugin "bad-result" returned a result that is not JSON/,
  );
});

test("a failing plugin's CNI error is returned as is; otherwise its stderr or stdout is reported", async () => {
  await assert.rejects(
    execPlugin(join(b, "fails"), "{}", {}),
    (e: CniError) => e.code === 7 && e.message === "bad conf" && e.details === "d",
  );
  await assert.rejects(
    execPlugin(join(b, "stderr-only"), "{}", {}),
    /netplugin .*stderr-only failed: "oops\\n"/,
  );
  await assert.rejects(
    execPlugin(join(b, "garbage"), "{}", {}),
    /failed but error parsing its diagnostic message "not-json\\n"/,
  );
  const notExec = join(b, "noexec");
  writeFileSync(notExec, "#!/bin/sh\n");
  await assert.rejects(execPlugin(notExec, "{}", {}), /cannot execute .*noexec: .*EACCES/);
});

test("a plugin may exit without reading its stdin; a signal and a large output are reported as such", async () => {
  // a conf larger than a pipe's buffer, so that writing it fails (EPIPE) once the plugin has exited
  const big = JSON.stringify({ pad: "y".repeat(1 << 20) });
  assert.deepEqual(await execPlugin(join(b, "ignores-stdin"), big, {}), {
    stdout: '{"ok":true}\n',
    stderr: "",
  });
  await assert.rejects(
    execPlugin(join(b, "killed"), "{}", {}),
    new RegExp(`netplugin ${join(b, "killed")} failed with no error message: signal SIGKILL`),
  );
  // no output limit (spawnSync's default would be 1 MiB)
  assert.equal((await execPlugin(join(b, "big-output"), "{}", {})).stdout.length, 3_000_000);
});

test("a missing plugin binary is reported with spawn's wording", async () => {
  await assert.rejects(
    execPlugin(join(b, "absent"), "{}", {}),
    new CniError(
      0,
      `netplugin failed with no error message: cannot execute ${join(b, "absent")}: spawn ${join(b, "absent")} ENOENT`,
    ),
  );
});

test("callerEnvironment gives back the NODE_EXTRA_CA_CERTS that bin/flannel kept aside", async () => {
  assert.deepEqual(callerEnvironment({ A: "1", [SAVED_EXTRA_CA_CERTS]: "/ca.pem" }), {
    A: "1",
    NODE_EXTRA_CA_CERTS: "/ca.pem",
  });
  assert.deepEqual(callerEnvironment({ A: "1", [SAVED_EXTRA_CA_CERTS]: "" }), {
    A: "1",
    NODE_EXTRA_CA_CERTS: "",
  });
  assert.deepEqual(callerEnvironment({ A: "1" }), { A: "1" });
  // and the delegate gets it
  plugin(b, "echo-ca", 'cat >/dev/null; printf \'{"ca":"%s"}\' "$NODE_EXTRA_CA_CERTS"');
  const env = callerEnvironment({ CNI_PATH: b, [SAVED_EXTRA_CA_CERTS]: "/ca.pem" });
  const ex = new PathDelegateExecutor(env, () => {});
  assert.deepEqual(JSON.parse(await ex.add("echo-ca", "{}")), { ca: "/ca.pem" });
});

test("isOwnNetns compares namespace inodes", () => {
  assert.equal(isOwnNetns("/proc/self/ns/net"), true);
  assert.equal(isOwnNetns(join(root, "nope")), false);
});
