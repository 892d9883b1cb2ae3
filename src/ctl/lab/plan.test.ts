import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FlannelError } from "../../errors.ts";
import { flannelConflist, flanneldArgs, labNetworkConfigJson, networkConfigJson, planLab } from "./plan.ts";

const base = { prefix: "flsb", stateDir: "/s", nodes: 2, podsPerNode: 2, backend: "vxlan" };

describe("planLab", () => {
  it("lays out namespaces, addresses and per-node files", () => {
    const p = planLab(base);
    assert.equal(p.underlayNs, "flsb-ul");
    assert.equal(p.bridgeAddr, "192.168.250.1/24");
    assert.equal(p.etcdEndpoint, "http://192.168.250.1:2379");
    assert.equal(p.network, "10.244.0.0/16");
    assert.deepEqual(
      p.nodes.map((n) => [n.name, n.ns, n.underlayVeth, n.underlayAddr, n.subnetFile, n.ipamDataDir]),
      [
        ["node1", "flsb-n1", "ve-n1", "192.168.250.11/24", "/s/node1/subnet.env", "/s/node1/ipam"],
        ["node2", "flsb-n2", "ve-n2", "192.168.250.12/24", "/s/node2/subnet.env", "/s/node2/ipam"],
      ],
    );
    assert.deepEqual(
      p.nodes[1]?.pods.map((x) => [x.name, x.ns, x.ifName]),
      [
        ["node2-pod1", "flsb-n2-p1", "eth0"],
        ["node2-pod2", "flsb-n2-p2", "eth0"],
      ],
    );
  });

  it("uses a configured underlay and masks the pod network like Go", () => {
    const p = planLab({ ...base, underlayCidr: "172.30.0.0/16", network: "10.5.7.0/16" });
    assert.equal(p.bridgeIp, "172.30.0.1");
    assert.equal(p.nodes[0]?.underlayAddr, "172.30.0.11/16");
    assert.equal(p.network, "10.5.0.0/16");
  });

  for (const [what, over, msg] of [
    ["zero nodes", { nodes: 0 }, /Invalid node count 0: must be a whole number from 1 to 200/],
    ["fractional pods", { podsPerNode: 1.5 }, /Invalid pods per node 1.5/],
    ["a bad prefix", { prefix: "Bad_Prefix" }, /Invalid lab prefix "Bad_Prefix"/],
    ["an IPv6 network", { network: "fc00::/48" }, /Invalid pod network fc00::\/48: expected an IPv4 CIDR/],
    ["an IPv4 ipv6Network", { ipv6Network: "10.9.0.0/16" }, /Invalid IPv6 pod network 10.9.0.0\/16/],
    ["no network at all", { network: null }, /No pod network: give an IPv4 network, an IPv6 network or both/],
    [
      "an overlapping IPv6 underlay",
      { ipv6Network: "fd00:250::/56" },
      /IPv6 underlay fd00:250::\/64 overlaps the IPv6 pod network fd00:250::\/56/,
    ],
    ["a tiny underlay", { underlayCidr: "192.168.250.0/29" }, /too small for 2 nodes/],
    ["overlapping CIDRs", { underlayCidr: "10.244.9.0/24" }, /overlaps the pod network 10.244.0.0\/16/],
  ] as const) {
    it(`rejects ${what}`, () => {
      assert.throws(
        () => planLab({ ...base, ...over }),
        (e: unknown) => e instanceof FlannelError && e.code === "LAB_OPTIONS" && msg.test(e.message),
      );
    });
  }

  it("renders net-conf, flanneld flags and the stock conflist with per-node paths", () => {
    const p = planLab(base);
    const n = p.nodes[0];
    assert.ok(n);
    assert.equal(
      networkConfigJson(p.network, "host-gw"),
      '{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}',
    );
    assert.deepEqual(flanneldArgs(p, n, ["-v=2"]), [
      "--etcd-endpoints=http://192.168.250.1:2379",
      "--iface=eth0",
      "--ip-masq",
      "--subnet-file=/s/node1/subnet.env",
      "-v=2",
    ]);
    assert.deepEqual(flannelConflist(n), {
      name: "cbr0",
      cniVersion: "0.3.1",
      plugins: [
        {
          type: "flannel",
          subnetFile: "/s/node1/subnet.env",
          dataDir: "/s/node1/cni",
          ipam: { dataDir: "/s/node1/ipam" },
          delegate: { hairpinMode: true, isDefaultGateway: true },
        },
      ],
    });
  });

  it("adds an IPv6 underlay and net-conf fields for dual stack, IPv6-only and nftables", () => {
    const v4 = planLab(base);
    assert.equal(v4.ipv6Network, null);
    assert.equal(v4.bridgeAddr6, null);
    assert.equal(v4.nodes[0]?.underlayAddr6, undefined);
    assert.equal(labNetworkConfigJson(v4), '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');

    const dual = planLab({ ...base, ipv6Network: "fd00:10:244::/56", enableNftables: true });
    assert.equal(dual.bridgeAddr6, "fd00:250::1/64");
    assert.deepEqual(
      dual.nodes.map((n) => [n.underlayAddr6, n.underlayIp6]),
      [
        ["fd00:250::b/64", "fd00:250::b"],
        ["fd00:250::c/64", "fd00:250::c"],
      ],
    );
    assert.equal(
      labNetworkConfigJson(dual),
      '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","EnableNFTables":true,"Backend":{"Type":"vxlan"}}',
    );

    const v6 = planLab({ ...base, network: null, ipv6Network: "fd00:10:244::/56", backend: "host-gw" });
    assert.equal(v6.network, null);
    assert.equal(
      labNetworkConfigJson(v6),
      '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}',
    );
  });
});
