// Runs the ipip or wireguard backend against the real kernel of the current network namespace (started by
// tunnel-netns.test.ts with `ip netns exec`). argv[2]: JSON of Scenario.
// - mode "probe": register the network and print `{"ok":…,"code":…,"message":…,"hint":…}` — on a kernel
//   without the module this is the plain error flanneld prints at startup.
// - mode "run": register, apply one snapshot with the peer, print `{"ready":true}`, and keep the network
//   running until SIGTERM; then stop it (wireguard deletes its device) and exit.

import type { Backend } from "../../src/backend/backend.ts";
import { FakeSubnetManager } from "../../src/backend/fake-subnet-manager.ts";
import { createIpipBackend } from "../../src/backend/ipip/ipip.ts";
import { wireguardBackendData } from "../../src/backend/wireguard/config.ts";
import { createWireguardBackend } from "../../src/backend/wireguard/wireguard.ts";
import type { NetworkConfig } from "../../src/config/network-config.ts";
import { FlannelError, errorMessage } from "../../src/errors.ts";
import { IpAddr } from "../../src/ip/addr.ts";
import { IpNet } from "../../src/ip/net.ts";
import { createNetlinkKernel } from "../../src/kernel/netlink/netlink-kernel.ts";
import type { Lease } from "../../src/lease/lease.ts";
import { MemoryLogger } from "../../src/log/logger.ts";

interface Scenario {
  mode: "probe" | "run";
  type: "ipip" | "wireguard";
  ownSubnet: string;
  publicIp: string;
  keyFile: string;
  /** Base64 public keys (wireguard). */
  ownPublicKey?: string;
  peer?: { subnet: string; publicIp: string; publicKey?: string };
}

const sc = JSON.parse(process.argv[2] ?? "{}") as Scenario;

function lease(subnet: string, publicIp: string, publicKey?: string): Lease {
  return {
    enableIpv4: true,
    enableIpv6: false,
    subnet: IpNet.parse(subnet),
    ipv6Subnet: null,
    attrs: {
      publicIp: IpAddr.parse(publicIp),
      publicIpv6: null,
      backendType: sc.type,
      ...(publicKey === undefined ? {} : { backendData: wireguardBackendData(publicKey, 51820) }),
    },
    expiration: null,
    asof: 0,
  };
}

const logger = new MemoryLogger();
const kernel = createNetlinkKernel();
const ac = new AbortController();
const eth0 = kernel.links.get("eth0");
if (eth0 === undefined) throw new Error("no eth0 in this namespace");
const own = lease(sc.ownSubnet, sc.publicIp, sc.ownPublicKey);
const sm = new FakeSubnetManager({ lease: own });
const ip = IpAddr.parse(sc.publicIp);
const deps = {
  subnetManager: sm,
  kernel,
  logger,
  extIface: { iface: eth0, ifaceAddr: ip, extAddr: ip, ifaceV6Addr: null, extV6Addr: null },
};
const backend: Backend =
  sc.type === "ipip"
    ? createIpipBackend(deps, { retryMs: 50 })
    : createWireguardBackend(deps, { keyFile: sc.keyFile, retryMs: 50 });
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
  backendType: sc.type,
  backend: { Type: sc.type },
};

/** What `Wireguard.get` (generic netlink: CTRL_CMD_GETFAMILY, then WG_CMD_GET_DEVICE) says here. */
function wgGetOutcome(): string {
  try {
    return JSON.stringify(kernel.wireguard.get("flannel-wg") ?? null);
  } catch (err) {
    return errorMessage(err);
  }
}

try {
  const network = await backend.registerNetwork(config, ac.signal);
  if (sc.mode === "probe") {
    console.log(JSON.stringify({ ok: true }));
    const running = network.run(ac.signal);
    ac.abort();
    await running;
  } else {
    const running = network.run(ac.signal);
    const peers = sc.peer === undefined ? [] : [lease(sc.peer.subnet, sc.peer.publicIp, sc.peer.publicKey)];
    await sm.push({ snapshot: [own, ...peers] });
    console.log(JSON.stringify({ ready: true }));
    process.on("SIGTERM", () => ac.abort());
    await running;
  }
} catch (err) {
  console.log(
    JSON.stringify({
      ok: false,
      code: err instanceof FlannelError ? err.code : undefined,
      message: errorMessage(err),
      hint: err instanceof FlannelError ? err.hint : undefined,
      wgGet: sc.type === "wireguard" ? wgGetOutcome() : undefined,
      log: logger.lines,
    }),
  );
} finally {
  kernel.close();
}
