import assert from "node:assert/strict";
import { test } from "node:test";

import { IpNet } from "../ip/net.ts";
import { FakeKernel } from "../kernel/fake-kernel.ts";
import { MemoryLogger } from "../log/logger.ts";
import { ensureBlackholeRoutes, startBlackholeRoutes } from "./blackhole.ts";

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
