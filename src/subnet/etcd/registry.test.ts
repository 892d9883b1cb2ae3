import assert from "node:assert/strict";
import { test } from "node:test";
import { BatchQueue, DoublingBackoff } from "./registry.ts";

test("BatchQueue: the consumer takes everything pending in one pull", async () => {
  const q = new BatchQueue<number>();
  for (let i = 0; i < 5; i++) q.push(i);
  const it = q.drain();
  assert.deepEqual((await it.next()).value, [0, 1, 2, 3, 4]);
  const next = it.next();
  q.push(5);
  q.push(6);
  // Both arrived before the waiting consumer ran again: one batch.
  assert.deepEqual((await next).value, [5, 6]);
  q.close();
  assert.equal((await it.next()).done, true);
});

test("BatchQueue: replace drops what is pending (a snapshot supersedes earlier events)", async () => {
  const q = new BatchQueue<string>();
  q.push("e1");
  q.push("e2");
  q.replace("snapshot");
  q.push("e3");
  q.close();
  const batches: string[][] = [];
  for await (const b of q.drain()) batches.push(b);
  assert.deepEqual(batches, [["snapshot", "e3"]]);
});

test("DoublingBackoff: 100 ms doubling, capped at 5 s", () => {
  const seen: number[] = [];
  let b = new DoublingBackoff();
  for (let i = 0; i < 9; i++) {
    seen.push(b.duration);
    b = b.next();
  }
  assert.deepEqual(seen, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
});
