// Kernel contract: one scenario (test/kernel/scenario.ts) on FakeKernel and on the netlink kernel in a fresh
// namespace; the results must be identical, and `ip -json` / `bridge -json` must agree with what the
// netlink kernel reported.

import assert from "node:assert/strict";
import { test } from "node:test";

import { FakeKernel } from "../../src/kernel/fake-kernel.ts";
import { Netns, requireRoot, vethPair } from "../helpers/netns.ts";
import { runScenario } from "./scenario.ts";

type Obj = Record<string, unknown>;

function fakeRun(): Obj {
  const k = new FakeKernel();
  k.addHost({ addr: "10.0.0.1/24", gateway: "10.0.0.254" });
  return JSON.parse(JSON.stringify(runScenario(k))) as Obj;
}

test("the scenario runs on the fake kernel", () => {
  const res = fakeRun();
  assert.equal(res.addDuplicate, "EEXIST");
  assert.equal(res.gone, null);
});

test("fake and netlink kernels agree on the scenario; ip -json agrees with netlink", (t) => {
  if (!requireRoot(t)) return;
  const a = Netns.create("fts-k");
  const b = Netns.create("fts-k");
  try {
    vethPair(a, "eth0", "10.0.0.1/24", b, "eth0", "10.0.0.2/24");
    a.run("ip", ["route", "add", "default", "via", "10.0.0.254"]);
    const out = a.runTs("test/kernel/scenario.ts", [], { ORACLE: "1", BENCH: "1000" });
    const real = JSON.parse(out) as Obj;
    const { oracle, bench, ...rest } = real;
    t.diagnostic(`netlink route replace cost: ${JSON.stringify(bench)}`);
    assert.deepEqual(rest, fakeRun());

    // The oracle: what iproute2 reads back at the checkpoint.
    const o = oracle as {
      link: { ifname: string; mtu: number; address: string; flags: string[]; linkinfo: Obj }[];
      addr: { ifname: string; addr_info: { local: string; prefixlen: number }[] }[];
      route: { dst: string; gateway?: string; dev?: string; type?: string; flags: string[] }[];
      neigh: { dst: string; lladdr: string; state: string[] }[];
      fdb: { mac: string; dst?: string; flags: string[]; state?: string }[];
    };
    const cp = real.checkpoint as {
      routes: { dst: string; gw: string | null; dev: string | null; nhId: number | null }[];
    };
    // Peers' routes go through nexthop objects of their own, whose id is the destination's address.
    const oracleRoutes = o.route as { dst: string; gateway?: string; nhid?: number }[];
    for (const [dst, gw, id] of [
      ["10.244.6.0/24", "10.244.6.1", 0x0af40600],
      ["10.245.1.0/24", "10.0.0.3", 0x0af50100],
      ["10.245.2.0/24", "10.0.0.3", undefined],
      ["10.244.2.0/24", "10.244.2.0", undefined],
    ] as const) {
      const r = oracleRoutes.find((x) => x.dst === dst);
      assert.deepEqual([r?.gateway, r?.nhid], [gw, id], dst);
      assert.equal(cp.routes.find((x) => x.dst === dst)?.nhId, id ?? null, dst);
    }
    // Deleting the routes took flannel's nexthops with them (eth0's would outlive the scenario).
    assert.equal(a.run("ip", ["nexthop", "show"]).trim(), "");
    const link = o.link[0]!;
    assert.equal(link.mtu, 1400);
    assert.equal(link.address, "0e:2a:00:00:00:0a");
    assert.ok(link.flags.includes("UP"));
    const info = link.linkinfo as { info_kind: string; info_data: Obj };
    assert.equal(info.info_kind, "vxlan");
    assert.equal(info.info_data.id, 1);
    assert.equal(info.info_data.local, "10.0.0.1");
    assert.equal(info.info_data.link, "eth0");
    assert.equal(info.info_data.port, 8472);
    assert.equal(info.info_data.learning, false);
    assert.deepEqual(
      o.addr
        .filter((x) => x.ifname !== "lo")
        .flatMap((x) => x.addr_info.map((ai) => `${ai.local}/${ai.prefixlen} dev ${x.ifname}`))
        .sort(),
      ["10.0.0.1/24 dev eth0", "10.244.1.0/32 dev flannel.1"],
    );
    assert.deepEqual(
      o.route
        .map(
          (r) =>
            `${r.type ?? "unicast"} ${r.dst} ${r.gateway ?? "-"} ${r.dev ?? "-"} ${r.flags.includes("onlink")}`,
        )
        .sort(),
      cp.routes
        .map(
          (r) =>
            `${(r as { type?: string }).type ?? "unicast"} ${r.dst} ${r.gw ?? "-"} ${r.dev ?? "-"} ${(r as { onlink?: boolean }).onlink ?? false}`,
        )
        .sort(),
    );
    assert.deepEqual(o.neigh.map((n) => `${n.dst} ${n.lladdr} ${n.state.join(",")}`).sort(), [
      "10.244.2.0 0e:2a:00:00:00:02 PERMANENT",
      "10.244.3.0 0e:2a:00:00:00:33 PERMANENT",
    ]);
    assert.deepEqual(
      o.fdb
        .filter((e) => e.dst !== undefined)
        .map((e) => `${e.mac} ${e.dst ?? "-"} ${e.flags.join(",")} ${e.state ?? ""}`)
        .sort(),
      ["0e:2a:00:00:00:02 10.0.0.2 self permanent", "0e:2a:00:00:00:03 10.0.0.4 self permanent"],
    );
    // Nothing of the scenario is left behind in the namespace.
    assert.notEqual(a.tryRun("ip", ["link", "show", "flannel.1"]).code, 0, "flannel.1 is gone");
  } finally {
    a.delete();
    b.delete();
  }
});
