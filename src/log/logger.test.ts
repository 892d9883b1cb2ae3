import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";

// The default sink batches a turn's lines into one stderr write; nothing may be lost or reordered, also when
// the process exits or dies in the same turn.
function run(body: string): { stderr: string; status: number | null } {
  const url = new URL("./logger.ts", import.meta.url).href;
  const script = `import { KlogLogger } from ${JSON.stringify(url)};\nconst log = new KlogLogger({ pid: 1 });\n${body}`;
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    encoding: "utf8",
  });
  return { stderr: r.stderr, status: r.status };
}

const messages = (stderr: string): string[] =>
  stderr
    .split("\n")
    .filter((l) => / logger-test\] /.test(l))
    .map((l) => l.replace(/^.* logger-test\] /, ""));

test("lines of one turn reach stderr in order, across turns too", () => {
  const r = run(`
const l = log.child("logger-test");
for (let i = 0; i < 1000; i++) l.info("line " + i);
setTimeout(() => { l.warn("later"); l.error("last"); }, 5);
`);
  assert.equal(r.status, 0, r.stderr);
  const want = [...Array.from({ length: 1000 }, (_, i) => `line ${i}`), "later", "last"];
  assert.deepEqual(messages(r.stderr), want);
  assert.match(r.stderr, /^I\d{4} \d\d:\d\d:\d\d\.\d{6} {7}1 logger-test\] line 0$/m);
});

test("lines logged just before process.exit or an uncaught exception are written", () => {
  const exit = run(`const l = log.child("logger-test"); l.info("a"); l.info("b"); process.exit(3);`);
  assert.equal(exit.status, 3);
  assert.deepEqual(messages(exit.stderr), ["a", "b"]);
  const thrown = run(`const l = log.child("logger-test"); l.info("before"); throw new Error("boom");`);
  assert.equal(thrown.status, 1);
  assert.deepEqual(messages(thrown.stderr), ["before"]);
  assert.match(thrown.stderr, /boom/);
});
