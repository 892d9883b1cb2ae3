// One "node" of the udp or extension backend on a real kernel: registers the network in the current
// namespace with a static set of peer leases fed through FakeSubnetManager, then runs until SIGTERM.
// Started by udp-netns.test.ts / extension-netns.test.ts inside a node namespace (`ip netns exec`).
//   argv[2]: JSON {type, backend?, ownSubnet, publicIp, peers: [{subnet, publicIp, backendType?, backendData?}]}
// Protocol on stdout, one line each: `READY <mtu> <device>` once peers are programmed; `STATS <json>` on
// SIGUSR2 (udp) and once more at exit; on SIGHUP every peer is removed, then `REMOVED`; `ERROR <text>`
// on failure (exit 1).

import { FakeSubnetManager } from "../../src/backend/fake-subnet-manager.ts";
import type { Backend, BackendDeps } from "../../src/backend/backend.ts";
import { createExtensionBackend } from "../../src/backend/extension/extension.ts";
import { createUdpBackend, UdpNetwork } from "../../src/backend/udp/udp.ts";
import type { NetworkConfig } from "../../src/config/network-config.ts";
import { errorMessage } from "../../src/errors.ts";
import { IpAddr } from "../../src/ip/addr.ts";
import { IpNet } from "../../src/ip/net.ts";
import { createNetlinkKernel } from "../../src/kernel/netlink/netlink-kernel.ts";
import type { Lease } from "../../src/lease/lease.ts";
import { MemoryLogger } from "../../src/log/logger.ts";

interface Peer {
  subnet: string;
  publicIp: string;
  backendType?: string;
  backendData?: string;
}

interface Setup {
  type: "udp" | "extension";
  backend?: Record<string, unknown>;
  ownSubnet: string;
  publicIp: string;
  peers: Peer[];
}

const setup = JSON.parse(process.argv[2] ?? "{}") as Setup;

function lease(p: Peer): Lease {
  return {
    enableIpv4: true,
    enableIpv6: false,
    subnet: IpNet.parse(p.subnet),
    ipv6Subnet: null,
    attrs: {
      publicIp: IpAddr.parse(p.publicIp),
      publicIpv6: null,
      backendType: p.backendType ?? "",
      ...(p.backendData === undefined ? {} : { backendData: p.backendData }),
    },
    expiration: null,
    asof: 0,
  };
}

const logger = new MemoryLogger();
const ac = new AbortController();
try {
  const kernel = createNetlinkKernel();
  const eth0 = kernel.links.get("eth0");
  if (eth0 === undefined) throw new Error("no eth0 in this namespace");
  const own = lease({ subnet: setup.ownSubnet, publicIp: setup.publicIp });
  const sm = new FakeSubnetManager({ lease: own });
  const ip = IpAddr.parse(setup.publicIp);
  const config: NetworkConfig = {
    enableIpv4: true,
    enableIpv6: false,
    enableNftables: false,
    network: IpNet.parse("10.244.0.0/16"),
    ipv6Network: null,
    subnetLen: 24,
    subnetMin: null,
    subnetMax: null,
    ipv6SubnetLen: 0,
    ipv6SubnetMin: null,
    ipv6SubnetMax: null,
    backendType: setup.type,
    backend: { Type: setup.type, ...setup.backend },
  };
  const deps: BackendDeps = {
    subnetManager: sm,
    kernel,
    logger,
    extIface: { iface: eth0, ifaceAddr: ip, extAddr: ip, ifaceV6Addr: null, extV6Addr: null },
  };
  const backend: Backend = setup.type === "udp" ? createUdpBackend(deps) : createExtensionBackend(deps);
  const network = await backend.registerNetwork(config, ac.signal);
  const printStats = (): void => {
    if (network instanceof UdpNetwork) process.stdout.write(`STATS ${JSON.stringify(network.stats())}\n`);
  };
  process.on("SIGUSR2", printStats);
  process.on("SIGTERM", () => ac.abort());
  process.on("SIGHUP", () => {
    const events = setup.peers.map((p) => ({ type: "removed" as const, lease: lease(p) }));
    void sm.push({ events }).then(() => process.stdout.write("REMOVED\n"));
  });
  // The fake subnet manager holds no handle; without one Node would end the process (exit 13) while
  // the extension network waits for lease events. A real daemon has its etcd/kube connection.
  const keepAlive = setInterval(() => {}, 1 << 30);
  const running = network.run(ac.signal);
  await sm.push({ snapshot: [own, ...setup.peers.map(lease)] });
  const device = network instanceof UdpNetwork ? network.deviceName : "-";
  process.stdout.write(`READY ${network.mtu()} ${device}\n`);
  await running;
  clearInterval(keepAlive);
  printStats();
  process.exit(0);
} catch (err) {
  process.stdout.write(`ERROR ${errorMessage(err)}\n${logger.text()}\n`);
  process.exit(1);
}
