// The vxlan and host-gw backends on a real kernel: a node namespace with eth0 on a LAN namespace; the
// backend runs inside the node namespace (backend-in-netns.ts), programs three peers, and repairs what is
// deleted by hand. iproute2 output is the independent oracle.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { IpNet } from "../../src/ip/net.ts";
import { Netns, requireRoot, vethPair } from "../helpers/netns.ts";

const SCRIPT = fileURLToPath(new URL("./backend-in-netns.ts", import.meta.url));
const MAC = "0e:2a:00:00:00:01";
const PEERS = [
  { subnet: "10.244.2.0/24", publicIp: "192.168.0.2", mac: "aa:00:00:00:00:02" },
  { subnet: "10.244.3.0/24", publicIp: "192.168.0.3", mac: "aa:00:00:00:00:03" },
  { subnet: "10.244.4.0/24", publicIp: "192.168.0.4", mac: "aa:00:00:00:00:04" },
];

interface Report {
  ok: boolean;
  error?: string;
  initial?: string;
  repaired: string[];
  log: string[];
}

describe("backends on a real kernel", { concurrency: false }, () => {
  let node: Netns | undefined;
  let lan: Netns | undefined;
  const isRoot = process.getuid?.() === 0;

  before(() => {
    if (!isRoot) return;
    node = Netns.create("fts-b");
    lan = Netns.create("fts-b");
    vethPair(node, "eth0", "192.168.0.1/24", lan, "lan0", "192.168.0.254/24");
  });

  after(() => {
    node?.delete();
    lan?.delete();
  });

  function runScenario(type: "vxlan" | "host-gw", breakWith: string[][]): Report {
    assert.ok(node);
    const sc = {
      type,
      ownSubnet: "10.244.1.0/24",
      publicIp: "192.168.0.1",
      mac: MAC,
      peers: PEERS,
      breakWith,
    };
    const report = JSON.parse(node.runTs(SCRIPT, [JSON.stringify(sc)])) as Report;
    assert.ok(report.ok, `${report.error ?? ""}\n${report.log.join("\n")}`);
    return report;
  }

  /** The nexthop id of a peer's IPv4 route: its destination's address (Route.nexthop). */
  const nhid = (subnet: string): number => Number(IpNet.parse(subnet).ip.value);

  it("vxlan programs neighbour, FDB entry and onlink route per peer and repairs hand deletions", (t) => {
    if (!requireRoot(t)) return;
    const r = runScenario("vxlan", [
      ["route", "del", "10.244.3.0/24"],
      ["neigh", "del", "10.244.2.0", "dev", "flannel.1"],
      ["bridge", "fdb", "del", "aa:00:00:00:00:04", "dev", "flannel.1", "dst", "192.168.0.4"],
      ["link", "del", "flannel.1"],
    ]);
    const s = r.initial ?? "";
    for (const p of PEERS) {
      const ip = p.subnet.split("/")[0] ?? "";
      assert.match(
        s,
        new RegExp(`^${p.subnet} nhid ${nhid(p.subnet)} via ${ip} dev flannel\\.1 onlink $`, "m"),
      );
      assert.match(s, new RegExp(`^${ip} lladdr ${p.mac} PERMANENT $`, "m"));
      assert.match(s, new RegExp(`^${p.mac} dst ${p.publicIp} self permanent$`, "m"));
    }
    assert.match(s, /^flannel\.1\s+UNKNOWN\s+10\.244\.1\.0\/32 /m);
    assert.equal(r.repaired.length, 4);
    // Left in place at exit (zero-downtime restarts).
    assert.match(
      node?.run("ip", ["route", "show"]) ?? "",
      /10\.244\.2\.0\/24 nhid \d+ via 10\.244\.2\.0 dev flannel\.1 onlink/,
    );
    const link = node?.ipJson<{ mtu: number; address: string }[]>(["link", "show", "flannel.1"])[0];
    assert.equal(link?.mtu, 1450);
    assert.equal(link?.address, MAC);
  });

  it("a restart reuses flannel.1 and removes the entries of a peer that left meanwhile", (t) => {
    if (!requireRoot(t)) return;
    assert.ok(node);
    // Runs after the previous test: flannel.1 and three peers are still there. Now only two remain.
    const sc = {
      type: "vxlan",
      ownSubnet: "10.244.1.0/24",
      publicIp: "192.168.0.1",
      mac: MAC,
      peers: PEERS.slice(0, 2),
      breakWith: [],
    };
    const r = JSON.parse(node.runTs(SCRIPT, [JSON.stringify(sc)])) as Report;
    assert.ok(r.ok, `${r.error ?? ""}\n${r.log.join("\n")}`);
    assert.doesNotMatch(r.initial ?? "", /10\.244\.4\.0|aa:00:00:00:00:04/);
    assert.match(r.initial ?? "", /10\.244\.3\.0\/24 nhid \d+ via 10\.244\.3\.0 dev flannel\.1 onlink/);
    // The departed peer's nexthop went with its route.
    const ids = node.ipJson<{ id: number }[]>(["nexthop", "show"]).map((n) => n.id);
    assert.deepEqual(
      ids.sort(),
      PEERS.slice(0, 2)
        .map((p) => nhid(p.subnet))
        .sort(),
    );
    node.run("ip", ["link", "del", "flannel.1"]);
  });

  it("dual-stack vxlan programs flannel-v6.1 like flannel.1 and recreates it when deleted", (t) => {
    if (!requireRoot(t)) return;
    assert.ok(node);
    node.run("ip", ["addr", "add", "fc00::1/64", "dev", "eth0", "nodad"]);
    const peers = PEERS.map((p, i) => ({
      ...p,
      v6: { subnet: `fd00:${i + 2}::/64`, publicIp: `fc00::${i + 2}` },
    }));
    const sc = {
      type: "vxlan",
      ownSubnet: "10.244.1.0/24",
      publicIp: "192.168.0.1",
      mac: MAC,
      peers,
      breakWith: [
        ["-6", "route", "del", "fd00:3::/64"],
        ["link", "del", "flannel-v6.1"],
      ],
      v6: { ownSubnet: "fd00:1::/64", publicIp: "fc00::1" },
    };
    try {
      const r = JSON.parse(node.runTs(SCRIPT, [JSON.stringify(sc)])) as Report;
      assert.ok(r.ok, `${r.error ?? ""}\n${r.log.join("\n")}`);
      const s = r.initial ?? "";
      for (const p of peers) {
        const ip = p.v6.subnet.split("/")[0] ?? "";
        assert.match(
          s,
          new RegExp(`^${p.v6.subnet} via ${ip} dev flannel-v6\\.1 metric 1024 onlink pref medium$`, "m"),
        );
        assert.match(s, new RegExp(`^${ip} lladdr ${p.mac} PERMANENT $`, "m"));
        assert.match(s, new RegExp(`^${p.mac} dst ${p.v6.publicIp} self permanent$`, "m"));
      }
      assert.match(s, /^flannel-v6\.1\s+UNKNOWN\s+fd00:1::\/128 /m);
      assert.equal(r.repaired.length, 2);
      const link = node.ipJson<{ mtu: number }[]>(["link", "show", "flannel-v6.1"])[0];
      assert.equal(link?.mtu, 1430);
    } finally {
      node.tryRun("ip", ["link", "del", "flannel.1"]);
      node.tryRun("ip", ["link", "del", "flannel-v6.1"]);
    }
  });

  it("host-gw routes each peer via its public IP and repairs a deleted route", (t) => {
    if (!requireRoot(t)) return;
    const r = runScenario("host-gw", [["route", "del", "10.244.2.0/24"]]);
    for (const p of PEERS)
      assert.match(
        r.initial ?? "",
        new RegExp(`^${p.subnet} nhid ${nhid(p.subnet)} via ${p.publicIp} dev eth0 $`, "m"),
      );
    assert.deepEqual(r.repaired, ["route del 10.244.2.0/24"]);
  });
});
