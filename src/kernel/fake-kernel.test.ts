import assert from "node:assert/strict";
import { test } from "node:test";

import { IpAddr } from "../ip/addr.ts";
import { IfAddr, IpNet } from "../ip/net.ts";
import { FakeKernel } from "./fake-kernel.ts";
import { KernelError, type KernelEvent } from "./ports.ts";

const ip = IpAddr.parse;
const net = IpNet.parse;

function host(): FakeKernel {
  const k = new FakeKernel();
  k.addHost({ addr: "10.0.0.1/24", gateway: "10.0.0.254", mac: "02:00:00:00:00:01" });
  return k;
}

function vxlan(k: FakeKernel): number {
  const eth = k.links.get("eth0")!;
  const l = k.links.addVxlan({
    name: "flannel.1",
    vni: 1,
    local: ip("10.0.0.1"),
    vtepIndex: eth.index,
    port: 0,
    learning: false,
    gbp: false,
    mtu: 1450,
    mac: "0e:2a:00:00:00:01",
  });
  k.links.setUp("flannel.1");
  k.addrs.add(l.index, IfAddr.parse("10.244.1.0/32"));
  return l.index;
}

function errno(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof KernelError, `expected KernelError, got ${String(err)}`);
    return err.errno;
  }
  assert.fail("expected a KernelError");
}

test("a host starts with eth0, its connected route and a default route", () => {
  assert.equal(
    host().dump(),
    [
      "ip link add eth0 type veth mtu 1500 address 02:00:00:00:00:01 up",
      "ip addr add 10.0.0.1/24 dev eth0",
      "ip route add 10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1",
      "ip route add default via 10.0.0.254 dev eth0",
      "",
    ].join("\n"),
  );
});

test("the vxlan programming of one peer shows up in the dump and is undone by deleting the device", () => {
  const k = host();
  const idx = vxlan(k);
  k.neighbours.replace({ linkIndex: idx, ip: ip("10.244.2.0"), mac: "0E:2A:00:00:00:02" });
  k.fdb.replace({ linkIndex: idx, mac: "0e:2a:00:00:00:02", dst: ip("10.0.0.2") });
  k.routes.replace({
    family: 4,
    dst: net("10.244.2.0/24"),
    gw: ip("10.244.2.0"),
    linkIndex: idx,
    onlink: true,
    scope: 0,
  });
  assert.equal(
    k.dump(),
    [
      "ip link add eth0 type veth mtu 1500 address 02:00:00:00:00:01 up",
      "ip link add flannel.1 type vxlan id 1 local 10.0.0.1 dev eth0 dstport 8472 nolearning mtu 1450 address 0e:2a:00:00:00:01 up",
      "ip addr add 10.0.0.1/24 dev eth0",
      "ip addr add 10.244.1.0/32 dev flannel.1",
      "ip route add 10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1",
      "ip route add 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
      "ip route add default via 10.0.0.254 dev eth0",
      "ip neigh add 10.244.2.0 lladdr 0e:2a:00:00:00:02 dev flannel.1 nud permanent",
      "bridge fdb add 0e:2a:00:00:00:02 dev flannel.1 dst 10.0.0.2 self permanent",
      "",
    ].join("\n"),
  );
  k.links.delete("flannel.1");
  assert.equal(k.dump(), host().dump());
  assert.equal(k.sysctl.get("net/ipv6/conf/flannel.1/accept_ra"), undefined);
});

test("kernel-like errors", () => {
  const k = host();
  const idx = vxlan(k);
  const spec = { name: "flannel.1", vni: 2, local: null, vtepIndex: 0, port: 0, learning: false, gbp: false };
  assert.equal(
    errno(() => k.links.addVxlan(spec)),
    "EEXIST",
  );
  assert.equal(
    errno(() => k.links.addBridge("eth0")),
    "EEXIST",
  );
  assert.equal(
    errno(() => k.links.addVxlan({ ...spec, name: "other", vni: 1 })),
    "EEXIST",
  ); // same VNI+port
  assert.equal(
    errno(() => k.addrs.add(99, IfAddr.parse("10.1.1.1/24"))),
    "ENODEV",
  );
  assert.equal(
    errno(() => k.neighbours.replace({ linkIndex: 99, ip: ip("10.1.1.1"), mac: "02:00:00:00:00:09" })),
    "ENODEV",
  );
  assert.equal(
    errno(() => k.links.setMtu("nope", 1400)),
    "ENODEV",
  );
  // Without onlink the gateway must be covered by a connected route; flannel.1 has only a /32.
  assert.equal(
    errno(() =>
      k.routes.replace({ family: 4, dst: net("10.244.3.0/24"), gw: ip("10.244.3.0"), linkIndex: idx }),
    ),
    "ENETUNREACH",
  );
  assert.equal(
    errno(() => k.routes.replace({ family: 4, dst: net("10.244.3.0/24"), gw: ip("192.168.9.1") })),
    "ENETUNREACH",
  );
  assert.equal(
    errno(() => k.routes.replace({ family: 4, dst: net("10.244.3.0/24") })),
    "ENODEV",
  );
  const br = k.links.addBridge("cni0");
  assert.equal(
    errno(() => k.routes.replace({ family: 4, dst: net("10.244.3.0/24"), linkIndex: br.index })),
    "ENETDOWN",
  );
  assert.equal(
    errno(() => k.fdb.replace({ linkIndex: br.index, mac: "02:00:00:00:00:09", dst: ip("10.0.0.9") })),
    "EINVAL",
  );
  assert.equal(
    errno(() => k.links.setMac("cni0", "01:00:00:00:00:01")),
    "EADDRNOTAVAIL",
  );
});

test("deletes succeed when the thing is absent", () => {
  const k = host();
  const idx = vxlan(k);
  const before = k.dump();
  k.links.delete("nope");
  k.addrs.delete(idx, IfAddr.parse("10.9.9.9/32"));
  k.routes.delete({ family: 4, dst: net("10.244.9.0/24"), linkIndex: idx });
  k.neighbours.delete({ linkIndex: idx, ip: ip("10.244.9.0") });
  k.fdb.delete({ linkIndex: idx, mac: "02:00:00:00:00:09", dst: ip("10.0.0.9") });
  assert.equal(k.dump(), before);
});

test("replace overwrites by destination; a gateway-only route resolves its device", () => {
  const k = host();
  const eth = k.links.get("eth0")!;
  k.routes.replace({ family: 4, dst: net("10.244.5.0/24"), gw: ip("10.0.0.5") });
  k.routes.replace({ family: 4, dst: net("10.244.5.0/24"), gw: ip("10.0.0.6") });
  const rs = k.routes.list({ family: 4 }).filter((r) => r.dst?.toString() === "10.244.5.0/24");
  assert.equal(rs.length, 1);
  assert.equal(rs[0]!.gw?.toString(), "10.0.0.6");
  assert.equal(rs[0]!.linkIndex, eth.index);
  // A blackhole replaces the unicast route to the same destination.
  k.routes.replace({ family: 4, dst: net("10.244.5.0/24"), type: "blackhole" });
  assert.deepEqual(
    k.routes
      .list({ family: 4 })
      .filter((r) => r.dst?.toString() === "10.244.5.0/24")
      .map((r) => r.type),
    ["blackhole"],
  );
  assert.ok(k.dump().includes("ip route add blackhole 10.244.5.0/24\n"));
});

test("route get: longest prefix match, own addresses, blackhole and no route", () => {
  const k = host();
  const idx = vxlan(k);
  k.routes.replace({
    family: 4,
    dst: net("10.244.2.0/24"),
    gw: ip("10.244.2.0"),
    linkIndex: idx,
    onlink: true,
  });
  k.routes.replace({ family: 4, dst: net("10.244.7.0/24"), type: "blackhole" });
  const eth = k.links.get("eth0")!;

  const viaVxlan = k.routes.get(ip("10.244.2.7"));
  assert.equal(viaVxlan.linkIndex, idx);
  assert.equal(viaVxlan.gw?.toString(), "10.244.2.0");
  assert.equal(viaVxlan.src?.toString(), "10.244.1.0");
  assert.equal(viaVxlan.dst?.toString(), "10.244.2.7/32");

  const direct = k.routes.get(ip("10.0.0.9"));
  assert.equal(direct.linkIndex, eth.index);
  assert.equal(direct.gw, undefined);
  assert.equal(direct.src?.toString(), "10.0.0.1");

  const dflt = k.routes.get(ip("8.8.8.8"));
  assert.equal(dflt.gw?.toString(), "10.0.0.254");

  assert.equal(k.routes.get(ip("10.0.0.1")).type, "local");
  assert.equal(
    errno(() => k.routes.get(ip("10.244.7.1"))),
    "EINVAL",
  );
  assert.equal(
    errno(() => k.routes.get(ip("fd00::1"))),
    "ENETUNREACH",
  );
});

test("addresses: secondary flag, deleting the primary and the last address", () => {
  const k = host();
  const eth = k.links.get("eth0")!;
  k.addrs.add(eth.index, IfAddr.parse("10.0.0.2/24"));
  k.addrs.add(eth.index, IfAddr.parse("10.0.0.2/24")); // idempotent
  const list = k.addrs.list({ linkIndex: eth.index, family: 4 });
  assert.deepEqual(
    list.map((a) => [a.addr.toString(), a.flags & 1]),
    [
      ["10.0.0.1/24", 0],
      ["10.0.0.2/24", 1],
    ],
  );
  k.addrs.delete(eth.index, IfAddr.parse("10.0.0.2/24"));
  assert.equal(k.routes.list({ family: 4 }).length, 2, "the primary still covers the prefix");
  k.addrs.add(eth.index, IfAddr.parse("10.0.0.2/24"));
  // Deleting the primary takes the secondary with it (promote_secondaries=0), and with the last IPv4
  // address gone every IPv4 route through eth0 is flushed, the default route included.
  k.addrs.delete(eth.index, IfAddr.parse("10.0.0.1/24"));
  assert.deepEqual(k.addrs.list({ linkIndex: eth.index }), []);
  assert.deepEqual(k.routes.list({ family: 4 }), []);
});

test("events for deletions reach subscribers until the signal aborts", async () => {
  const k = host();
  const idx = vxlan(k);
  k.routes.replace({
    family: 4,
    dst: net("10.244.2.0/24"),
    gw: ip("10.244.2.0"),
    linkIndex: idx,
    onlink: true,
  });
  const seen: KernelEvent[] = [];
  const ac = new AbortController();
  k.events.subscribe((ev) => seen.push(ev), ac.signal);
  k.routes.delete({ family: 4, dst: net("10.244.2.0/24"), linkIndex: idx });
  k.links.delete("flannel.1");
  assert.equal(seen.length, 0, "delivery is asynchronous, like netlink");
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    seen.map((e) => e.type),
    ["route-deleted", "link-deleted"],
  );
  const del = seen[1];
  assert.ok(del?.type === "link-deleted" && del.name === "flannel.1" && del.index === idx);
  ac.abort();
  k.links.delete("eth0");
  await new Promise((r) => setImmediate(r));
  assert.equal(seen.length, 2);
});

test("fail() injects an errno for the next calls and changes nothing", () => {
  const k = host();
  k.fail("routes.replace", "EPERM", 2);
  const r = { family: 4 as const, dst: net("10.244.5.0/24"), gw: ip("10.0.0.5") };
  assert.equal(
    errno(() => k.routes.replace(r)),
    "EPERM",
  );
  assert.equal(
    errno(() => k.routes.replace(r)),
    "EPERM",
  );
  assert.equal(k.dump(), host().dump());
  k.routes.replace(r);
  assert.ok(k.dump().includes("10.244.5.0/24 via 10.0.0.5 dev eth0"));
  assert.deepEqual(k.log.slice(-1), ["ip route replace 10.244.5.0/24 via 10.0.0.5 dev eth0"]);
});

test("sysctl: per-link entries exist, unknown paths are refused like /proc", () => {
  const k = host();
  k.sysctl.set("net/ipv4/ip_forward", "1\n");
  assert.equal(k.sysctl.get("net/ipv4/ip_forward"), "1");
  assert.equal(k.sysctl.get("net/ipv6/conf/eth0/accept_ra"), "1");
  assert.equal(
    errno(() => k.sysctl.set("net/ipv6/conf/nope/accept_ra", "0")),
    "ENOENT",
  );
});

test("ipip devices: local/remote attributes, one tunnel per endpoint pair, listed in dump", () => {
  const k = host();
  const l = k.links.addIpip({ name: "flannel.ipip", local: ip("10.0.0.1") });
  assert.equal(l.kind, "ipip");
  assert.equal(l.mtu, 1480);
  assert.equal(l.mac, "");
  assert.deepEqual(k.links.get("flannel.ipip")?.ipip, { local: ip("10.0.0.1"), remote: null });
  assert.throws(() => k.links.addIpip({ name: "other", local: ip("10.0.0.1") }), { errno: "EEXIST" });
  assert.match(k.dump(), /^ip link add flannel\.ipip type ipip local 10\.0\.0\.1 remote any mtu 1480 down$/m);
  k.fail("links.addIpip", "EOPNOTSUPP");
  assert.throws(() => k.links.addIpip({ name: "x", local: null }), { errno: "EOPNOTSUPP" });
});

test("wireguard devices: keys, port, peers with flags, allowed IPs owned by one peer, gone with the link", () => {
  const k = host();
  const K1 = Buffer.alloc(32, 1).toString("base64");
  const K2 = Buffer.alloc(32, 2).toString("base64");
  k.links.addWireguard("wg0", 1420);
  assert.throws(() => k.wireguard.configure("eth0", {}), { errno: "EOPNOTSUPP" });
  assert.throws(() => k.wireguard.configure("nope", {}), { errno: "ENODEV" });
  assert.equal(k.wireguard.get("nope"), undefined);
  k.wireguard.configure("wg0", {
    privateKey: K1,
    listenPort: 51820,
    peers: [
      { publicKey: K2, allowedIps: [net("10.244.2.0/24")], endpoint: { ip: ip("10.0.0.2"), port: 51820 } },
    ],
  });
  // Without REPLACE_ALLOWEDIPS allowed IPs accumulate; with it they are replaced.
  k.wireguard.configure("wg0", { peers: [{ publicKey: K2, allowedIps: [net("10.244.3.0/24")] }] });
  assert.deepEqual(k.wireguard.get("wg0")?.peers[0]?.allowedIps.map(String), [
    "10.244.2.0/24",
    "10.244.3.0/24",
  ]);
  k.wireguard.configure("wg0", {
    peers: [{ publicKey: K2, allowedIps: [net("10.244.4.0/24")], replaceAllowedIps: true }],
  });
  assert.deepEqual(k.wireguard.get("wg0")?.peers[0]?.allowedIps.map(String), ["10.244.4.0/24"]);
  // Another peer taking the same allowed IP takes it away from the first.
  k.wireguard.configure("wg0", { peers: [{ publicKey: K1, allowedIps: [net("10.244.4.0/24")] }] });
  assert.deepEqual(
    k.wireguard.get("wg0")?.peers.map((p) => [p.publicKey, p.allowedIps.map(String)]),
    [
      [K2, []],
      [K1, ["10.244.4.0/24"]],
    ],
  );
  k.wireguard.configure("wg0", { peers: [{ publicKey: K1, allowedIps: [], remove: true }] });
  assert.deepEqual(
    k.wireguard.get("wg0")?.peers.map((p) => p.publicKey),
    [K2],
  );
  k.wireguard.configure("wg0", { replacePeers: true });
  assert.deepEqual(k.wireguard.get("wg0")?.peers, []);
  assert.equal(k.wireguard.get("wg0")?.listenPort, 51820);
  assert.throws(() => k.wireguard.configure("wg0", { privateKey: "c2hvcnQ=" }), { errno: "EINVAL" });
  k.links.delete("wg0");
  k.links.addWireguard("wg0");
  assert.deepEqual(k.wireguard.get("wg0"), { name: "wg0", publicKey: "", listenPort: 0, peers: [] });
});

test("vxlan devices may share a VNI and port across address families, not within one", () => {
  const k = new FakeKernel();
  const common = { vni: 1, vtepIndex: 0, port: 0, learning: false, gbp: false };
  k.links.addVxlan({ ...common, name: "flannel.1", local: IpAddr.parse("192.168.1.1") });
  k.links.addVxlan({ ...common, name: "flannel-v6.1", local: IpAddr.parse("fd00::1") });
  assert.throws(
    () => k.links.addVxlan({ ...common, name: "other.1", local: IpAddr.parse("192.168.1.2") }),
    (err: unknown) => err instanceof KernelError && err.errno === "EEXIST",
  );
});
