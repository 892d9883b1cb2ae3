import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runChecks, type Finding } from "./checks.ts";
import type { NodeFacts } from "./facts.ts";
import { evaluateChain, parseIptablesSave } from "./iptables-eval.ts";
import { IpAddr } from "../../ip/addr.ts";

const MAC1 = "aa:aa:aa:00:00:01";
const MAC2 = "aa:aa:aa:00:00:02";

/** node1 of a healthy two-node vxlan cluster (10.244.1.0/24, peer 10.244.2.0/24 at 192.168.250.12). */
function healthy(): NodeFacts {
  return {
    node: "node1",
    links: [
      {
        name: "lo",
        index: 1,
        kind: "",
        mtu: 65536,
        up: true,
        masterIndex: 0,
        mac: "",
        addrs: ["127.0.0.1/8"],
      },
      {
        name: "eth0",
        index: 2,
        kind: "veth",
        mtu: 1500,
        up: true,
        masterIndex: 0,
        mac: "02:00:00:00:00:01",
        addrs: ["192.168.250.11/24"],
      },
      {
        name: "flannel.1",
        index: 3,
        kind: "vxlan",
        mtu: 1450,
        up: true,
        masterIndex: 0,
        mac: MAC1,
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
        mac: "02:00:00:00:00:04",
        addrs: ["10.244.1.1/24"],
      },
      {
        name: "veth1",
        index: 5,
        kind: "veth",
        mtu: 1450,
        up: true,
        masterIndex: 4,
        mac: "02:00:00:00:00:05",
        addrs: [],
      },
    ],
    routes: [
      { dst: "10.244.2.0/24", gw: "10.244.2.0", dev: "flannel.1", onlink: true },
      { dst: "10.244.1.0/24", dev: "cni0" },
      { dst: "192.168.250.0/24", dev: "eth0" },
    ],
    neighbours: [{ dev: "flannel.1", ip: "10.244.2.0", mac: MAC2, permanent: true }],
    fdb: [{ dev: "flannel.1", mac: MAC2, dst: "192.168.250.12" }],
    sysctls: { "net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1" },
    subnetEnv: {
      path: "/run/flannel/subnet.env",
      state: "ok",
      values: {
        FLANNEL_NETWORK: "10.244.0.0/16",
        FLANNEL_SUBNET: "10.244.1.1/24",
        FLANNEL_MTU: "1450",
        FLANNEL_IPMASQ: "true",
      },
    },
    cniConf: {
      dir: "/etc/cni/net.d",
      state: "ok",
      entries: [
        {
          name: "10-flannel.conflist",
          type: "file",
          size: 100,
          content: '{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{}}]}',
        },
      ],
    },
    iptables: {
      filter: [
        "-P INPUT ACCEPT",
        "-P FORWARD DROP",
        "-P OUTPUT ACCEPT",
        "-N FLANNEL-FWD",
        '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
        '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
        '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
      ],
      nat: [
        "-P POSTROUTING ACCEPT",
        "-N FLANNEL-POSTRTG",
        '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
        '-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN',
      ],
    },
    nft: { tables: [] },
    leases: {
      source: "etcd",
      from: "http://127.0.0.1:2379",
      network: "10.244.0.0/16",
      leases: [
        { subnet: "10.244.1.0/24", publicIp: "192.168.250.11", backendType: "vxlan", vtepMac: MAC1, vni: 1 },
        { subnet: "10.244.2.0/24", publicIp: "192.168.250.12", backendType: "vxlan", vtepMac: MAC2, vni: 1 },
      ],
    },
    probes: [{ ip: "192.168.250.12", ok: true }],
  };
}

function byCheck(findings: Finding[], check: string): Finding {
  const found = findings.find((x) => x.check === check);
  assert.ok(found, `no finding for ${check}: ${findings.map((x) => x.check).join(", ")}`);
  return found;
}

function failing(facts: NodeFacts): Finding[] {
  return runChecks(facts).filter((x) => x.status === "fail");
}

describe("doctor checks", () => {
  it("report nothing failing or warning on a healthy node", () => {
    const findings = runChecks(healthy());
    const bad = findings.filter((x) => x.status === "fail" || x.status === "warn");
    assert.deepEqual(bad, []);
    assert.equal(byCheck(findings, "peer-entries").status, "ok");
    assert.equal(byCheck(findings, "forward-chain").status, "ok");
  });

  it("name a missing CNI config, a conflist that is a directory and an empty conflist", () => {
    const empty = healthy();
    empty.cniConf.entries = [];
    const a = byCheck(failing(empty), "cni-config");
    assert.match(a.summary, /No CNI config in \/etc\/cni\/net\.d.*NotReady/);
    assert.match(a.fix ?? "", /kubectl -n kube-flannel delete pod/);

    const dir = healthy();
    dir.cniConf.entries = [{ name: "10-flannel.conflist", type: "dir", size: 4096 }];
    const b = byCheck(failing(dir), "cni-config");
    assert.match(b.summary, /is a directory/);
    assert.match(b.fix ?? "", /^rm -rf \/etc\/cni\/net\.d\/10-flannel\.conflist/);

    const zero = healthy();
    zero.cniConf.entries = [{ name: "10-flannel.conflist", type: "file", size: 0, content: "" }];
    assert.match(byCheck(failing(zero), "cni-config").summary, /is empty/);
  });

  it("name a stale flannel.1 address from an earlier install and the exact command to remove it", () => {
    const facts = healthy();
    const vx = facts.links.find((l) => l.name === "flannel.1");
    assert.ok(vx);
    vx.addrs = ["10.244.1.0/32", "10.42.7.0/32"];
    const x = byCheck(failing(facts), "flannel-device");
    assert.match(x.summary, /another network \(stale device/);
    assert.match(x.fix ?? "", /^ip addr del 10\.42\.7\.0\/32 dev flannel\.1/);
  });

  it("name a cni0 with an old subnet", () => {
    const facts = healthy();
    const br = facts.links.find((l) => l.name === "cni0");
    assert.ok(br);
    br.addrs = ["10.244.9.1/24"];
    const x = byCheck(failing(facts), "cni-bridge");
    assert.match(x.summary, /already has an IP address different from 10\.244\.1\.1\/24/);
    assert.match(x.fix ?? "", /ip link delete cni0/);
  });

  it("name an MTU larger than the overlay allows", () => {
    const facts = healthy();
    const br = facts.links.find((l) => l.name === "cni0");
    const veth = facts.links.find((l) => l.name === "veth1");
    assert.ok(br && veth);
    br.mtu = 1500;
    veth.mtu = 1500;
    const x = byCheck(failing(facts), "mtu");
    assert.ok(x.evidence.some((e) => /cni0 mtu 1500 > 1450/.test(e)));
    assert.match(x.fix ?? "", /ip link set cni0 mtu 1450/);
  });

  it("name br_netfilter missing and ip_forward off", () => {
    const facts = healthy();
    facts.sysctls = { "net/ipv4/ip_forward": "0" };
    const f = failing(facts);
    assert.match(byCheck(f, "br-netfilter").fix ?? "", /^modprobe br_netfilter/);
    assert.match(byCheck(f, "ip-forward").fix ?? "", /sysctl -w net\.ipv4\.ip_forward=1/);
  });

  it("name a DROP rule in FORWARD ahead of flannel's rules, with the exact delete command", () => {
    const facts = healthy();
    facts.iptables.filter = [...(facts.iptables.filter ?? [])];
    facts.iptables.filter.splice(4, 0, "-A FORWARD -j DROP");
    const x = byCheck(failing(facts), "forward-chain");
    assert.match(x.summary, /before flannel's FLANNEL-FWD accept rules/);
    assert.deepEqual(x.evidence, ["rule 1 of FORWARD: -A FORWARD -j DROP"]);
    assert.equal(x.fix, "iptables -D FORWARD -j DROP");
  });

  it("name a FORWARD policy DROP without flannel's accept rules", () => {
    const facts = healthy();
    facts.iptables.filter = ["-P INPUT ACCEPT", "-P FORWARD DROP", "-P OUTPUT ACCEPT"];
    const x = byCheck(failing(facts), "forward-chain");
    assert.match(x.summary, /accept rules are missing/);
    assert.match(x.fix ?? "", /iptables -A FORWARD -s 10\.244\.0\.0\/16 -j ACCEPT/);
  });

  it("name a blocked VXLAN port", () => {
    const facts = healthy();
    facts.iptables.filter = [...(facts.iptables.filter ?? []), "-A INPUT -p udp -m udp --dport 8472 -j DROP"];
    const x = byCheck(failing(facts), "vxlan-port");
    assert.match(x.fix ?? "", /iptables -I INPUT -p udp --dport 8472 -j ACCEPT/);
  });

  it("name missing peer entries (the FDB entry) with the command that restores it", () => {
    const facts = healthy();
    facts.fdb = [];
    const x = byCheck(failing(facts), "peer-entries");
    assert.deepEqual(x.evidence, [`FDB ${MAC2} dst 192.168.250.12 dev flannel.1`]);
    assert.match(
      x.fix ?? "",
      /bridge fdb replace aa:aa:aa:00:00:02 dev flannel\.1 dst 192\.168\.250\.12 self permanent/,
    );
  });

  it("name duplicate and unreachable public IPs (wrong interface) and suggest the other interface", () => {
    const facts = healthy();
    facts.links.push({
      name: "eth1",
      index: 6,
      kind: "veth",
      mtu: 1500,
      up: true,
      masterIndex: 0,
      mac: "",
      addrs: ["192.168.56.11/24"],
    });
    const leases = facts.leases?.leases ?? [];
    leases.push({
      subnet: "10.244.3.0/24",
      publicIp: "192.168.250.12",
      backendType: "vxlan",
      vtepMac: "aa:aa:aa:00:00:03",
    });
    facts.probes = [{ ip: "192.168.250.12", ok: false }];
    const f = failing(facts);
    const dup = byCheck(f, "public-ip");
    assert.match(dup.summary, /same public IP/);
    assert.match(dup.fix ?? "", /--iface=eth1/);
    assert.match(byCheck(f, "peer-reachability").evidence.join(), /ping 192\.168\.250\.12 .*no reply/);
  });

  it("name leases whose subnets overlap, in either family, and how to free one", () => {
    assert.equal(byCheck(runChecks(healthy()), "lease-overlap").status, "ok");
    const facts = healthy();
    const leases = facts.leases?.leases ?? [];
    leases[0]!.ipv6Subnet = "fd00:10:244:1::/64";
    leases[1]!.ipv6Subnet = "fd00:10:244:f::/64";
    leases.push(
      {
        subnet: "10.244.3.0/24",
        ipv6Subnet: "fd00:10:244:f::/64",
        publicIp: "192.168.250.13",
        backendType: "vxlan",
      },
      // Nested in 10.244.2.0/24 is an overlap too; an IPv6-only lease's 0.0.0.0/0 is not.
      { subnet: "10.244.2.128/25", publicIp: "192.168.250.14", backendType: "vxlan" },
      { subnet: "0.0.0.0/0", ipv6Subnet: "fd00:10:244:9::/64", publicIp: "0.0.0.0", backendType: "vxlan" },
    );
    const x = byCheck(failing(facts), "lease-overlap");
    assert.match(x.summary, /Leases overlap/);
    assert.deepEqual(x.evidence, [
      "10.244.2.128/25 (10.244.2.128/25) overlaps 10.244.2.0/24 (10.244.2.0/24 & fd00:10:244:f::/64)",
      "fd00:10:244:f::/64 (10.244.3.0/24 & fd00:10:244:f::/64) overlaps fd00:10:244:f::/64 (10.244.2.0/24 & fd00:10:244:f::/64)",
    ]);
    assert.match(x.fix ?? "", /etcdctl del <prefix>\/subnets\//);
  });

  it("name a lease written by another node with the same public IP (VTEP MAC mismatch)", () => {
    const facts = healthy();
    const own = facts.leases?.leases[0];
    assert.ok(own);
    own.vtepMac = "aa:aa:aa:00:00:99";
    assert.match(byCheck(failing(facts), "flannel-device").summary, /another node wrote the same lease/);
  });

  it("name RBAC denial and nodes without podCIDR, suggesting a free podCIDR", () => {
    const facts = healthy();
    delete facts.leases;
    delete facts.probes;
    facts.kube = {
      server: "http://127.0.0.1:1",
      access: [
        {
          action: "get pods (kube-flannel/kube-flannel-ds-x)",
          ok: false,
          status: 403,
          message: 'pods "kube-flannel-ds-x" is forbidden',
        },
        { action: "list nodes", ok: true },
      ],
      nodes: [
        { name: "node1", podCidr: "10.244.0.0/24", podCidrs: ["10.244.0.0/24"], annotations: {} },
        { name: "node2", podCidrs: [], annotations: {} },
      ],
    };
    const f = failing(facts);
    const rbac = byCheck(f, "rbac");
    assert.match(rbac.summary, /error retrieving pod spec/);
    assert.match(rbac.fix ?? "", /kubectl apply -f .*kube-flannel\.yml/);
    const cidr = byCheck(f, "pod-cidr");
    assert.deepEqual(cidr.evidence, ['node "node2" pod cidr not assigned']);
    assert.match(cidr.fix ?? "", /--allocate-node-cidrs=true --cluster-cidr=10\.244\.0\.0\/16/);
    assert.match(
      cidr.fix ?? "",
      /kubectl patch node node2 -p '\{"spec":\{"podCIDR":"10\.244\.1\.0\/24"\}\}'/,
    );
  });

  it("skip lease checks (never report ok) without a lease source", () => {
    const facts = healthy();
    delete facts.leases;
    const findings = runChecks(facts);
    assert.equal(byCheck(findings, "peer-entries").status, "skip");
    assert.equal(byCheck(findings, "public-ip").status, "skip");
  });
});

describe("iptables evaluator", () => {
  const t = parseIptablesSave([
    "-P FORWARD ACCEPT",
    "-N KUBE-FORWARD",
    "-A FORWARD -j KUBE-FORWARD",
    "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
    "-A FORWARD ! -s 10.0.0.0/8 -j DROP",
  ]);
  it("skips rules it cannot decide and follows user chains", () => {
    const v = evaluateChain(t, "FORWARD", { src: IpAddr.parse("10.1.1.1"), dst: IpAddr.parse("10.2.2.2") });
    assert.deepEqual(v, { verdict: "accept", rule: "-P FORWARD ACCEPT", chain: "FORWARD", position: 0 });
  });
  it("honours negation", () => {
    const v = evaluateChain(t, "FORWARD", {
      src: IpAddr.parse("192.168.1.1"),
      dst: IpAddr.parse("10.2.2.2"),
    });
    assert.equal(v.verdict, "drop");
    assert.equal(v.position, 2);
  });
});
