// Batched kernel writes: the same writes (test/kernel/batch-scenario.ts) through `applyWrites` on FakeKernel
// and on the netlink kernel (many requests per sendmsg, acks read together) give the same per-write errors
// and the same entries.

import assert from "node:assert/strict";
import { test } from "node:test";

import { FakeKernel } from "../../src/kernel/fake-kernel.ts";
import { Netns, requireRoot, vethPair } from "../helpers/netns.ts";
import { runBatchScenario } from "./batch-scenario.ts";

type Obj = Record<string, unknown>;

function fakeRun(): Obj {
  const k = new FakeKernel();
  k.addHost({ addr: "10.0.0.1/24" });
  return JSON.parse(JSON.stringify(runBatchScenario(k))) as Obj;
}

test("batched writes on the fake kernel report each failure at its index and apply the rest", () => {
  const res = fakeRun();
  assert.deepEqual(res.addErrors, ["250: ENODEV"]);
  assert.deepEqual(res.delErrors, []);
  assert.equal((res.afterAdds as { routes: string[] }).routes.length, 200);
  assert.equal((res.afterDeletes as { fdb: string[] }).fdb.length, 50);
  assert.deepEqual(res.afterAll, { routes: [], neigh: [], fdb: [] });
  const edge = [...Array.from({ length: 130 }, (_, i) => `${126 + i}: ENODEV`), "280: ENODEV"];
  assert.deepEqual(res.edgeErrors, edge);
  assert.equal((res.afterEdge as { routes: string[] }).routes.length, 50);
  assert.deepEqual(res.edgeDelErrors, []);
});

test("fake and netlink kernels agree on batched writes", (t) => {
  if (!requireRoot(t)) return;
  const a = Netns.create("fts-p");
  const b = Netns.create("fts-p");
  try {
    vethPair(a, "eth0", "10.0.0.1/24", b, "eth0", "10.0.0.2/24");
    const real = JSON.parse(a.runTs("test/kernel/batch-scenario.ts", [], { BENCH: "1" })) as Obj;
    const { bench, ...rest } = real;
    t.diagnostic(`netlink write cost: ${JSON.stringify(bench)}`);
    assert.deepEqual(rest, fakeRun());
  } finally {
    a.delete();
    b.delete();
  }
});
