// The udp backend (upstream pkg/backend/udp, "debug only"): pod packets are carried as UDP payload between
// nodes by a user-space proxy. The kernel routes the whole cluster network into the TUN device flannel0;
// the proxy reads each packet, finds the node owning the destination and sends it to that node's
// PublicIP:Port; the peer writes it into its own flannel0.
//
// Design notes:
// - Scaling: 1 TUN device, 1 address and 1 route (the whole Network) per node, whatever the cluster size;
//   the per-peer state lives only in the proxy's table (one entry per remote lease).
// - The packet loop runs in a worker thread (proxy.ts / proxy-worker.ts), so a busy data path never
//   delays lease renewal, the health server or shutdown, and the daemon's event loop never waits on it.
// - Leases: PublicIP only, no BackendType (upstream; spec A11). Like upstream, lease events are not filtered
//   by type. IPv4 only.
// - The device's address, MTU, up state and the network route are set at registration and kept by the
//   shared Reconciler (reconcile.ts): a route deleted by hand comes back on the notification or at the
//   10 s check. The TUN device itself is not persistent: it goes away with the process, routes included.
// - MTU = external interface MTU − 28 (IPv4 20 + UDP 8), so an encapsulated packet fits the underlay.

import type { NetworkConfig } from "../../config/network-config.ts";
import { decodeBackendField } from "../../config/config.ts";
import { errorMessage } from "../../errors.ts";
import { IpAddr } from "../../ip/addr.ts";
import { IfAddr, type IpNet } from "../../ip/net.ts";
import type { KernelEvent, Route, Tun, TunDevice } from "../../kernel/ports.ts";
import { RT_TABLE_MAIN } from "../../kernel/ports.ts";
import { KoffiTun } from "../../kernel/tun.ts";
import { leaseIdentity, type Lease, type LeaseAttrs, type LeaseEvent } from "../../lease/lease.ts";
import { watchLeaseBatches } from "../../lease/watcher.ts";
import { Claims, overlapsOwnSubnet } from "../claims.ts";
import type { Logger } from "../../log/logger.ts";
import { isAbort } from "../../util/sleep.ts";
import type { Backend, BackendDeps, Network } from "../backend.ts";
import { Reconciler, type ActualState, type DesiredPeer, type ReconcileTarget } from "../reconcile.ts";
import {
  closeFd,
  openUdpSocket,
  UdpProxy,
  type ProxyStats,
  type UdpDataPath,
  type UdpProxyOptions,
} from "./proxy.ts";

export const UDP_DEFAULT_PORT = 8285;
/** IPv4 header (20) + UDP header (8). */
export const UDP_OVERHEAD = 28;
const TUN_NAME = "flannel%d";
/**
 * Packets the kernel queues on flannel0 for the proxy. The default 500 overflows whenever the worker is
 * descheduled for a few ms on a busy host, and every drop costs a TCP retransmission: measured here, 500
 * gave 0.52 Gbit/s with ~4000 retransmissions in 5 s, 4000 gave 0.78 Gbit/s with none.
 */
const TUN_TX_QUEUE_LEN = 4000;

export interface UdpBackendOptions {
  /** Opens the TUN device (default: /dev/net/tun through koffi). */
  tun?: Tun;
  /** Opens the bound UDP socket and returns its fd (default: libc socket/bind). */
  openSocket?: (addr: IpAddr, port: number) => number;
  /** Starts the packet loop (default: the worker-thread proxy). */
  startDataPath?: (opts: UdpProxyOptions) => UdpDataPath;
  checkMs?: number;
  retryMs?: number;
}

/** Decodes `Backend.Port` (default 8285); wrong types give upstream's `error decoding UDP backend config`. */
export function decodeUdpPort(backend: Record<string, unknown>): number {
  const port = decodeBackendField(backend, "Port", "int", "UDP") ?? 0;
  if (port === 0) return UDP_DEFAULT_PORT;
  if (port < 1 || port > 65535) {
    throw new Error(
      `Backend.Port ${port} is not a valid UDP port; use a port from 1 to 65535 (default 8285)`,
    );
  }
  return port;
}

const ipv4Number = (ip: IpAddr): number => Number(ip.value);

export function createUdpBackend(deps: BackendDeps, opts: UdpBackendOptions = {}): Backend {
  const logger = deps.logger.child("udp_network.ts");
  return {
    async registerNetwork(config: NetworkConfig, signal: AbortSignal): Promise<Network> {
      const port = decodeUdpPort(config.backend);
      const ext = deps.extIface;
      if (!config.enableIpv4 || config.network === null) {
        throw new Error(
          "The udp backend carries IPv4 only and needs EnableIPv4 with a Network; use vxlan or host-gw for IPv6",
        );
      }
      if (config.enableIpv6) {
        logger.warn("The udp backend carries IPv4 only: IPv6 pod traffic will not reach other nodes");
      }
      if (ext.ifaceAddr === null) {
        throw new Error(`The udp backend needs an IPv4 address on ${ext.iface.name} to listen on`);
      }
      const attrs: LeaseAttrs = {
        publicIp: ext.extAddr ?? IpAddr.zero(4),
        publicIpv6: null,
        backendType: "",
      };
      let lease: Lease;
      try {
        lease = await deps.subnetManager.acquireLease(attrs, signal);
      } catch (err) {
        if (isAbort(err, signal)) throw err;
        throw new Error(`failed to acquire lease: ${errorMessage(err)}`, { cause: err });
      }
      if (lease.subnet === null) throw new Error("The lease has no IPv4 subnet, which the udp backend needs");

      const mtu = ext.iface.mtu - UDP_OVERHEAD;
      let tun: TunDevice;
      try {
        tun = (opts.tun ?? new KoffiTun()).open(TUN_NAME, { txQueueLen: TUN_TX_QUEUE_LEN, vnetHdr: true });
      } catch (err) {
        throw new Error(`failed to open TUN device: ${errorMessage(err)}`, { cause: err });
      }
      let udpFd = -1;
      try {
        const network = new UdpNetwork({
          deps,
          logger,
          lease,
          network: config.network,
          tun,
          mtu,
          port,
          ...(opts.checkMs === undefined ? {} : { checkMs: opts.checkMs }),
          ...(opts.retryMs === undefined ? {} : { retryMs: opts.retryMs }),
        });
        network.configure();
        udpFd = (opts.openSocket ?? openUdpSocket)(ext.ifaceAddr, port);
        const start = opts.startDataPath ?? ((o: UdpProxyOptions) => new UdpProxy(o));
        network.attach(
          start({ tunFd: tun.fd, udpFd, tunAddr: ipv4Number(lease.subnet.ip), vnetHdr: tun.vnetHdr }),
          udpFd,
        );
        return network;
      } catch (err) {
        closeFd(udpFd);
        tun.close();
        throw err;
      }
    },
  };
}

interface UdpNetworkOptions {
  deps: BackendDeps;
  logger: Logger;
  lease: Lease;
  network: IpNet;
  tun: TunDevice;
  mtu: number;
  port: number;
  checkMs?: number;
  retryMs?: number;
}

export class UdpNetwork implements Network, ReconcileTarget {
  private readonly reconciler: Reconciler;
  private readonly logger: Logger;
  private dataPath: UdpDataPath | undefined;
  private udpFd = -1;
  /**
   * The peers handed to the data path, by subnet: `peers`. A subnet two leases claim goes to the later one,
   * and back when it goes (claims.ts); `lease` is the claiming lease's identity (both its subnets).
   */
  private readonly claims = new Claims<{ lease: string; subnet: IpNet; publicIp: IpAddr }>();
  private readonly peers = this.claims.current;

  constructor(private readonly opts: UdpNetworkOptions) {
    this.logger = opts.logger;
    this.reconciler = new Reconciler({
      target: this,
      kernel: opts.deps.kernel,
      logger: opts.logger,
      ...(opts.deps.metrics === undefined ? {} : { metrics: opts.deps.metrics, loop: "udp" }),
      onFirstPass: opts.deps.onSynced,
      checkMs: opts.checkMs ?? 10_000,
      ...(opts.retryMs === undefined ? {} : { retryMs: opts.retryMs }),
    });
  }

  lease(): Lease {
    return this.opts.lease;
  }

  mtu(): number {
    return this.opts.mtu;
  }

  /** The TUN device's name (flannel0). */
  get deviceName(): string {
    return this.opts.tun.name;
  }

  /** The data path's counters (packets moved, dropped datagrams from non-peers, ...). */
  stats(): ProxyStats | undefined {
    return this.dataPath?.stats();
  }

  /** The peer subnets currently routed, e.g. ["10.244.2.0/24 via 192.168.0.2"]. */
  describe(): string[] {
    return [...this.peers.values()].map((p) => `${p.subnet.toString()} via ${p.publicIp.toString()}`);
  }

  /** @internal Hands over the started data path and the socket fd it uses (closed at the end of run). */
  attach(dataPath: UdpDataPath, udpFd: number): void {
    this.dataPath = dataPath;
    this.udpFd = udpFd;
  }

  /** Address, MTU, up and the network route, as upstream's configureIface. Throws on failure. */
  configure(): void {
    this.ensureDevices();
    const route = this.networkRoute();
    try {
      this.opts.deps.kernel.routes.replace(route);
    } catch (err) {
      throw new Error(
        `failed to add route (${this.opts.network.toString()} -> ${this.opts.tun.name}): ${errorMessage(err)}`,
        { cause: err },
      );
    }
  }

  private link(): { index: number; mtu: number; up: boolean } {
    const link = this.opts.deps.kernel.links.get(this.opts.tun.name);
    if (link === undefined) {
      throw new Error(`The TUN device ${this.opts.tun.name} is gone; restart flanneld to recreate it`);
    }
    return link;
  }

  private networkRoute(): Route {
    return { family: 4, dst: this.opts.network, linkIndex: this.link().index };
  }

  async run(signal: AbortSignal): Promise<void> {
    const dataPath = this.dataPath;
    if (dataPath === undefined) throw new Error("The udp network has no data path; call registerNetwork");
    this.logger.info("Watching for new subnet leases");
    let failure: Error | undefined;
    const inner = new AbortController();
    const stopInner = (): void => inner.abort(signal.reason);
    signal.addEventListener("abort", stopInner, { once: true });
    // A data path that dies on its own (TUN deleted, ...) ends the network with its reason.
    void dataPath.ended.then((why) => {
      if (inner.signal.aborted) return;
      failure = new Error(`The udp data path stopped: ${why ?? "no reason given"}`);
      inner.abort(failure);
    });
    try {
      await this.reconciler.run(
        inner.signal,
        watchLeaseBatches(this.opts.deps.subnetManager, this.opts.lease, this.logger, inner.signal),
        (batch) => this.handleBatch(batch),
      );
    } catch (err) {
      if (!isAbort(err, inner.signal)) {
        failure = new Error(`could not watch leases: ${errorMessage(err)}`, { cause: err });
      }
    } finally {
      signal.removeEventListener("abort", stopInner);
      await dataPath.stop();
      closeFd(this.udpFd);
      this.udpFd = -1;
      this.opts.tun.close();
    }
    if (failure !== undefined && !signal.aborted) throw failure;
  }

  handleBatch(batch: readonly LeaseEvent[]): void {
    const dp = this.dataPath;
    if (dp === undefined) return;
    const route = (p: { subnet: IpNet; publicIp: IpAddr }): void =>
      dp.setRoute({
        net: ipv4Number(p.subnet.ip),
        prefixLen: p.subnet.prefixLen,
        nextHop: ipv4Number(p.publicIp),
        port: this.opts.port,
      });
    for (const { type, lease } of batch) {
      const subnet = lease.subnet;
      if (subnet === null) continue; // an IPv6-only lease: nothing the udp backend can carry
      const key = subnet.toString();
      if (overlapsOwnSubnet(lease, this.opts.lease, 4, this.logger)) continue;
      const id = leaseIdentity(lease);
      if (type === "removed") {
        this.logger.info(`Subnet removed: ${key}`);
        if (!this.claims.release(key, (p) => p.lease === id)) continue;
        const back = this.peers.get(key);
        if (back === undefined) dp.deleteRoute(ipv4Number(subnet.ip), subnet.prefixLen);
        else route(back);
        continue;
      }
      const publicIp = lease.attrs.publicIp;
      if (publicIp.isUnspecified) {
        this.logger.error(`Ignoring lease ${key}: it has no public IP`);
        continue;
      }
      this.logger.info(`Subnet added: ${key} via ${publicIp.toString()}`);
      const peer = { lease: id, subnet, publicIp };
      this.claims.claim(key, peer, (p) => p.lease === id);
      route(peer);
    }
  }

  // ------------------------------------------------------------------ ReconcileTarget

  ensureDevices(): void {
    const { kernel } = this.opts.deps;
    const name = this.opts.tun.name;
    const link = this.link();
    const subnet = this.opts.lease.subnet;
    if (subnet === null) return;
    const addr = new IfAddr(subnet.ip, 32);
    if (!kernel.addrs.list({ linkIndex: link.index, family: 4 }).some((a) => a.addr.equals(addr))) {
      try {
        kernel.addrs.add(link.index, addr);
      } catch (err) {
        throw new Error(`failed to add IP address ${addr.toString()} to ${name}: ${errorMessage(err)}`, {
          cause: err,
        });
      }
    }
    if (link.mtu !== this.opts.mtu) {
      try {
        kernel.links.setMtu(name, this.opts.mtu);
      } catch (err) {
        throw new Error(`failed to set MTU for ${name}: ${errorMessage(err)}`, { cause: err });
      }
    }
    // The proxy's ICMP net-unreachable answers come out of flannel0 with flannel0's own address as source;
    // the kernel drops packets with a local source address ("martian source") unless accept_local is set.
    // (Upstream's C proxy sends the same packets without it, so its answers never arrive.)
    const acceptLocal = `net/ipv4/conf/${name}/accept_local`;
    if (kernel.sysctl.get(acceptLocal) !== undefined && kernel.sysctl.get(acceptLocal)?.trim() !== "1") {
      kernel.sysctl.set(acceptLocal, "1");
    }
    if (!link.up) {
      try {
        kernel.links.setUp(name);
      } catch (err) {
        throw new Error(`failed to set interface ${name} to UP state: ${errorMessage(err)}`, { cause: err });
      }
    }
  }

  desired(): DesiredPeer[] {
    return [{ key: this.opts.network.toString(), route: this.networkRoute() }];
  }

  actual(): ActualState {
    const routes = this.opts.deps.kernel.routes
      .list({ family: 4 })
      .filter(
        (r) => (r.table ?? RT_TABLE_MAIN) === RT_TABLE_MAIN && r.dst?.equals(this.opts.network) === true,
      );
    return { neighbours: [], fdb: [], routes };
  }

  concerns(ev: KernelEvent): boolean {
    if (ev.type === "overflow") return true;
    return ev.type === "route-deleted" && ev.route.dst?.equals(this.opts.network) === true;
  }
}
