import assert from "node:assert/strict";
import { test } from "node:test";
import { appendAll } from "./array.ts";

test("appendAll appends in order, also far beyond the argument limit of a spread", () => {
  const big = Array.from({ length: 300_000 }, (_, i) => i);
  assert.throws(() => [].push(...(big as never[])), RangeError);
  const to = [-2, -1];
  appendAll(to, big);
  assert.equal(to.length, 300_002);
  assert.deepEqual(to.slice(0, 4), [-2, -1, 0, 1]);
  assert.equal(to[to.length - 1], 299_999);
});
