import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { ExecHookRunner, expandVars, hookArgv } from "./hook.ts";

const env: Record<string, string> = { SUBNET: "10.244.2.0/24", PUBLIC_IP: "192.168.0.2", A_1: "x" };
const lookup = (n: string): string | undefined => env[n];

test("variables expand as Go's os.Expand does", () => {
  const cases: [string, string][] = [
    ["$SUBNET", "10.244.2.0/24"],
    ["${SUBNET}", "10.244.2.0/24"],
    ["via=$PUBLIC_IP,", "via=192.168.0.2,"],
    ["${PUBLIC_IP}:8285", "192.168.0.2:8285"],
    ["$A_1b", ""], // the name runs as far as name characters go
    ["${A_1}b", "xb"],
    ["$MISSING", ""],
    ["cost$", "cost$"], // a trailing "$" stays
    ["a$/b", "a$/b"], // "$" before a non-name character stays
    ["${}", ""], // bad syntax is dropped
    ["${SUBNET", "SUBNET"], // unclosed brace: only "${" is dropped
    ["$1$$", ""], // special one-character names, looked up like others
    ["no vars", "no vars"],
  ];
  for (const [input, want] of cases) assert.equal(expandVars(input, lookup), want, input);
});

test("a hook is split on whitespace before expansion, so values never split or inject words", () => {
  assert.deepEqual(hookArgv("  ip route replace\t$SUBNET via ${PUBLIC_IP}  \n", env), [
    "ip",
    "route",
    "replace",
    "10.244.2.0/24",
    "via",
    "192.168.0.2",
  ]);
  assert.deepEqual(hookArgv("echo $V", { V: "a b; rm -rf /" }), ["echo", "a b; rm -rf /"]);
  // No quoting: quotes are ordinary characters, as with strings.Fields.
  assert.deepEqual(hookArgv(`echo "a b"`, {}), ["echo", `"a`, `b"`]);
  assert.deepEqual(hookArgv("   ", {}), []);
});

const dir = mkdtempSync(join(tmpdir(), "fts-hook-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function script(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

test("the runner execs without a shell, passes env and stdin + newline, and trims combined output", async () => {
  const s = script("echo.sh", 'printf "args=%s|" "$@"; printf "subnet=%s|" "$SUBNET"; cat; echo err >&2');
  const r = await new ExecHookRunner().run(`${s} $SUBNET ; echo`, {
    env: { SUBNET: "10.244.2.0/24" },
    stdin: "data",
  });
  assert.equal(r.error, undefined);
  // ";" and "echo" are plain arguments: no shell ever sees the command.
  // stdout and stderr come through two pipes, so only the lines (not their interleaving) are fixed.
  assert.deepEqual(r.output.split("\n").sort(), [
    "args=10.244.2.0/24|args=;|args=echo|subnet=10.244.2.0/24|data",
    "err",
  ]);
});

test("the runner reports failures with Go's exec error texts", async () => {
  const runner = new ExecHookRunner();
  const fail = script("fail.sh", "echo boom; exit 3");
  assert.deepEqual(await runner.run(fail, { env: {}, stdin: "" }), {
    output: "boom",
    error: "exit status 3",
  });
  assert.deepEqual(await runner.run("fts-no-such-program-x", { env: {}, stdin: "" }), {
    output: "",
    error: 'exec: "fts-no-such-program-x": executable file not found in $PATH',
  });
  assert.deepEqual(await runner.run(join(dir, "missing.sh"), { env: {}, stdin: "" }), {
    output: "",
    error: `fork/exec ${join(dir, "missing.sh")}: no such file or directory`,
  });
  const killed = script("kill.sh", "kill -9 $$");
  assert.deepEqual(await runner.run(killed, { env: {}, stdin: "" }), { output: "", error: "signal: killed" });
});

test("an aborted signal kills a hung hook", async () => {
  const hang = script("hang.sh", "exec sleep 60");
  const ac = new AbortController();
  const running = new ExecHookRunner().run(hang, { env: {}, stdin: "", signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  assert.deepEqual(await running, { output: "", error: "signal: killed" });
});
