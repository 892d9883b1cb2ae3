import assert from "node:assert/strict";
import { test } from "node:test";
import { Claims } from "./claims.ts";

// Entries are "<lease>:<version>"; the same lease is the same prefix.
const of = (lease: string) => (e: string) => e.startsWith(`${lease}:`);

test("the latest claim is programmed; releasing it brings back the one before, in order", () => {
  const c = new Claims<string>();
  c.claim("k", "a:1", of("a"));
  c.claim("k", "b:1", of("b"));
  c.claim("k", "c:1", of("c"));
  assert.equal(c.current.get("k"), "c:1");
  assert.equal(c.release("k", of("c")), true);
  assert.equal(c.current.get("k"), "b:1");
  // A waiting claim leaves quietly: nothing to program.
  assert.equal(c.release("k", of("a")), false);
  assert.equal(c.current.get("k"), "b:1");
  assert.equal(c.release("k", of("b")), true);
  assert.equal(c.current.has("k"), false);
  assert.equal(c.release("k", of("b")), false);
});

test("a lease's new claim replaces its own entry, wherever it waits", () => {
  const c = new Claims<string>();
  c.claim("k", "a:1", of("a"));
  c.claim("k", "a:2", of("a"));
  c.claim("k", "b:1", of("b"));
  // a's update while b holds the key: a takes it, its old entry does not come back later.
  c.claim("k", "a:3", of("a"));
  assert.equal(c.current.get("k"), "a:3");
  assert.equal(c.release("k", of("a")), true);
  assert.equal(c.current.get("k"), "b:1");
  assert.equal(c.release("k", of("b")), true);
  assert.equal(c.current.size, 0);
});
