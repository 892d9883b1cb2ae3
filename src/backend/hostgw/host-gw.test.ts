import assert from "node:assert/strict";
import { test } from "node:test";
import type { NetworkConfig } from "../../config/network-config.ts";
import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import { FakeKernel } from "../../kernel/fake-kernel.ts";
import type { Lease } from "../../lease/lease.ts";
import { MemoryLogger } from "../../log/logger.ts";
import { waitFor } from "../../../test/helpers/netns.ts";
import type { BackendDeps } from "../backend.ts";
import { FakeSubnetManager } from "../fake-subnet-manager.ts";
import { RouteNetwork } from "../route-network.ts";
import { createHostGwBackend, HOST_GW_NAT_ERROR } from "./host-gw.ts";
import { fakeNetworkConfig } from "../fake-network-config.ts";

function config(over: Partial<NetworkConfig> = {}): NetworkConfig {
  return fakeNetworkConfig("host-gw", {}, over);
}

function lease(
  v4: string | null,
  publicIp: string,
  opts: { v6?: string; publicIpv6?: string; type?: string } = {},
): Lease {
  return {
    enableIpv4: v4 !== null,
    enableIpv6: opts.v6 !== undefined,
    subnet: v4 === null ? null : IpNet.parse(v4),
    ipv6Subnet: opts.v6 === undefined ? null : IpNet.parse(opts.v6),
    attrs: {
      publicIp: IpAddr.parse(publicIp),
      publicIpv6: opts.publicIpv6 === undefined ? null : IpAddr.parse(opts.publicIpv6),
      backendType: opts.type ?? "host-gw",
    },
    expiration: null,
    asof: 0,
  };
}

interface Rig {
  kernel: FakeKernel;
  sm: FakeSubnetManager;
  log: MemoryLogger;
  net: RouteNetwork;
  stop: () => Promise<void>;
}

async function start(opts: { dual?: boolean; checkMs?: number; noNetwork?: boolean } = {}): Promise<Rig> {
  const kernel = new FakeKernel();
  const eth0 = kernel.addHost({ addr: "192.168.0.1/24", mac: "02:00:00:00:00:01" });
  if (opts.dual === true) kernel.addAddr("eth0", "fc00::1/64");
  const own = lease("10.244.1.0/24", "192.168.0.1", opts.dual === true ? { v6: "fd00:1::/64" } : {});
  const sm = new FakeSubnetManager({ lease: own });
  const log = new MemoryLogger();
  const deps: BackendDeps = {
    subnetManager: sm,
    kernel,
    logger: log,
    extIface: {
      iface: eth0,
      ifaceAddr: IpAddr.parse("192.168.0.1"),
      extAddr: IpAddr.parse("192.168.0.1"),
      ifaceV6Addr: opts.dual === true ? IpAddr.parse("fc00::1") : null,
      extV6Addr: opts.dual === true ? IpAddr.parse("fc00::1") : null,
    },
  };
  const cfg = config({
    ...(opts.dual === true ? { enableIpv6: true, ipv6Network: IpNet.parse("fd00::/16") } : {}),
    ...(opts.noNetwork === true ? { network: null } : {}),
  });
  const ac = new AbortController();
  const net = (await createHostGwBackend(deps, { checkMs: opts.checkMs ?? 60_000 }).registerNetwork(
    cfg,
    ac.signal,
  )) as RouteNetwork;
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

const BASE = [
  "ip link add eth0 type veth mtu 1500 address 02:00:00:00:00:01 up",
  "ip addr add 192.168.0.1/24 dev eth0",
];
const CONNECTED = "ip route add 192.168.0.0/24 dev eth0 proto kernel scope link src 192.168.0.1";
const dump = (lines: string[]): string => [...BASE, ...lines].map((l) => l + "\n").join("");

test("host-gw refuses a public IP that differs from the interface IP (NAT)", () => {
  const kernel = new FakeKernel();
  const eth0 = kernel.addHost({ addr: "192.168.0.1/24" });
  const deps: BackendDeps = {
    subnetManager: new FakeSubnetManager({ lease: lease("10.244.1.0/24", "192.168.0.1") }),
    kernel,
    logger: new MemoryLogger(),
    extIface: {
      iface: eth0,
      ifaceAddr: IpAddr.parse("192.168.0.1"),
      extAddr: IpAddr.parse("203.0.113.7"),
      ifaceV6Addr: null,
      extV6Addr: null,
    },
  };
  assert.throws(() => createHostGwBackend(deps), { message: HOST_GW_NAT_ERROR });
});

test("host-gw advertises its type and public IP and reports the interface MTU", async () => {
  const rig = await start();
  try {
    assert.deepEqual(rig.sm.acquired, [
      { publicIp: IpAddr.parse("192.168.0.1"), publicIpv6: null, backendType: "host-gw" },
    ]);
    assert.equal(rig.net.mtu(), 1500);
  } finally {
    await rig.stop();
  }
});

test("host-gw routes three peers, removes one, repairs a deleted route, follows a public IP change", async () => {
  const rig = await start();
  try {
    const own = lease("10.244.1.0/24", "192.168.0.1");
    const a = lease("10.244.2.0/24", "192.168.0.2");
    const b = lease("10.244.3.0/24", "192.168.0.3");
    const c = lease("10.244.4.0/24", "192.168.0.4");
    await rig.sm.push({ snapshot: [own, a, b, c] });
    const three = [
      "ip route add 10.244.2.0/24 via 192.168.0.2 dev eth0",
      "ip route add 10.244.3.0/24 via 192.168.0.3 dev eth0",
      "ip route add 10.244.4.0/24 via 192.168.0.4 dev eth0",
      CONNECTED,
    ];
    assert.equal(rig.kernel.dump(), dump(three));

    await rig.sm.push({ events: [{ type: "removed", lease: lease("10.244.3.0/24", "0.0.0.0") }] });
    const two = [three[0]!, three[2]!, CONNECTED];
    assert.equal(rig.kernel.dump(), dump(two));

    // Deleted by hand: the route-deleted notification triggers a repair pass.
    rig.kernel.routes.delete({ family: 4, dst: IpNet.parse("10.244.4.0/24") });
    await waitFor(() => rig.kernel.dump() === dump(two), 10_000, "the deleted route to come back");
    assert.ok(rig.log.lines.includes("I Route recovered 10.244.4.0/24 : 192.168.0.4"), rig.log.text());

    // The peer moved to another address: its route is replaced, not duplicated.
    await rig.sm.push({ events: [{ type: "added", lease: lease("10.244.2.0/24", "192.168.0.22") }] });
    assert.equal(
      rig.kernel.dump(),
      dump(["ip route add 10.244.2.0/24 via 192.168.0.22 dev eth0", three[2]!, CONNECTED]),
    );
    assert.ok(
      rig.log.lines.some((l) => l.startsWith("I Replacing existing route to 10.244.2.0/24 via 192.168.0.2")),
      rig.log.text(),
    );
  } finally {
    await rig.stop();
  }
  // Nothing is removed at exit (zero-downtime restarts).
  assert.match(rig.kernel.dump(), /10\.244\.2\.0\/24 via 192\.168\.0\.22/);
});

test("host-gw ignores leases of other backends and keeps routes that are already right", async () => {
  const rig = await start();
  try {
    rig.kernel.routes.replace({
      family: 4,
      dst: IpNet.parse("10.244.2.0/24"),
      gw: IpAddr.parse("192.168.0.2"),
      linkIndex: 2,
    });
    await rig.sm.push({
      snapshot: [
        lease("10.244.2.0/24", "192.168.0.2"),
        lease("10.244.5.0/24", "192.168.0.5", { type: "vxlan" }),
      ],
    });
    assert.equal(rig.kernel.dump(), dump(["ip route add 10.244.2.0/24 via 192.168.0.2 dev eth0", CONNECTED]));
    assert.ok(rig.log.lines.includes("W Ignoring non-host-gw subnet: type=vxlan"), rig.log.text());
    assert.ok(rig.log.lines.includes("I Route to 10.244.2.0/24 already exists, skipping."), rig.log.text());
  } finally {
    await rig.stop();
  }
});

test("host-gw removes stale routes of peers that left while it was down, only inside the network", async () => {
  const rig = await start();
  try {
    const gw = IpAddr.parse("192.168.0.9");
    rig.kernel.routes.replace({ family: 4, dst: IpNet.parse("10.244.9.0/24"), gw, linkIndex: 2 });
    rig.kernel.routes.replace({ family: 4, dst: IpNet.parse("172.16.0.0/16"), gw, linkIndex: 2 });
    await rig.sm.push({ snapshot: [lease("10.244.2.0/24", "192.168.0.2")] });
    assert.equal(
      rig.kernel.dump(),
      dump([
        "ip route add 10.244.2.0/24 via 192.168.0.2 dev eth0",
        "ip route add 172.16.0.0/16 via 192.168.0.9 dev eth0",
        CONNECTED,
      ]),
    );
  } finally {
    await rig.stop();
  }
});

test("host-gw repairs drift that sends no notification at the periodic check", async () => {
  const rig = await start({ checkMs: 20 });
  try {
    await rig.sm.push({ snapshot: [lease("10.244.2.0/24", "192.168.0.2")] });
    // A replace by hand emits no deletion event: only the periodic check sees it.
    rig.kernel.routes.replace({
      family: 4,
      dst: IpNet.parse("10.244.2.0/24"),
      gw: IpAddr.parse("192.168.0.77"),
      linkIndex: 2,
    });
    await waitFor(
      () => rig.kernel.dump().includes("10.244.2.0/24 via 192.168.0.2 dev eth0"),
      10_000,
      "the route to be fixed",
    );
  } finally {
    await rig.stop();
  }
});

test("host-gw dual-stack routes both families via the peer's public addresses", async () => {
  const rig = await start({ dual: true });
  try {
    await rig.sm.push({
      snapshot: [lease("10.244.2.0/24", "192.168.0.2", { v6: "fd00:2::/64", publicIpv6: "fc00::2" })],
    });
    const text = rig.kernel.dump();
    assert.match(text, /^ip route add 10\.244\.2\.0\/24 via 192\.168\.0\.2 dev eth0$/m);
    assert.match(text, /^ip -6 route add fd00:2::\/64 via fc00::2 dev eth0 metric 1024$/m);
    await rig.sm.push({
      events: [{ type: "removed", lease: lease("10.244.2.0/24", "0.0.0.0", { v6: "fd00:2::/64" }) }],
    });
    assert.doesNotMatch(rig.kernel.dump(), /10\.244\.2\.0|fd00:2::/);
  } finally {
    await rig.stop();
  }
});

test("host-gw without a known cluster network manages only the routes it wants", async () => {
  const rig = await start({ noNetwork: true });
  try {
    const gw = IpAddr.parse("192.168.0.9");
    rig.kernel.routes.replace({ family: 4, dst: IpNet.parse("10.244.9.0/24"), gw, linkIndex: 2 });
    rig.kernel.routes.replace({ family: 4, dst: IpNet.parse("10.244.2.0/24"), gw, linkIndex: 2 });
    await rig.sm.push({ snapshot: [lease("10.244.2.0/24", "192.168.0.2")] });
    assert.equal(
      rig.kernel.dump(),
      dump([
        "ip route add 10.244.2.0/24 via 192.168.0.2 dev eth0",
        "ip route add 10.244.9.0/24 via 192.168.0.9 dev eth0",
        CONNECTED,
      ]),
    );
  } finally {
    await rig.stop();
  }
});

test("host-gw: a lease that takes a peer's subnet and goes away gives the subnet back to that peer", async () => {
  // As in vxlan.test.ts: a rival lease overlaps the first peer's lease in one family for a moment.
  for (const shared of ["v4", "v6"] as const) {
    const rig = await start({ dual: true });
    try {
      const first = lease("10.244.3.0/24", "192.168.0.3", { v6: "fd00:3::/64", publicIpv6: "fc00::3" });
      const rival = lease(shared === "v4" ? "10.244.3.0/24" : "10.244.7.0/24", "192.168.0.7", {
        v6: shared === "v6" ? "fd00:3::/64" : "fd00:7::/64",
        publicIpv6: "fc00::7",
      });
      await rig.sm.push({ snapshot: [first] });
      const text = rig.kernel.dump();
      assert.match(text, /^ip route add 10\.244\.3\.0\/24 via 192\.168\.0\.3 dev eth0$/m);
      assert.match(text, /^ip -6 route add fd00:3::\/64 via fc00::3 dev eth0 metric 1024$/m);
      await rig.sm.push({ events: [{ type: "added", lease: rival }] });
      assert.match(
        rig.kernel.dump(),
        shared === "v4"
          ? /^ip route add 10\.244\.3\.0\/24 via 192\.168\.0\.7 /m
          : /^ip -6 route add fd00:3::\/64 via fc00::7 /m,
        `${shared}: the later lease's route replaces the first's, as upstream's`,
      );
      await rig.sm.push({ events: [{ type: "removed", lease: rival }] });
      assert.equal(rig.kernel.dump(), text, `${shared}: the first peer's routes are back, the rival's gone`);
      await rig.net.reconcileNow();
      assert.equal(rig.kernel.dump(), text, `${shared}: and a full pass agrees`);
    } finally {
      await rig.stop();
    }
  }
});

test("host-gw: a lease that shares this node's own subnet gets only its other family routed", async () => {
  const rig = await start({ dual: true });
  try {
    await rig.sm.push({ snapshot: [] });
    const before = rig.kernel.dump();
    const rival = lease("10.244.1.0/24", "192.168.0.9", { v6: "fd00:9::/64", publicIpv6: "fc00::9" });
    await rig.sm.push({ events: [{ type: "added", lease: rival }] });
    const text = rig.kernel.dump();
    assert.doesNotMatch(text, /10\.244\.1\.0\/24 via/);
    assert.match(text, /^ip -6 route add fd00:9::\/64 via fc00::9 dev eth0 metric 1024$/m);
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
