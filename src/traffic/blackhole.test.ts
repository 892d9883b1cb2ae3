import assert from "node:assert/strict";
import { test } from "node:test";

import { IfAddr, IpNet } from "../ip/net.ts";
import { FakeKernel } from "../kernel/fake-kernel.ts";
import { MemoryLogger } from "../log/logger.ts";
import { BLACKHOLE_METRIC, ensureBlackholeRoutes, startBlackholeRoutes } from "./blackhole.ts";

const blackholes = (k: FakeKernel): string[] =>
  k
    .dump()
    .split("\n")
    .filter((l) => l.includes("blackhole"));

test("ensureBlackholeRoutes adds one blackhole route per subnet, once", () => {
  const k = new FakeKernel();
  const subnets = [IpNet.parse("10.244.3.0/24"), IpNet.parse("fd00:10:244:3::/64")];
  ensureBlackholeRoutes(k.routes, subnets);
  ensureBlackholeRoutes(k.routes, subnets);
  const v4 = k.routes.list({ family: 4 }).filter((r) => r.type === "blackhole");
  const v6 = k.routes.list({ family: 6 }).filter((r) => r.type === "blackhole");
  assert.deepEqual(
    v4.map((r) => r.dst?.toString()),
    ["10.244.3.0/24"],
  );
  assert.deepEqual(
    v6.map((r) => r.dst?.toString()),
    ["fd00:10:244:3::/64"],
  );
  assert.equal(blackholes(k).length, 2);
});

test("the blackhole route never displaces the connected route of a bridge holding the subnet", () => {
  const k = new FakeKernel();
  const subnet = IpNet.parse("10.244.3.0/24");
  const cni0 = k.links.addBridge("cni0");
  k.links.setUp("cni0");
  k.addrs.add(cni0.index, IfAddr.parse("10.244.3.1/24"));
  ensureBlackholeRoutes(k.routes, [subnet]);
  const routes = k.routes.list({ family: 4 }).filter((r) => r.dst?.equals(subnet) === true);
  assert.deepEqual(routes.map((r) => [r.type ?? "unicast", r.metric]).sort(), [
    ["blackhole", BLACKHOLE_METRIC],
    ["unicast", 0],
  ]);
});

test("the loop restores a deleted blackhole route and logs failures with upstream's text", async () => {
  const k = new FakeKernel();
  const log = new MemoryLogger();
  const ac = new AbortController();
  const subnet = IpNet.parse("10.244.3.0/24");
  k.fail("routes.replace", "EPERM");
  const loop = startBlackholeRoutes({
    routes: k.routes,
    subnets: [subnet],
    periodMs: 5,
    signal: ac.signal,
    logger: log,
  });
  try {
    const has = (): boolean =>
      k.routes.list({ family: 4 }).some((r) => r.type === "blackhole" && r.dst?.equals(subnet) === true);
    const until = async (cond: () => boolean): Promise<void> => {
      const deadline = Date.now() + 10_000;
      while (!cond()) {
        assert.ok(Date.now() < deadline, "condition reached in time");
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    await until(has);
    assert.match(log.text(), /^E Failed to setup blackhole route, .*EPERM/m);
    k.routes.delete({ family: 4, dst: subnet, type: "blackhole" });
    assert.equal(has(), false);
    await until(has);
  } finally {
    ac.abort();
    await loop;
  }
});
