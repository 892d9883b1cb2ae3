import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { IpAddr } from "../../ip/addr.ts";
import { planTrace, renderTrace, type TraceFacts } from "./trace.ts";

const MAC2 = "aa:aa:aa:00:00:02";

function vxlanNode(): TraceFacts {
  return {
    subnet: "10.244.1.0/24",
    network: "10.244.0.0/16",
    links: [
      {
        name: "eth0",
        index: 2,
        kind: "veth",
        mtu: 1500,
        up: true,
        masterIndex: 0,
        mac: "",
        addrs: ["192.168.250.11/24"],
      },
      {
        name: "flannel.1",
        index: 3,
        kind: "vxlan",
        mtu: 1450,
        up: true,
        masterIndex: 0,
        mac: "aa:aa:aa:00:00:01",
        addrs: ["10.244.1.0/32"],
        vxlan: { vni: 1, local: "192.168.250.11", vtepIndex: 2, port: 0 },
      },
      {
        name: "cni0",
        index: 4,
        kind: "bridge",
        mtu: 1450,
        up: true,
        masterIndex: 0,
        mac: "",
        addrs: ["10.244.1.1/24"],
      },
    ],
    routes: [
      { dst: "10.244.2.0/24", gw: "10.244.2.0", dev: "flannel.1", onlink: true },
      { dst: "10.244.1.0/24", dev: "cni0" },
      { dst: "192.168.250.0/24", dev: "eth0" },
    ],
    neighbours: [{ dev: "flannel.1", ip: "10.244.2.0", mac: MAC2, permanent: true }],
    fdb: [{ dev: "flannel.1", mac: MAC2, dst: "192.168.250.12" }],
    leases: [
      {
        subnet: "10.244.1.0/24",
        publicIp: "192.168.250.11",
        backendType: "vxlan",
        vtepMac: "aa:aa:aa:00:00:01",
        vni: 1,
      },
      {
        subnet: "10.244.2.0/24",
        publicIp: "192.168.250.12",
        backendType: "vxlan",
        vtepMac: MAC2,
        vni: 1,
        node: "node2",
      },
    ],
  };
}

const ip = IpAddr.parse;

describe("planTrace", () => {
  it("walks a healthy vxlan path naming each entry", () => {
    const r = planTrace(vxlanNode(), ip("10.244.1.2"), ip("10.244.2.3"));
    assert.equal(r.complete, true);
    assert.deepEqual(
      r.steps.map((s) => `${s.hop}: ${s.entry}`),
      [
        "pod → cni0: pod 10.244.1.2: default via 10.244.1.1 (cni0 10.244.1.1/24)",
        "host route: 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
        `flannel.1 ARP: 10.244.2.0 lladdr ${MAC2} dev flannel.1 PERMANENT`,
        `flannel.1 FDB: ${MAC2} dev flannel.1 dst 192.168.250.12 self permanent`,
        "encapsulation: UDP 192.168.250.11 → 192.168.250.12:8472 VNI 1, outer route 192.168.250.0/24 dev eth0",
        `peer decapsulation: node2 192.168.250.12: flannel.1 (VtepMAC ${MAC2}) decapsulates (from its lease)`,
        "peer cni0 → pod: 10.244.2.0/24 is the peer's cni0 subnet: delivered to 10.244.2.3 (from its lease)",
      ],
    );
    assert.match(renderTrace(r), /reaches the destination\n$/);
  });

  it("stops at the FDB hop when the FDB entry is gone, with the command that restores it", () => {
    const facts = vxlanNode();
    facts.fdb = [];
    const r = planTrace(facts, ip("10.244.1.2"), ip("10.244.2.3"));
    assert.equal(r.complete, false);
    const last = r.steps.at(-1);
    assert.equal(last?.hop, "flannel.1 FDB");
    assert.equal(last?.status, "missing");
    assert.match(
      last?.fix ?? "",
      /^bridge fdb replace aa:aa:aa:00:00:02 dev flannel\.1 dst 192\.168\.250\.12 self permanent/,
    );
  });

  it("stops at the ARP hop and at the route hop when those are missing", () => {
    const noArp = vxlanNode();
    noArp.neighbours = [];
    assert.equal(planTrace(noArp, ip("10.244.1.2"), ip("10.244.2.3")).steps.at(-1)?.hop, "flannel.1 ARP");
    const noRoute = vxlanNode();
    noRoute.routes = noRoute.routes.filter((r) => r.dst !== "10.244.2.0/24");
    const last = planTrace(noRoute, ip("10.244.1.2"), ip("10.244.2.3")).steps.at(-1);
    assert.equal(last?.hop, "host route");
    assert.match(
      last?.fix ?? "",
      /ip route replace 10\.244\.2\.0\/24 via 10\.244\.2\.0 dev flannel\.1 onlink/,
    );
  });

  it("detects stale entries: the lease moved to another public IP", () => {
    const facts = vxlanNode();
    const peer = facts.leases?.[1];
    assert.ok(peer);
    peer.publicIp = "192.168.250.99";
    const last = planTrace(facts, ip("10.244.1.2"), ip("10.244.2.3")).steps.at(-1);
    assert.equal(last?.hop, "peer");
    assert.match(last?.diagnosis ?? "", /stale/);
  });

  it("refuses a source that is not a pod of this node and names the owner", () => {
    const last = planTrace(vxlanNode(), ip("10.244.2.5"), ip("10.244.1.3")).steps.at(-1);
    assert.match(
      last?.diagnosis ?? "",
      /Run trace on the node that owns 10\.244\.2\.5: lease 10\.244\.2\.0\/24 \(node2\)/,
    );
  });

  it("delivers locally for a destination in this node's subnet", () => {
    const r = planTrace(vxlanNode(), ip("10.244.1.2"), ip("10.244.1.3"));
    assert.equal(r.complete, true);
    assert.equal(r.steps.at(-1)?.hop, "cni0 → pod");
  });

  it("follows a host-gw route via the peer's public IP", () => {
    const facts = vxlanNode();
    facts.routes = [
      { dst: "10.244.2.0/24", gw: "192.168.250.12", dev: "eth0" },
      { dst: "10.244.1.0/24", dev: "cni0" },
    ];
    facts.leases = [{ subnet: "10.244.2.0/24", publicIp: "192.168.250.12", backendType: "host-gw" }];
    const r = planTrace(facts, ip("10.244.1.2"), ip("10.244.2.3"));
    assert.equal(r.complete, true);
    assert.deepEqual(
      r.steps.map((s) => s.hop),
      ["pod → cni0", "host route", "next hop", "peer cni0 → pod"],
    );
  });
  it("follows the udp backend through flannel0 and its proxy, and stops where no lease covers the target", () => {
    const facts = vxlanNode();
    facts.links = facts.links.filter((l) => l.name !== "flannel.1");
    facts.links.push({
      name: "flannel0",
      index: 5,
      kind: "tun",
      mtu: 1472,
      up: true,
      masterIndex: 0,
      mac: "",
      addrs: ["10.244.1.0/32"],
    });
    facts.routes = [
      { dst: "10.244.0.0/16", dev: "flannel0" },
      { dst: "10.244.1.0/24", dev: "cni0" },
    ];
    facts.neighbours = [];
    facts.fdb = [];
    facts.leases = [{ subnet: "10.244.2.0/24", publicIp: "192.168.250.12", backendType: "" }];
    const r = planTrace(facts, ip("10.244.1.2"), ip("10.244.2.3"));
    assert.equal(r.complete, true);
    const proxy = r.steps.find((st) => st.hop === "udp proxy");
    assert.match(proxy?.entry ?? "", /192\.168\.250\.12:8285/);
    const lost = planTrace(facts, ip("10.244.1.2"), ip("10.244.9.3"));
    assert.equal(lost.complete, false);
    assert.match(renderTrace(lost), /ICMP net-unreachable/);
  });
});
