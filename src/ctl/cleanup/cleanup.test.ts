import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isFlannelDevice, planCleanup, type CleanupState } from "./cleanup.ts";

function state(): CleanupState {
  return {
    links: [
      { name: "lo", index: 1, kind: "", mtu: 65536, up: true, masterIndex: 0, mac: "", addrs: [] },
      { name: "eth0", index: 2, kind: "veth", mtu: 1500, up: true, masterIndex: 0, mac: "", addrs: [] },
      { name: "flannel.1", index: 3, kind: "vxlan", mtu: 1450, up: true, masterIndex: 0, mac: "", addrs: [] },
      { name: "cni0", index: 4, kind: "bridge", mtu: 1450, up: true, masterIndex: 0, mac: "", addrs: [] },
    ],
    routes: [
      { dst: "10.244.2.0/24", gw: "10.244.2.0", dev: "flannel.1", onlink: true },
      { dst: "10.244.3.0/24", gw: "192.168.250.13", dev: "eth0" },
      { dst: "10.244.1.0/24", type: "blackhole" },
      { dst: "192.168.250.0/24", dev: "eth0" },
    ],
    neighbours: [],
    fdb: [],
    iptables: [
      {
        tool: "iptables",
        table: "filter",
        lines: [
          "-P FORWARD ACCEPT",
          "-N FLANNEL-FWD",
          "-N KUBE-FORWARD",
          "-A FORWARD -j KUBE-FORWARD",
          '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
          '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
        ],
      },
      {
        tool: "iptables",
        table: "nat",
        lines: [
          "-N FLANNEL-POSTRTG",
          '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
        ],
      },
    ],
    nftTables: ["ip flannel-ipv4", "ip6 flannel-ipv6", "inet filter"],
    network: "10.244.0.0/16",
    paths: ["/run/flannel/subnet.env", "/var/lib/cni/flannel"],
  };
}

describe("planCleanup", () => {
  it("removes jump rules before chains, flannel's nft tables, stray routes, devices and files", () => {
    assert.deepEqual(
      planCleanup(state()).map((a) => a.text),
      [
        'iptables -t filter -D FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
        "iptables -t filter -F FLANNEL-FWD",
        "iptables -t filter -X FLANNEL-FWD",
        'iptables -t nat -D POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
        "iptables -t nat -F FLANNEL-POSTRTG",
        "iptables -t nat -X FLANNEL-POSTRTG",
        "nft delete table ip flannel-ipv4",
        "nft delete table ip6 flannel-ipv6",
        "ip route del 10.244.3.0/24 via 192.168.250.13 dev eth0",
        "ip route del blackhole 10.244.1.0/24",
        "ip link delete flannel.1",
        "ip link delete cni0",
        "rm -rf /run/flannel/subnet.env",
        "rm -rf /var/lib/cni/flannel",
      ],
    );
  });

  it("passes the comment to iptables as one argument, unquoted", () => {
    const a = planCleanup(state())[0];
    assert.ok(a?.kind === "iptables");
    assert.deepEqual(a.args, [
      "-t",
      "filter",
      "-D",
      "FORWARD",
      "-m",
      "comment",
      "--comment",
      "flanneld forward",
      "-j",
      "FLANNEL-FWD",
    ]);
  });

  it("plans nothing on a clean node", () => {
    const s = state();
    s.links = s.links.filter((l) => !isFlannelDevice(l.name));
    s.routes = [{ dst: "192.168.250.0/24", dev: "eth0" }];
    s.iptables = [{ tool: "iptables", table: "filter", lines: ["-P FORWARD ACCEPT"] }];
    s.nftTables = [];
    s.paths = [];
    assert.deepEqual(planCleanup(s), []);
  });

  it("knows every backend's device names and nothing else", () => {
    for (const n of [
      "flannel.1",
      "flannel.4096",
      "flannel-v6.1",
      "flannel0",
      "flannel-wg",
      "flannel-wg-v6",
      "flannel.ipip",
      "cni0",
    ]) {
      assert.ok(isFlannelDevice(n), n);
    }
    for (const n of ["eth0", "flannel", "flannel.x", "cni1", "docker0"]) assert.ok(!isFlannelDevice(n), n);
  });
});
