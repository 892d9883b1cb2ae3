import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ExecCommandRunner } from "./command.ts";
import { exitCodeOf, resolveProgram, SpawnCommandRunner } from "./spawn.ts";

const r = new SpawnCommandRunner();

test("posix_spawn runner: output, input, exit code, environment, as the child_process runner gives them", async () => {
  const exec = new ExecCommandRunner();
  const cases: [string, string[], { stdin?: string; env?: NodeJS.ProcessEnv }][] = [
    ["echo", ["hello", "world"], {}],
    ["sh", ["-c", "cat; echo err >&2; exit 3"], { stdin: "in-data\n" }],
    ["sh", ["-c", "echo $FOO"], { env: { FOO: "bar", PATH: process.env.PATH } }],
    ["sh", ["-c", "kill -TERM $$"], {}], // ended by a signal: 128, as the child_process runner says
    ["sh", ["-c", "exec 1>&-; exit 0"], {}], // closes its output before it exits
  ];
  for (const [file, args, opts] of cases)
    assert.deepEqual(await r.run(file, args, opts), await exec.run(file, args, opts));
});

test("posix_spawn runner: a program that is not installed rejects with ENOENT, as spawn does", async () => {
  await assert.rejects(r.run("fts-no-such-program", []), (err: { code?: string; message?: string }) => {
    assert.equal(err.code, "ENOENT");
    assert.match(err.message ?? "", /spawn fts-no-such-program ENOENT/);
    return true;
  });
  await assert.rejects(r.run("sh", [], { env: { PATH: "/nonexistent" } }), { code: "ENOENT" });
});

test("posix_spawn runner: large output and input through the pipes, no signal blocked or ignored", async () => {
  const big = await r.run("sh", ["-c", "head -c 3000000 /dev/zero | tr '\\0' a"]);
  assert.equal(big.code, 0);
  assert.equal(big.stdout.length, 3_000_000);
  const input = "x".repeat(1_000_000);
  assert.equal((await r.run("wc", ["-c"], { stdin: input })).stdout.trim(), "1000000");
  // Node ignores SIGPIPE; the child must not inherit that. glibc's two internal signals (32, 33) aside.
  const st = (await r.run("grep", ["-E", "^Sig(Blk|Ign)", "/proc/self/status"])).stdout;
  assert.match(st, /SigBlk:\s+0000000000000000/);
  assert.match(st, /SigIgn:\s+0000000[0-1]80000000\b|SigIgn:\s+0000000000000000/, st);
  // A child that does not read its input still ends (EPIPE on our side is ignored).
  assert.equal((await r.run("true", [], { stdin: "y".repeat(1_000_000) })).code, 0);
});

test("posix_spawn runner: many at once, each with its own output and code", async () => {
  const runs = await Promise.all(
    Array.from({ length: 40 }, (_, i) => r.run("sh", ["-c", `echo ${i}; exit ${i % 7}`])),
  );
  runs.forEach((res, i) => assert.deepEqual([res.stdout, res.code], [`${i}\n`, i % 7]));
});

test("resolveProgram looks in PATH order and only at executable files; exitCodeOf decodes wait statuses", () => {
  const dir = mkdtempSync(join(tmpdir(), "fts-spawn-"));
  try {
    writeFileSync(join(dir, "tool"), "#!/bin/sh\n");
    chmodSync(join(dir, "tool"), 0o644); // not executable
    assert.equal(resolveProgram("tool", dir), undefined);
    chmodSync(join(dir, "tool"), 0o755);
    assert.equal(resolveProgram("tool", `/nonexistent:${dir}`), join(dir, "tool"));
    assert.equal(resolveProgram(join(dir, "tool"), "/nonexistent"), join(dir, "tool"));
    assert.equal(resolveProgram(dir, dir), undefined, "a directory is not a program");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(exitCodeOf(0), 0);
  assert.equal(exitCodeOf(3 << 8), 3);
  assert.equal(exitCodeOf(15), 128); // SIGTERM
});

test("posix_spawn runner: a program that cannot be run rejects and leaves no pipe open", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fts-spawn-"));
  try {
    // Executable, but not a program the kernel can start: posix_spawn itself fails (ENOEXEC).
    writeFileSync(join(dir, "junk"), Buffer.from([0, 1, 2, 3]));
    chmodSync(join(dir, "junk"), 0o755);
    const fds = (): number => readdirSync("/proc/self/fd").length;
    const before = fds();
    await assert.rejects(r.run("junk", [], { env: { PATH: dir } }), /spawn junk failed: errno 8/);
    assert.equal(fds(), before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
