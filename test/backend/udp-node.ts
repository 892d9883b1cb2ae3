// One "node" of the udp backend on a real kernel: registers the udp network in the current namespace
// (TUN flannel0, UDP socket, worker proxy) with a static peer table fed through FakeSubnetManager, then
// runs until SIGTERM. Started by udp-netns.test.ts inside a node namespace (`ip netns exec`).
//   argv[2]: JSON {ownSubnet, publicIp, peers: [{subnet, publicIp}]}
// Protocol on stdout, one line each: `READY <mtu> <device>` once peers are programmed; `STATS <json>` on
// SIGUSR2 and once more at exit; `ERROR <text>` on failure (exit 1).

import { FakeSubnetManager } from "../../src/backend/fake-subnet-manager.ts";
import { createUdpBackend, type UdpNetwork } from "../../src/backend/udp/udp.ts";
import type { NetworkConfig } from "../../src/config/network-config.ts";
import { errorMessage } from "../../src/errors.ts";
import { IpAddr } from "../../src/ip/addr.ts";
import { IpNet } from "../../src/ip/net.ts";
import { createNetlinkKernel } from "../../src/kernel/netlink/netlink-kernel.ts";
import type { Lease } from "../../src/lease/lease.ts";
import { MemoryLogger } from "../../src/log/logger.ts";

interface Setup {
  ownSubnet: string;
  publicIp: string;
  peers: { subnet: string; publicIp: string }[];
}

const setup = JSON.parse(process.argv[2] ?? "{}") as Setup;

function lease(subnet: string, publicIp: string): Lease {
  return {
    enableIpv4: true,
    enableIpv6: false,
    subnet: IpNet.parse(subnet),
    ipv6Subnet: null,
    attrs: { publicIp: IpAddr.parse(publicIp), publicIpv6: null, backendType: "" },
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
  const own = lease(setup.ownSubnet, setup.publicIp);
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
    backendType: "udp",
    backend: { Type: "udp" },
  };
  const backend = createUdpBackend({
    subnetManager: sm,
    kernel,
    logger,
    extIface: { iface: eth0, ifaceAddr: ip, extAddr: ip, ifaceV6Addr: null, extV6Addr: null },
  });
  const network = (await backend.registerNetwork(config, ac.signal)) as UdpNetwork;
  const printStats = (): void => {
    process.stdout.write(`STATS ${JSON.stringify(network.stats())}\n`);
  };
  process.on("SIGUSR2", printStats);
  process.on("SIGTERM", () => ac.abort());
  const running = network.run(ac.signal);
  await sm.push({ snapshot: [own, ...setup.peers.map((p) => lease(p.subnet, p.publicIp))] });
  process.stdout.write(`READY ${network.mtu()} ${network.deviceName}\n`);
  await running;
  printStats();
  process.exit(0);
} catch (err) {
  process.stdout.write(`ERROR ${errorMessage(err)}\n${logger.text()}\n`);
  process.exit(1);
}
