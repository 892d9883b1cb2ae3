import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { AbortableIterator, sleep } from "./sleep.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

async function* values(n: number): AsyncGenerator<{ payload: number[] }> {
  for (let i = 0; i < n; i++) yield { payload: new Array<number>(1000).fill(i) };
}

test("AbortableIterator: yields the iterator's results, keeps no result alive, one listener until close()", async () => {
  const ac = new AbortController();
  const pulls = new AbortableIterator(values(200)[Symbol.asyncIterator](), ac.signal);
  const seen: WeakRef<object>[] = [];
  for (;;) {
    const r = await pulls.next();
    assert.notEqual(r, "aborted");
    if (r === "aborted" || r.done === true) break;
    seen.push(new WeakRef(r.value));
    assert.equal(getEventListeners(ac.signal, "abort").length, 1);
  }
  assert.equal(seen.length, 200);
  // Give finalization a few turns: every earlier result must be collectable while the signal lives on.
  // (Promise.race([it.next(), aborted]) in this loop kept all 200 reachable through `aborted`.)
  for (let i = 0; i < 3; i++) {
    await sleep(10);
    gc();
  }
  const alive = seen.filter((w) => w.deref() !== undefined).length;
  assert.ok(alive <= 2, `${alive} of 200 results still reachable`);
  pulls.close();
  assert.equal(getEventListeners(ac.signal, "abort").length, 0);
  assert.equal(ac.signal.aborted, false);
});

test("AbortableIterator: 'aborted' as soon as the signal aborts, also while next() is pending", async () => {
  const ac = new AbortController();
  const never: AsyncIterator<number> = { next: () => new Promise(() => undefined) };
  const pulls = new AbortableIterator(never, ac.signal);
  const p = pulls.next();
  ac.abort();
  assert.equal(await p, "aborted");
  assert.equal(await pulls.next(), "aborted");
  assert.equal(await new AbortableIterator(never, ac.signal).next(), "aborted");
  pulls.close();
});

test("AbortableIterator: a failing next() rejects with its error, and the next pull still works", async () => {
  const ac = new AbortController();
  let n = 0;
  const flaky: AsyncIterator<number> = {
    next: () => (n++ === 0 ? Promise.reject(new Error("boom")) : Promise.resolve({ value: n, done: false })),
  };
  const pulls = new AbortableIterator(flaky, ac.signal);
  await assert.rejects(pulls.next(), /boom/);
  assert.deepEqual(await pulls.next(), { value: 2, done: false });
  // An abort after a pull has settled changes nothing for that pull, and ends the next one.
  ac.abort();
  assert.equal(await pulls.next(), "aborted");
  pulls.close();
  assert.equal(getEventListeners(ac.signal, "abort").length, 0);
});
