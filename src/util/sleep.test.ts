import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { nextOrAbort, sleep } from "./sleep.ts";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

async function* values(n: number): AsyncGenerator<{ payload: number[] }> {
  for (let i = 0; i < n; i++) yield { payload: new Array<number>(1000).fill(i) };
}

test("nextOrAbort: yields the iterator's results, leaves no abort listener, keeps no result alive", async () => {
  const ac = new AbortController();
  const it = values(200)[Symbol.asyncIterator]();
  const seen: WeakRef<object>[] = [];
  for (;;) {
    const r = await nextOrAbort(it, ac.signal);
    assert.notEqual(r, "aborted");
    if (r === "aborted" || r.done === true) break;
    seen.push(new WeakRef(r.value));
    assert.equal(getEventListeners(ac.signal, "abort").length, 0);
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
  assert.equal(ac.signal.aborted, false);
});

test("nextOrAbort: 'aborted' as soon as the signal aborts, also while next() is pending", async () => {
  const ac = new AbortController();
  const never: AsyncIterator<number> = { next: () => new Promise(() => undefined) };
  const p = nextOrAbort(never, ac.signal);
  ac.abort();
  assert.equal(await p, "aborted");
  assert.equal(await nextOrAbort(never, ac.signal), "aborted");
});

test("nextOrAbort: a failing next() rejects with its error", async () => {
  const ac = new AbortController();
  const bad: AsyncIterator<number> = { next: () => Promise.reject(new Error("boom")) };
  await assert.rejects(nextOrAbort(bad, ac.signal), /boom/);
  assert.equal(getEventListeners(ac.signal, "abort").length, 0);
});
