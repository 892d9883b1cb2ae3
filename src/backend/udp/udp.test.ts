import assert from "node:assert/strict";
import { test } from "node:test";

import { waitFor } from "../../../test/helpers/netns.ts";
import type { NetworkConfig } from "../../config/network-config.ts";
import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import { FakeKernel } from "../../kernel/fake-kernel.ts";
import type { Tun, TunDevice } from "../../kernel/ports.ts";
import type { Lease } from "../../lease/lease.ts";
import { MemoryLogger } from "../../log/logger.ts";
import type { BackendDeps } from "../backend.ts";
import { FakeSubnetManager } from "../fake-subnet-manager.ts";
import { ipv4ToNumber, numberToIpv4, type PeerRoute } from "./packet.ts";
import type { ProxyStats, UdpDataPath, UdpProxyOptions } from "./proxy.ts";
import { createUdpBackend, decodeUdpPort, type UdpNetwork } from "./udp.ts";
import { fakeNetworkConfig } from "../fake-network-config.ts";

function config(over: Partial<NetworkConfig> = {}): NetworkConfig {
  return fakeNetworkConfig("udp", {}, over);
}

function lease(subnet: string, publicIp: string, backendType = ""): Lease {
  return {
    enableIpv4: true,
    enableIpv6: false,
    subnet: IpNet.parse(subnet),
    ipv6Subnet: null,
    attrs: { publicIp: IpAddr.parse(publicIp), publicIpv6: null, backendType },
    expiration: null,
    asof: 0,
  };
}

/** A TUN device in the fake kernel: a link that disappears when "closed". */
class FakeTun implements Tun {
  opened: { name: string; txQueueLen: number | undefined; vnetHdr: boolean | undefined }[] = [];
  closed = 0;
  constructor(private readonly kernel: FakeKernel) {}
  open(name: string, opts: { txQueueLen?: number; vnetHdr?: boolean } = {}): TunDevice {
    this.opened.push({ name, txQueueLen: opts.txQueueLen, vnetHdr: opts.vnetHdr });
    this.kernel.addVeth("flannel0", { up: false });
    return {
      name: "flannel0",
      fd: 42,
      vnetHdr: opts.vnetHdr === true,
      close: () => {
        this.closed++;
        this.kernel.links.delete("flannel0");
      },
    };
  }
}

/** Records what the network asks of its data path. */
class FakeDataPath implements UdpDataPath {
  routes = new Map<string, PeerRoute>();
  stopped = 0;
  private finish!: (why: string | undefined) => void;
  readonly ended = new Promise<string | undefined>((resolve) => (this.finish = resolve));
  constructor(readonly opts: UdpProxyOptions) {}
  setRoute(r: PeerRoute): void {
    this.routes.set(`${numberToIpv4(r.net)}/${r.prefixLen}`, r);
  }
  deleteRoute(net: number, prefixLen: number): void {
    this.routes.delete(`${numberToIpv4(net)}/${prefixLen}`);
  }
  stats(): ProxyStats {
    return {
      tunRx: 1,
      udpTx: 2,
      udpRx: 3,
      tunTx: 4,
      droppedNotPeer: 5,
      noRoute: 6,
      ttlExpired: 7,
      sendErrors: 8,
      malformed: 9,
    };
  }
  describe(): string[] {
    return [...this.routes.entries()].map(([k, r]) => `${k} -> ${numberToIpv4(r.nextHop)}:${r.port}`).sort();
  }
  fail(why: string): void {
    this.finish(why);
  }
  stop(): Promise<void> {
    this.stopped++;
    this.finish(undefined);
    return Promise.resolve();
  }
}

interface Rig {
  kernel: FakeKernel;
  sm: FakeSubnetManager;
  log: MemoryLogger;
  tun: FakeTun;
  sockets: string[];
  closedFds: number[];
  dataPath: () => FakeDataPath;
  net: UdpNetwork;
  ac: AbortController;
  running: Promise<void>;
}

async function start(
  opts: { cfg?: Partial<NetworkConfig>; extAddr?: string; checkMs?: number } = {},
): Promise<Rig> {
  const kernel = new FakeKernel();
  const eth0 = kernel.addHost({ addr: "192.168.0.1/24", mac: "02:00:00:00:00:01" });
  kernel.seedSysctl("net/ipv4/conf/flannel0/accept_local", "0");
  const sm = new FakeSubnetManager({ lease: lease("10.244.1.0/24", "192.168.0.1") });
  const log = new MemoryLogger();
  const deps: BackendDeps = {
    subnetManager: sm,
    kernel,
    logger: log,
    extIface: {
      iface: eth0,
      ifaceAddr: IpAddr.parse("192.168.0.1"),
      extAddr: IpAddr.parse(opts.extAddr ?? "192.168.0.1"),
      ifaceV6Addr: null,
      extV6Addr: null,
    },
  };
  const tun = new FakeTun(kernel);
  const sockets: string[] = [];
  let dp: FakeDataPath | undefined;
  const ac = new AbortController();
  const backend = createUdpBackend(deps, {
    tun,
    openSocket: (addr, port) => {
      sockets.push(`${addr.toString()}:${port}`);
      return 7;
    },
    startDataPath: (o) => (dp = new FakeDataPath(o)),
    checkMs: opts.checkMs ?? 60_000,
    retryMs: 20,
  });
  const net = (await backend.registerNetwork(config(opts.cfg), ac.signal)) as UdpNetwork;
  const running = net.run(ac.signal);
  return {
    kernel,
    sm,
    log,
    tun,
    sockets,
    closedFds: [],
    dataPath: () => {
      assert.ok(dp);
      return dp;
    },
    net,
    ac,
    running,
  };
}

test("Backend.Port defaults to 8285 and must be a port number", () => {
  assert.equal(decodeUdpPort({ Type: "udp" }), 8285);
  assert.equal(decodeUdpPort({ port: 9000 }), 9000);
  assert.throws(() => decodeUdpPort({ Port: "9000" }), {
    message:
      "error decoding UDP backend config: json: cannot unmarshal string into Go struct field .Port of type int",
  });
  assert.throws(() => decodeUdpPort({ Port: 70000 }), /Backend.Port 70000 is not a valid UDP port/);
});

test("udp leases a subnet with the public IP only and sets up flannel0 like upstream", async () => {
  const rig = await start({ cfg: { backend: { Type: "udp", Port: 9999 } }, extAddr: "203.0.113.7" });
  try {
    assert.deepEqual(rig.sm.acquired, [
      { publicIp: IpAddr.parse("203.0.113.7"), publicIpv6: null, backendType: "" },
    ]);
    assert.equal(rig.net.mtu(), 1472);
    assert.deepEqual(rig.tun.opened, [{ name: "flannel%d", txQueueLen: 4000, vnetHdr: true }]);
    // Listens on the interface address (not the public IP), as upstream.
    assert.deepEqual(rig.sockets, ["192.168.0.1:9999"]);
    assert.deepEqual(rig.dataPath().opts, {
      tunFd: 42,
      udpFd: 7,
      tunAddr: ipv4ToNumber("10.244.1.0"),
      vnetHdr: true,
    });
    const dump = rig.kernel.dump();
    assert.match(dump, /^ip link add flannel0 type veth mtu 1472 .* up$/m);
    assert.match(dump, /^ip addr add 10\.244\.1\.0\/32 dev flannel0$/m);
    assert.match(dump, /^ip route add 10\.244\.0\.0\/16 dev flannel0 scope link$/m);
    assert.equal(rig.kernel.sysctl.get("net/ipv4/conf/flannel0/accept_local"), "1");
  } finally {
    rig.ac.abort();
    await rig.running;
  }
});

test("udp hands peer subnets to the data path, of any backend type, and removes them", async () => {
  const rig = await start();
  try {
    await rig.sm.push({
      snapshot: [
        lease("10.244.1.0/24", "192.168.0.1"),
        lease("10.244.2.0/24", "192.168.0.2"),
        lease("10.244.3.0/24", "192.168.0.3", "vxlan"),
      ],
    });
    assert.deepEqual(rig.dataPath().describe(), [
      "10.244.2.0/24 -> 192.168.0.2:8285",
      "10.244.3.0/24 -> 192.168.0.3:8285",
    ]);
    await rig.sm.push({ events: [{ type: "removed", lease: lease("10.244.2.0/24", "0.0.0.0") }] });
    await rig.sm.push({ events: [{ type: "added", lease: lease("10.244.3.0/24", "192.168.0.33") }] });
    await rig.sm.push({ events: [{ type: "added", lease: lease("10.244.4.0/24", "0.0.0.0") }] });
    assert.deepEqual(rig.dataPath().describe(), ["10.244.3.0/24 -> 192.168.0.33:8285"]);
    assert.ok(rig.log.lines.includes("E Ignoring lease 10.244.4.0/24: it has no public IP"), rig.log.text());
    assert.deepEqual(rig.net.describe(), ["10.244.3.0/24 via 192.168.0.33"]);
    assert.equal(rig.net.stats()?.droppedNotPeer, 5);
  } finally {
    rig.ac.abort();
    await rig.running;
  }
});

test("udp puts the network route back when it is deleted by hand", async () => {
  const rig = await start();
  try {
    await rig.sm.push({ snapshot: [lease("10.244.2.0/24", "192.168.0.2")] });
    rig.kernel.routes.delete({ family: 4, dst: IpNet.parse("10.244.0.0/16") });
    await waitFor(
      () => /10\.244\.0\.0\/16 dev flannel0/.test(rig.kernel.dump()),
      10_000,
      "the network route to come back",
    );
  } finally {
    rig.ac.abort();
    await rig.running;
  }
});

test("at the end of run the data path is stopped and the TUN device closed", async () => {
  const rig = await start();
  rig.ac.abort();
  await rig.running;
  assert.equal(rig.dataPath().stopped, 1);
  assert.equal(rig.tun.closed, 1);
  assert.doesNotMatch(rig.kernel.dump(), /flannel0/);
});

test("a data path that dies ends run with its reason", async () => {
  const rig = await start();
  rig.dataPath().fail("The TUN device was closed or deleted");
  await assert.rejects(rig.running, {
    message: "The udp data path stopped: The TUN device was closed or deleted",
  });
  assert.equal(rig.tun.closed, 1);
});

test("udp refuses a config without IPv4 and warns that IPv6 is not carried", async () => {
  await assert.rejects(start({ cfg: { enableIpv4: false, network: null } }), /carries IPv4 only/);
  const rig = await start({ cfg: { enableIpv6: true, ipv6Network: IpNet.parse("fd00::/16") } });
  rig.ac.abort();
  await rig.running;
  assert.ok(
    rig.log.lines.some((l) => l.startsWith("W The udp backend carries IPv4 only")),
    rig.log.text(),
  );
});

test("when the socket cannot be opened the TUN device is closed again", async () => {
  const kernel = new FakeKernel();
  const eth0 = kernel.addHost({ addr: "192.168.0.1/24" });
  const tun = new FakeTun(kernel);
  const ip = IpAddr.parse("192.168.0.1");
  const backend = createUdpBackend(
    {
      subnetManager: new FakeSubnetManager({ lease: lease("10.244.1.0/24", "192.168.0.1") }),
      kernel,
      logger: new MemoryLogger(),
      extIface: { iface: eth0, ifaceAddr: ip, extAddr: ip, ifaceV6Addr: null, extV6Addr: null },
    },
    {
      tun,
      openSocket: () => {
        throw new Error("listen on UDP 192.168.0.1:8285: EADDRINUSE");
      },
    },
  );
  await assert.rejects(backend.registerNetwork(config(), new AbortController().signal), /EADDRINUSE/);
  assert.equal(tun.closed, 1);
});

test("udp gives a subnet back to its earlier lease when a rival lease goes, and never takes its own", async () => {
  // Dual-stack leases of two nodes racing for 10.244.3.0/24 (as in vxlan.test.ts), and one holding ours.
  const dual = (subnet: string, v6: string, publicIp: string): Lease => ({
    ...lease(subnet, publicIp),
    enableIpv6: true,
    ipv6Subnet: IpNet.parse(v6),
  });
  const rig = await start();
  try {
    const first = dual("10.244.3.0/24", "fd00:3::/64", "192.168.0.3");
    const rival = dual("10.244.3.0/24", "fd00:7::/64", "192.168.0.7");
    await rig.sm.push({ snapshot: [first] });
    await rig.sm.push({ events: [{ type: "added", lease: rival }] });
    assert.deepEqual(rig.dataPath().describe(), ["10.244.3.0/24 -> 192.168.0.7:8285"]);
    await rig.sm.push({ events: [{ type: "removed", lease: rival }] });
    assert.deepEqual(rig.dataPath().describe(), ["10.244.3.0/24 -> 192.168.0.3:8285"]);
    const ours = dual("10.244.1.0/24", "fd00:9::/64", "192.168.0.9");
    await rig.sm.push({ events: [{ type: "added", lease: ours }] });
    await rig.sm.push({ events: [{ type: "removed", lease: ours }] });
    assert.deepEqual(rig.dataPath().describe(), ["10.244.3.0/24 -> 192.168.0.3:8285"]);
    assert.match(
      rig.log.text(),
      /ignoring the IPv4 subnet 10\.244\.1\.0\/24 of a lease: it overlaps this node's subnet/,
    );
  } finally {
    rig.ac.abort();
    await rig.running;
  }
});
