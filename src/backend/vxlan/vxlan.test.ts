import assert from "node:assert/strict";
import { test } from "node:test";
import type { NetworkConfig } from "../../config/network-config.ts";
import { IpAddr } from "../../ip/addr.ts";
import { IfAddr, IpNet } from "../../ip/net.ts";
import { FakeKernel } from "../../kernel/fake-kernel.ts";
import type { Lease } from "../../lease/lease.ts";
import { MemoryLogger } from "../../log/logger.ts";
import { waitFor } from "../../../test/helpers/netns.ts";
import type { BackendDeps, Network } from "../backend.ts";
import { FakeSubnetManager } from "../fake-subnet-manager.ts";
import { createVxlanBackend, type VxlanNetwork } from "./vxlan.ts";
import { fakeNetworkConfig } from "../fake-network-config.ts";

const MAC1 = "0e:2a:00:00:00:01";
const MAC1V6 = "0e:2a:00:00:06:01";

function config(over: Partial<NetworkConfig> = {}): NetworkConfig {
  return fakeNetworkConfig("vxlan", {}, over);
}

interface PeerOpts {
  v6?: string;
  publicIpv6?: string;
  mac6?: string;
  type?: string;
}

/** A peer's vxlan lease; `mac` "aa:00:00:00:00:NN" by default from the third octet. */
function peer(v4: string | null, publicIp: string, mac?: string, opts: PeerOpts = {}): Lease {
  const sn = v4 === null ? null : IpNet.parse(v4);
  const m =
    mac ?? `aa:00:00:00:00:${((Number(sn?.ip.value ?? 0n) >> 8) & 0xff).toString(16).padStart(2, "0")}`;
  return {
    enableIpv4: v4 !== null,
    enableIpv6: opts.v6 !== undefined,
    subnet: sn,
    ipv6Subnet: opts.v6 === undefined ? null : IpNet.parse(opts.v6),
    attrs: {
      publicIp: IpAddr.parse(publicIp),
      publicIpv6: opts.publicIpv6 === undefined ? null : IpAddr.parse(opts.publicIpv6),
      backendType: opts.type ?? "vxlan",
      ...(v4 === null ? {} : { backendData: JSON.stringify({ VNI: 1, VtepMAC: m }) }),
      ...(opts.v6 === undefined
        ? {}
        : { backendV6Data: JSON.stringify({ VNI: 1, VtepMAC: opts.mac6 ?? m }) }),
    },
    expiration: null,
    asof: 0,
  };
}

interface Rig {
  kernel: FakeKernel;
  sm: FakeSubnetManager;
  log: MemoryLogger;
  net: VxlanNetwork;
  stop: () => Promise<void>;
}

interface StartOpts {
  kernel?: FakeKernel;
  backend?: Record<string, unknown>;
  dual?: boolean;
  /** An IPv6-only network (only flannel-v6.1). */
  v6only?: boolean;
  checkMs?: number;
  retryMs?: number;
  storedMacs?: { v4?: string; v6?: string };
}

function host(): FakeKernel {
  const kernel = new FakeKernel();
  kernel.addHost({ addr: "192.168.0.1/24", gateway: "192.168.0.254", mac: "02:00:00:00:00:01" });
  return kernel;
}

function deps(kernel: FakeKernel, sm: FakeSubnetManager, log: MemoryLogger, dual: boolean): BackendDeps {
  const eth0 = kernel.links.get("eth0");
  assert.ok(eth0);
  return {
    subnetManager: sm,
    kernel,
    logger: log,
    extIface: {
      iface: eth0,
      ifaceAddr: IpAddr.parse("192.168.0.1"),
      extAddr: IpAddr.parse("192.168.0.1"),
      ifaceV6Addr: dual ? IpAddr.parse("fc00::1") : null,
      extV6Addr: dual ? IpAddr.parse("fc00::1") : null,
    },
  };
}

async function start(opts: StartOpts = {}): Promise<Rig> {
  const v6only = opts.v6only ?? false;
  const dual = (opts.dual ?? false) || v6only;
  const kernel = opts.kernel ?? host();
  if (dual) kernel.addAddr("eth0", "fc00::1/64");
  const own: Lease = v6only
    ? peer(null, "192.168.0.1", undefined, { v6: "fd00:1::/64", publicIpv6: "fc00::1" })
    : {
        ...peer("10.244.1.0/24", "192.168.0.1"),
        ...(dual ? { enableIpv6: true, ipv6Subnet: IpNet.parse("fd00:1::/64") } : {}),
      };
  const sm = new FakeSubnetManager({ lease: own, storedMacs: opts.storedMacs ?? { v4: MAC1, v6: MAC1V6 } });
  const log = new MemoryLogger();
  const cfg = config({
    backend: opts.backend ?? { Type: "vxlan" },
    ...(dual ? { enableIpv6: true, ipv6Network: IpNet.parse("fd00::/16") } : {}),
    ...(v6only ? { enableIpv4: false } : {}),
  });
  const ac = new AbortController();
  const backend = createVxlanBackend(deps(kernel, sm, log, dual), {
    checkMs: opts.checkMs ?? 60_000,
    retryMs: opts.retryMs ?? 10,
  });
  const net = (await backend.registerNetwork(cfg, ac.signal)) as VxlanNetwork;
  const running = net.run(ac.signal);
  return {
    kernel,
    sm,
    log,
    net,
    stop: async () => {
      ac.abort();
      await running;
    },
  };
}

const HOST_LINES = [
  "ip link add eth0 type veth mtu 1500 address 02:00:00:00:00:01 up",
  "ip addr add 192.168.0.1/24 dev eth0",
  "ip route add 192.168.0.0/24 dev eth0 proto kernel scope link src 192.168.0.1",
  "ip route add default via 192.168.0.254 dev eth0",
];
const DEVICE_LINES = [
  `ip link add flannel.1 type vxlan id 1 local 192.168.0.1 dev eth0 dstport 8472 nolearning mtu 1450 address ${MAC1} up`,
  "ip addr add 10.244.1.0/32 dev flannel.1",
];

/** The kernel lines one vxlan peer needs. */
function peerLines(subnetIp: string, mac: string, publicIp: string): string[] {
  return [
    `ip route add ${subnetIp}/24 via ${subnetIp} dev flannel.1 onlink`,
    `ip neigh add ${subnetIp} lladdr ${mac} dev flannel.1 nud permanent`,
    `bridge fdb add ${mac} dev flannel.1 dst ${publicIp} self permanent`,
  ];
}

/** The whole expected dump, sorted per section the way FakeKernel.dump() sorts. */
function expected(...peers: string[][]): string {
  const all = [...HOST_LINES, ...DEVICE_LINES, ...peers.flat()];
  const section = (l: string): number =>
    l.startsWith("ip link")
      ? 0
      : l.startsWith("ip addr")
        ? 1
        : /^ip( -6)? route/.test(l)
          ? 2
          : l.startsWith("ip neigh")
            ? 3
            : 4;
  const out: string[] = [];
  for (let s = 0; s <= 4; s++) out.push(...all.filter((l) => section(l) === s).sort());
  return out.map((l) => l + "\n").join("");
}

const A = peerLines("10.244.2.0", "aa:00:00:00:00:02", "192.168.0.2");
const B = peerLines("10.244.3.0", "aa:00:00:00:00:03", "192.168.0.3");
const C = peerLines("10.244.4.0", "aa:00:00:00:00:04", "192.168.0.4");

test("registration creates flannel.1, advertises VNI and VtepMAC, and reports MTU base − 50", async () => {
  const rig = await start();
  try {
    assert.equal(rig.kernel.dump(), expected());
    assert.equal(rig.sm.acquired.length, 1);
    const attrs = rig.sm.acquired[0];
    assert.equal(attrs?.backendType, "vxlan");
    assert.equal(attrs?.backendData, `{"VNI":1,"VtepMAC":"${MAC1}"}`);
    assert.equal(attrs?.publicIp.toString(), "192.168.0.1");
    assert.equal(rig.net.mtu(), 1450);
    assert.equal(rig.kernel.sysctl.get("net/ipv6/conf/flannel.1/accept_ra"), "0");
    assert.ok(
      rig.log.lines.includes("I VXLAN config: VNI=1 Port=0 GBP=false Learning=false DirectRouting=false"),
    );
    assert.ok(rig.log.lines.includes(`I Interface flannel.1 mac address set to: ${MAC1}`));
  } finally {
    await rig.stop();
  }
});

test("config keys are case-insensitive: vni, port, gbp, mtu", async () => {
  const rig = await start({ backend: { type: "vxlan", vni: 7, PORT: 4789, Gbp: true, mtu: 9000 } });
  try {
    assert.match(
      rig.kernel.dump(),
      /^ip link add flannel\.7 type vxlan id 7 local 192\.168\.0\.1 dev eth0 dstport 4789 nolearning gbp mtu 8950 /m,
    );
    assert.equal(rig.net.mtu(), 8950);
    assert.ok(
      rig.log.lines.includes("I VXLAN config: VNI=7 Port=4789 GBP=true Learning=false DirectRouting=false"),
    );
  } finally {
    await rig.stop();
  }
});

test("a wrongly typed config field is a decode error", async () => {
  const kernel = host();
  const sm = new FakeSubnetManager({ lease: peer("10.244.1.0/24", "192.168.0.1") });
  const backend = createVxlanBackend(deps(kernel, sm, new MemoryLogger(), false));
  await assert.rejects(
    backend.registerNetwork(config({ backend: { VNI: "1" } }), new AbortController().signal),
    {
      message:
        "error decoding VXLAN backend config: json: cannot unmarshal string into Go struct field .VNI of type int",
    },
  );
});

test("three peers, one removed, then the device, a route and an FDB entry deleted by hand are repaired", async () => {
  const rig = await start();
  try {
    const own = peer("10.244.1.0/24", "192.168.0.1");
    await rig.sm.push({
      snapshot: [
        own,
        peer("10.244.2.0/24", "192.168.0.2"),
        peer("10.244.3.0/24", "192.168.0.3"),
        peer("10.244.4.0/24", "192.168.0.4"),
      ],
    });
    assert.equal(rig.kernel.dump(), expected(A, B, C));

    await rig.sm.push({ events: [{ type: "removed", lease: peer("10.244.3.0/24", "0.0.0.0") }] });
    assert.equal(rig.kernel.dump(), expected(A, C));

    // The device is deleted: it comes back with the same MAC, its address and every entry.
    rig.kernel.links.delete("flannel.1");
    await waitFor(
      () => rig.kernel.dump() === expected(A, C),
      10_000,
      "flannel.1 to be recreated and replayed",
    );
    assert.ok(rig.log.lines.includes("W Interface flannel.1 deleted; recreating it"), rig.log.text());

    const dev = rig.kernel.links.get("flannel.1");
    assert.ok(dev);
    rig.kernel.routes.delete({ family: 4, dst: IpNet.parse("10.244.2.0/24") });
    await waitFor(() => rig.kernel.dump() === expected(A, C), 10_000, "the route to be repaired");

    rig.kernel.fdb.delete({
      linkIndex: dev.index,
      mac: "aa:00:00:00:00:04",
      dst: IpAddr.parse("192.168.0.4"),
    });
    await waitFor(() => rig.kernel.dump() === expected(A, C), 10_000, "the FDB entry to be repaired");

    rig.kernel.neighbours.delete({ linkIndex: dev.index, ip: IpAddr.parse("10.244.4.0") });
    await waitFor(() => rig.kernel.dump() === expected(A, C), 10_000, "the neighbour to be repaired");
  } finally {
    await rig.stop();
  }
  // Nothing is removed at exit.
  assert.equal(rig.kernel.dump(), expected(A, C));
});

test("a peer whose MAC or public IP changes gets its entries replaced", async () => {
  const rig = await start();
  try {
    await rig.sm.push({ snapshot: [peer("10.244.2.0/24", "192.168.0.2")] });
    assert.equal(rig.kernel.dump(), expected(A));
    // New MAC (the peer recreated its device).
    await rig.sm.push({
      events: [{ type: "added", lease: peer("10.244.2.0/24", "192.168.0.2", "aa:00:00:00:00:22") }],
    });
    assert.equal(rig.kernel.dump(), expected(peerLines("10.244.2.0", "aa:00:00:00:00:22", "192.168.0.2")));
    // New public IP.
    await rig.sm.push({
      events: [{ type: "added", lease: peer("10.244.2.0/24", "192.168.0.12", "aa:00:00:00:00:22") }],
    });
    assert.equal(rig.kernel.dump(), expected(peerLines("10.244.2.0", "aa:00:00:00:00:22", "192.168.0.12")));
  } finally {
    await rig.stop();
  }
});

test("leases of other backends and leases with broken backend data are ignored", async () => {
  const rig = await start();
  try {
    const broken = peer("10.244.6.0/24", "192.168.0.6");
    broken.attrs.backendData = '{"VNI":1}';
    await rig.sm.push({
      snapshot: [
        peer("10.244.2.0/24", "192.168.0.2"),
        peer("10.244.5.0/24", "192.168.0.5", undefined, { type: "host-gw" }),
        broken,
      ],
    });
    assert.equal(rig.kernel.dump(), expected(A));
    assert.ok(
      rig.log.lines.includes("W ignoring non-vxlan v4Subnet(10.244.5.0/24) v6Subnet(<nil>): type=host-gw"),
      rig.log.text(),
    );
    assert.ok(
      rig.log.lines.some((l) => l.startsWith("E error decoding subnet lease JSON: invalid VtepMAC")),
      rig.log.text(),
    );
  } finally {
    await rig.stop();
  }
});

test("stale entries on the device from before a restart are removed once the snapshot is in", async () => {
  const kernel = host();
  // A previous flanneld left flannel.1 with a peer that has since left the cluster.
  const eth0 = kernel.links.get("eth0");
  assert.ok(eth0);
  const old = kernel.links.addVxlan({
    name: "flannel.1",
    vni: 1,
    local: IpAddr.parse("192.168.0.1"),
    vtepIndex: eth0.index,
    port: 0,
    learning: false,
    gbp: false,
    mtu: 1450,
    mac: MAC1,
  });
  kernel.links.setUp("flannel.1");
  kernel.addrs.add(old.index, IfAddr.parse("10.244.1.0/32"));
  kernel.neighbours.replace({
    linkIndex: old.index,
    ip: IpAddr.parse("10.244.9.0"),
    mac: "aa:00:00:00:00:09",
  });
  kernel.fdb.replace({ linkIndex: old.index, mac: "aa:00:00:00:00:09", dst: IpAddr.parse("192.168.0.9") });
  kernel.routes.replace({
    family: 4,
    dst: IpNet.parse("10.244.9.0/24"),
    gw: IpAddr.parse("10.244.9.0"),
    linkIndex: old.index,
    onlink: true,
  });
  const rig = await start({ kernel, storedMacs: {} });
  try {
    // The device was reused as it was (same index, same MAC): no disturbance before the snapshot.
    assert.equal(rig.kernel.links.get("flannel.1")?.index, old.index);
    assert.match(rig.kernel.dump(), /10\.244\.9\.0/);
    await rig.sm.push({ snapshot: [peer("10.244.2.0/24", "192.168.0.2")] });
    assert.equal(rig.kernel.dump(), expected(A));
  } finally {
    await rig.stop();
  }
});

test("an existing incompatible device is recreated with upstream's warning", async () => {
  const kernel = host();
  const eth0 = kernel.links.get("eth0");
  assert.ok(eth0);
  kernel.links.addVxlan({
    name: "flannel.1",
    vni: 2,
    local: IpAddr.parse("192.168.0.1"),
    vtepIndex: eth0.index,
    port: 0,
    learning: false,
    gbp: false,
  });
  const rig = await start({ kernel });
  try {
    assert.equal(rig.kernel.dump(), expected());
    assert.ok(
      rig.log.lines.includes(
        'W "flannel.1" already exists with incompatible configuration: vni: 1 vs 2; recreating device',
      ),
      rig.log.text(),
    );
  } finally {
    await rig.stop();
  }
});

test("a device whose MAC is not the one asked for fails registration with upstream's message", async () => {
  const kernel = host();
  const addVxlan = kernel.links.addVxlan.bind(kernel.links);
  // As systemd's MACAddressPolicy=random does (upstream #1795).
  kernel.links.addVxlan = (spec) => addVxlan({ ...spec, mac: "02:99:99:99:99:99" });
  const sm = new FakeSubnetManager({ lease: peer("10.244.1.0/24", "192.168.0.1"), storedMacs: { v4: MAC1 } });
  const backend = createVxlanBackend(deps(kernel, sm, new MemoryLogger(), false));
  await assert.rejects(backend.registerNetwork(config(), new AbortController().signal), {
    message: `failed to configure interface flannel.1: flannel.1's mac address wanted: ${MAC1}, but got: 02:99:99:99:99:99`,
  });
});

test("a lease without IPv4 for an IPv4 network is an error", async () => {
  const kernel = host();
  const sm = new FakeSubnetManager({ lease: { ...peer("10.244.1.0/24", "192.168.0.1"), subnet: null } });
  const backend = createVxlanBackend(deps(kernel, sm, new MemoryLogger(), false));
  await assert.rejects(backend.registerNetwork(config(), new AbortController().signal), {
    message: "failed to configure interface flannel.1: IPv4 is enabled but the lease has no IPv4",
  });
});

test("a failing route add undoes the peer's neighbour and FDB entry, and a retry completes it", async () => {
  const rig = await start({ retryMs: 10 });
  try {
    rig.kernel.fail("routes.replace", "EPERM");
    await rig.sm.push({ snapshot: [peer("10.244.2.0/24", "192.168.0.2")] });
    // Right after the failing pass: nothing half-programmed (the neighbour and FDB entry were undone)...
    assert.ok(rig.kernel.log.includes("ip neigh del 10.244.2.0 dev flannel.1"), rig.kernel.log.join("\n"));
    assert.ok(
      rig.log.lines.some((l) => l.startsWith("E Failed to route replace 10.244.2.0/24")),
      rig.log.text(),
    );
    // ...and the retry programs the peer.
    await waitFor(() => rig.kernel.dump() === expected(A), 10_000, "the retry to program the peer");
  } finally {
    await rig.stop();
  }
});

test("a permanent kernel error backs off instead of reacting to the deletions its own undo caused", async () => {
  const rig = await start({ retryMs: 60_000 });
  try {
    rig.kernel.fail("routes.replace", "EPERM", 1000);
    await rig.sm.push({ snapshot: [peer("10.244.2.0/24", "192.168.0.2")] });
    // The undo emitted neigh/FDB deletions; give them every chance to (wrongly) trigger more passes.
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const attempts = rig.log.lines.filter((l) => l.startsWith("E Failed to route replace 10.244.2.0/24"));
    assert.equal(attempts.length, 1, rig.log.text());
  } finally {
    await rig.stop();
  }
});

test("drift that sends no notification (neighbour MAC, device address) is fixed by the periodic check", async () => {
  const rig = await start({ checkMs: 20 });
  try {
    await rig.sm.push({ snapshot: [peer("10.244.2.0/24", "192.168.0.2")] });
    const dev = rig.kernel.links.get("flannel.1");
    assert.ok(dev);
    rig.kernel.neighbours.replace({
      linkIndex: dev.index,
      ip: IpAddr.parse("10.244.2.0"),
      mac: "aa:bb:bb:bb:bb:bb",
    });
    await waitFor(() => rig.kernel.dump() === expected(A), 10_000, "the neighbour to be fixed");
    // The device's address removed, another one inside the network added: both put right.
    rig.kernel.addrs.delete(dev.index, IfAddr.parse("10.244.1.0/32"));
    rig.kernel.addrs.add(dev.index, IfAddr.parse("10.244.7.0/32"));
    await waitFor(() => rig.kernel.dump() === expected(A), 10_000, "the device address to be fixed");
  } finally {
    await rig.stop();
  }
});

test("DirectRouting: a peer on the same L2 subnet gets a plain route, a remote one vxlan entries", async () => {
  const rig = await start({ backend: { Type: "vxlan", DirectRouting: true } });
  try {
    await rig.sm.push({
      snapshot: [peer("10.244.2.0/24", "192.168.0.2"), peer("10.244.3.0/24", "10.9.0.3")],
    });
    assert.equal(
      rig.kernel.dump(),
      expected(
        ["ip route add 10.244.2.0/24 via 192.168.0.2 dev eth0"],
        peerLines("10.244.3.0", "aa:00:00:00:00:03", "10.9.0.3"),
      ),
    );
    await rig.sm.push({ events: [{ type: "removed", lease: peer("10.244.2.0/24", "0.0.0.0") }] });
    assert.equal(rig.kernel.dump(), expected(peerLines("10.244.3.0", "aa:00:00:00:00:03", "10.9.0.3")));
  } finally {
    await rig.stop();
  }
});

test("dual-stack uses flannel-v6.1 with the same code: /128 address, v6 entries, MTU base − 70", async () => {
  const rig = await start({ dual: true });
  let net: Network | undefined;
  try {
    net = rig.net;
    const attrs = rig.sm.acquired[0];
    assert.equal(attrs?.backendV6Data, `{"VNI":1,"VtepMAC":"${MAC1V6}"}`);
    assert.equal(attrs?.publicIpv6?.toString(), "fc00::1");
    await rig.sm.push({
      snapshot: [
        peer("10.244.2.0/24", "192.168.0.2", undefined, {
          v6: "fd00:2::/64",
          publicIpv6: "fc00::2",
          mac6: "aa:00:00:00:06:02",
        }),
      ],
    });
    const text = rig.kernel.dump();
    assert.match(
      text,
      new RegExp(
        `^ip link add flannel-v6\\.1 type vxlan id 1 local fc00::1 dev eth0 dstport 8472 nolearning mtu 1430 address ${MAC1V6} up$`,
        "m",
      ),
    );
    assert.match(text, /^ip addr add fd00:1::\/128 dev flannel-v6\.1$/m);
    assert.match(text, /^ip -6 route add fd00:2::\/64 via fd00:2:: dev flannel-v6\.1 metric 1024 onlink$/m);
    assert.match(text, /^ip neigh add fd00:2:: lladdr aa:00:00:00:06:02 dev flannel-v6\.1 nud permanent$/m);
    assert.match(text, /^bridge fdb add aa:00:00:00:06:02 dev flannel-v6\.1 dst fc00::2 self permanent$/m);
    for (const l of A) assert.ok(text.includes(l + "\n"), `missing ${l}`);
    assert.equal(net.mtu(), 1430);

    rig.kernel.links.delete("flannel-v6.1");
    await waitFor(() => rig.kernel.dump() === text, 10_000, "flannel-v6.1 to be recreated and replayed");

    await rig.sm.push({
      events: [
        { type: "removed", lease: peer("10.244.2.0/24", "0.0.0.0", undefined, { v6: "fd00:2::/64" }) },
      ],
    });
    assert.doesNotMatch(rig.kernel.dump(), /10\.244\.2\.0|fd00:2::/);
  } finally {
    await rig.stop();
  }
});

test("an IPv6-only network programs the v6 side of dual-stack peers and removes it with the lease", async () => {
  const rig = await start({ v6only: true });
  try {
    const dualPeer = peer("10.244.2.0/24", "192.168.0.2", undefined, {
      v6: "fd00:2::/64",
      publicIpv6: "fc00::2",
      mac6: "aa:00:00:00:06:02",
    });
    await rig.sm.push({ snapshot: [dualPeer] });
    await waitFor(
      () => /^ip -6 route add fd00:2::\/64 via fd00:2:: dev flannel-v6\.1/m.test(rig.kernel.dump()),
      10_000,
      "the peer's IPv6 route",
    );
    assert.doesNotMatch(rig.kernel.dump(), /10\.244\.2\.0|flannel\.1 /);
    await rig.sm.push({ events: [{ type: "removed", lease: dualPeer }] });
    await waitFor(() => !/fd00:2::/.test(rig.kernel.dump()), 10_000, "the peer's entries to go");
  } finally {
    await rig.stop();
  }
});

test("a lease that takes a peer's subnet and goes away gives the subnet back to that peer", async () => {
  // Two nodes racing for a subnet: the later one's lease overlaps the first's in one family, then is given
  // back (etcd deletes it) and the node takes another. The first node's entries must all stay.
  for (const shared of ["v4", "v6"] as const) {
    const rig = await start({ dual: true });
    try {
      const first = peer("10.244.3.0/24", "192.168.0.3", undefined, {
        v6: "fd00:3::/64",
        publicIpv6: "fc00::3",
        mac6: "aa:00:00:00:06:03",
      });
      const rival = peer(
        shared === "v4" ? "10.244.3.0/24" : "10.244.7.0/24",
        "192.168.0.7",
        "aa:00:00:00:00:07",
        {
          v6: shared === "v6" ? "fd00:3::/64" : "fd00:7::/64",
          publicIpv6: "fc00::7",
          mac6: "aa:00:00:00:06:07",
        },
      );
      await rig.sm.push({ snapshot: [first] });
      const text = rig.kernel.dump();
      assert.match(text, /^ip route add 10\.244\.3\.0\/24 via 10\.244\.3\.0 dev flannel\.1 onlink$/m);
      assert.match(text, /^ip -6 route add fd00:3::\/64 via fd00:3:: dev flannel-v6\.1 metric 1024 onlink$/m);
      await rig.sm.push({ events: [{ type: "added", lease: rival }] });
      await rig.sm.push({ events: [{ type: "removed", lease: rival }] });
      assert.equal(rig.kernel.dump(), text, `${shared}: the first peer's entries are back, the rival's gone`);
      await rig.net.reconcileNow();
      assert.equal(rig.kernel.dump(), text, `${shared}: and a full pass agrees`);
    } finally {
      await rig.stop();
    }
  }
});

test("a lease that shares this node's own subnet gets only its other family programmed", async () => {
  const rig = await start({ dual: true });
  try {
    await rig.sm.push({ snapshot: [] });
    const before = rig.kernel.dump();
    const rival = peer("10.244.1.0/24", "192.168.0.9", "aa:00:00:00:00:09", {
      v6: "fd00:9::/64",
      publicIpv6: "fc00::9",
      mac6: "aa:00:00:00:06:09",
    });
    await rig.sm.push({ events: [{ type: "added", lease: rival }] });
    const text = rig.kernel.dump();
    assert.doesNotMatch(text, /10\.244\.1\.0\/24 via|aa:00:00:00:00:09/);
    assert.match(text, /^ip -6 route add fd00:9::\/64 via fd00:9:: dev flannel-v6\.1 metric 1024 onlink$/m);
    assert.match(
      rig.log.text(),
      /ignoring the IPv4 subnet 10\.244\.1\.0\/24 of a lease: it overlaps this node's subnet 10\.244\.1\.0\/24/,
    );
    await rig.sm.push({ events: [{ type: "removed", lease: rival }] });
    assert.equal(rig.kernel.dump(), before);
  } finally {
    await rig.stop();
  }
});
