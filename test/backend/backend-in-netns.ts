// Runs a vxlan or host-gw network against the real kernel of the current network namespace and prints a
// JSON report on stdout. Started by backend-netns.test.ts inside a test namespace (`ip netns exec`),
// because a Node process cannot move itself into a namespace.
//   argv[2]: JSON of Scenario
// Steps: register the network, feed one snapshot of peers, record what iproute2 shows, then for each
// `breakWith` command (e.g. ["link", "del", "flannel.1"]) run it and wait until iproute2 shows the recorded
// state again (repaired through kernel notifications).

import { execFileSync } from "node:child_process";

import type { Backend } from "../../src/backend/backend.ts";
import { FakeSubnetManager } from "../../src/backend/fake-subnet-manager.ts";
import { createHostGwBackend } from "../../src/backend/hostgw/host-gw.ts";
import { createVxlanBackend } from "../../src/backend/vxlan/vxlan.ts";
import type { NetworkConfig } from "../../src/config/network-config.ts";
import { errorMessage } from "../../src/errors.ts";
import { IpAddr } from "../../src/ip/addr.ts";
import { IpNet } from "../../src/ip/net.ts";
import { createNetlinkKernel } from "../../src/kernel/netlink/netlink-kernel.ts";
import type { Lease } from "../../src/lease/lease.ts";
import { MemoryLogger } from "../../src/log/logger.ts";
import { waitFor } from "../helpers/netns.ts";

interface Scenario {
  type: "vxlan" | "host-gw";
  ownSubnet: string;
  publicIp: string;
  mac: string;
  peers: { subnet: string; publicIp: string; mac: string; v6?: { subnet: string; publicIp: string } }[];
  breakWith: string[][];
  /** Dual-stack: our own IPv6 subnet and public IPv6 (the peers then carry `v6`). */
  v6?: { ownSubnet: string; publicIp: string };
}

const sc = JSON.parse(process.argv[2] ?? "{}") as Scenario;

function lease(
  subnet: string,
  publicIp: string,
  mac: string,
  v6?: { subnet: string; publicIp: string },
): Lease {
  const data = JSON.stringify({ VNI: 1, VtepMAC: mac });
  return {
    enableIpv4: true,
    enableIpv6: v6 !== undefined,
    subnet: IpNet.parse(subnet),
    ipv6Subnet: v6 === undefined ? null : IpNet.parse(v6.subnet),
    attrs: {
      publicIp: IpAddr.parse(publicIp),
      publicIpv6: v6 === undefined ? null : IpAddr.parse(v6.publicIp),
      backendType: sc.type,
      ...(sc.type === "vxlan" ? { backendData: data } : {}),
      ...(sc.type === "vxlan" && v6 !== undefined ? { backendV6Data: data } : {}),
    },
    expiration: null,
    asof: 0,
  };
}

/** What iproute2 shows of the state a backend manages, one sorted line per entry. */
function state(): string {
  const ip = (...args: string[]): string => execFileSync("ip", args, { encoding: "utf8" });
  let s = ip("route", "show", "table", "main");
  if (sc.v6 !== undefined) s += ip("-6", "route", "show", "table", "main");
  const devices =
    sc.type !== "vxlan" ? [] : sc.v6 === undefined ? ["flannel.1"] : ["flannel.1", "flannel-v6.1"];
  for (const dev of devices) {
    s += ip("neigh", "show", "dev", dev, "nud", "permanent");
    s += execFileSync("bridge", ["fdb", "show", "dev", dev], { encoding: "utf8" });
    s += ip("-br", "addr", "show", "dev", dev);
  }
  // Sorted: the kernel lists neighbours in hash order, which changes when they are re-added.
  return s
    .split("\n")
    .filter((l) => l !== "")
    .sort()
    .map((l) => l + "\n")
    .join("");
}

const logger = new MemoryLogger();
const kernel = createNetlinkKernel();
const ac = new AbortController();
const report: { ok: boolean; error?: string; initial?: string; repaired: string[]; log: string[] } = {
  ok: false,
  repaired: [],
  log: logger.lines,
};
try {
  const eth0 = kernel.links.get("eth0");
  if (eth0 === undefined) throw new Error("no eth0 in this namespace");
  const own = lease(
    sc.ownSubnet,
    sc.publicIp,
    sc.mac,
    sc.v6 === undefined ? undefined : { subnet: sc.v6.ownSubnet, publicIp: sc.v6.publicIp },
  );
  const sm = new FakeSubnetManager({ lease: own, storedMacs: { v4: sc.mac, v6: sc.mac } });
  const ip = IpAddr.parse(sc.publicIp);
  const ip6 = sc.v6 === undefined ? null : IpAddr.parse(sc.v6.publicIp);
  const deps = {
    subnetManager: sm,
    kernel,
    logger,
    extIface: { iface: eth0, ifaceAddr: ip, extAddr: ip, ifaceV6Addr: ip6, extV6Addr: ip6 },
  };
  const backend: Backend =
    sc.type === "vxlan"
      ? createVxlanBackend(deps, { retryMs: 50 })
      : createHostGwBackend(deps, { retryMs: 50 });
  const config: NetworkConfig = {
    enableIpv4: true,
    enableIpv6: sc.v6 !== undefined,
    enableNftables: false,
    network: IpNet.parse("10.244.0.0/16"),
    ipv6Network: sc.v6 === undefined ? null : IpNet.parse("fd00::/16"),
    subnetLen: 24,
    subnetMin: null,
    subnetMax: null,
    ipv6SubnetLen: 0,
    ipv6SubnetMin: null,
    ipv6SubnetMax: null,
    backendType: sc.type,
    backend: { Type: sc.type },
  };
  const network = await backend.registerNetwork(config, ac.signal);
  const running = network.run(ac.signal);
  await sm.push({ snapshot: [own, ...sc.peers.map((p) => lease(p.subnet, p.publicIp, p.mac, p.v6))] });
  const initial = state();
  report.initial = initial;
  for (const cmd of sc.breakWith) {
    execFileSync(cmd[0] === "bridge" ? "bridge" : "ip", cmd[0] === "bridge" ? cmd.slice(1) : cmd);
    await waitFor(() => state() === initial, 20_000, `repair after: ${cmd.join(" ")}`);
    report.repaired.push(cmd.join(" "));
  }
  ac.abort();
  await running;
  report.ok = true;
} catch (err) {
  report.error = err instanceof Error ? (err.stack ?? errorMessage(err)) : errorMessage(err);
  try {
    report.error += `\n--- expected ---\n${report.initial ?? ""}--- now ---\n${state()}`;
  } catch {
    // the state itself cannot be read (device missing): the message says enough
  }
} finally {
  ac.abort();
  kernel.close();
}
process.stdout.write(JSON.stringify(report));
