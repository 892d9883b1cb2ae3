// Routes through nexthop objects on a real kernel, in the cases flannel-ts must handle besides its own
// (test/kernel/nexthop-scenario.ts): someone else's nexthop holding the id, before and after flannel-ts
// listed the ids; a gateway change; a plain route left by an earlier flanneld; nexthop_compat_mode 0; a
// restarted process deleting what the previous one made.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Netns, requireRoot, vethPair } from "../helpers/netns.ts";

test("routes through nexthop objects: foreign ids, gateway changes, plain routes, compat mode 0", (t) => {
  if (!requireRoot(t)) return;
  const a = Netns.create("fts-nh");
  const b = Netns.create("fts-nh");
  try {
    vethPair(a, "eth0", "10.0.0.1/24", b, "eth0", "10.0.0.2/24");
    a.run("ip", [
      "link",
      "add",
      "flannel.1",
      "type",
      "vxlan",
      "id",
      "1",
      "local",
      "10.0.0.1",
      "dstport",
      "8472",
    ]);
    a.run("ip", ["addr", "add", "10.244.1.0/32", "dev", "flannel.1"]);
    a.run("ip", ["link", "set", "flannel.1", "up"]);
    const out = JSON.parse(a.runTs("test/kernel/nexthop-scenario.ts")) as {
      routes: { dst: string; gateway?: string; nhid?: number }[];
      nexthops: { id: number; gateway?: string; dev?: string; protocol?: string }[];
      listed: string[];
      listedCompat0: string[];
      routesAfter: string;
      hostGwRoute: string;
      hostGwRouteAfter: string;
      cleanupErrors: string;
      nexthopsAfter: string;
    };
    const route = (dst: string): string => {
      const r = out.routes.find((x) => x.dst === dst);
      return `${r?.gateway ?? "-"} ${r?.nhid ?? "-"}`;
    };
    // Peers 7 and 8: plain routes, as someone else's nexthop has their id.
    assert.equal(route("10.244.7.0/24"), "10.244.7.0 -");
    assert.equal(route("10.244.8.0/24"), "10.244.8.0 -");
    // Peer 9: flannel's nexthop, replaced with the new gateway; peer 10: the plain route it found.
    assert.equal(route("10.244.9.0/24"), `10.244.9.1 ${0x0af40900}`);
    assert.equal(route("10.244.10.0/24"), "10.244.10.0 -");
    const nh = out.nexthops.map((n) => `${n.id} ${n.gateway ?? "-"} ${n.dev ?? "-"}`).sort();
    assert.deepEqual(nh, [
      `${0x0af40700} 10.0.0.2 eth0`,
      `${0x0af40800} 10.0.0.3 eth0`,
      `${0x0af40900} 10.244.9.1 flannel.1`,
    ]);
    assert.deepEqual(out.listed.sort(), [
      "10.244.10.0/24 10.244.10.0 -",
      "10.244.7.0/24 10.244.7.0 -",
      "10.244.8.0/24 10.244.8.0 -",
      `10.244.9.0/24 10.244.9.1 ${0x0af40900}`,
    ]);
    assert.ok(
      out.listedCompat0.includes(`10.244.9.0/24 10.244.9.1 ${0x0af40900} true`),
      String(out.listedCompat0),
    );
    // flannelctl cleanup: the host-gw route went, with its nexthop.
    assert.equal(out.hostGwRoute, `10.244.11.0/24 nhid ${0x0af40b00} via 10.0.0.2 dev eth0`);
    assert.deepEqual([out.cleanupErrors, out.hostGwRouteAfter], ["", ""]);
    // Everything of the peers is gone but someone else's nexthops.
    assert.equal(out.routesAfter, "");
    assert.equal(
      out.nexthopsAfter
        .split("\n")
        .map((l) => l.trim().split(" ").slice(0, 6).join(" "))
        .sort()
        .join("\n"),
      [`id ${0x0af40700} via 10.0.0.2 dev eth0`, `id ${0x0af40800} via 10.0.0.3 dev eth0`].join("\n"),
    );
  } finally {
    a.delete();
    b.delete();
  }
});
