// The wireguard backend (upstream pkg/backend/wireguard): encrypted tunnels between all nodes over one
// WireGuard device per family (`separate` mode: flannel-wg / flannel-wg-v6) or one device for both
// (`auto`, `ipv4`, `ipv6` modes: flannel-wg), configured over generic netlink (Kernel.wireguard).
//
// Design notes:
// - Scaling: 1 device per family (or 1), 1 route per family (`Network dev flannel-wg`), and 1 WireGuard
//   peer per remote host whose AllowedIPs are its subnet(s) — the kernel's cryptokey routing picks the peer,
//   so no per-peer routes, neighbours or FDB entries exist.
// - Keys: one private key per node, in a file (WIREGUARD_KEY_FILE, default /run/flannel/wgkey) reused across
//   restarts so peers' leases stay valid; the public key is advertised in BackendData
//   `{"PublicKey":…,"Port":…}` exactly as upstream marshals it.
// - Devices are recreated at start (upstream: `"flannel-wg" already exists; recreating device`) and deleted
//   at exit — the only backend that cleans up, as upstream: a stale device with old peers would blackhole.
// - Repair (better than upstream, which programs peers once per event): the desired peers are kept, and the
//   shared Reconciler's pass — after each lease batch, on kernel events about our devices and every 10 s —
//   recreates a deleted device (same key and port), re-adds its address, diffs the kernel's peers against
//   the desired ones (missing or changed peers configured, unknown peers removed) and keeps the network
//   route. A peer's endpoint is only set when its lease changes: the kernel updates endpoints when peers
//   roam (NAT), and resetting it every pass would fight that.
// - Endpoint selection in `auto` mode follows upstream's selectMode (§4.5). Appendix A16: upstream dials a
//   peer's IPv6 endpoint on its BackendV6Data port even in single-device modes, where only ListenPort is
//   bound; we use the port of the peer's BackendData (its single device's port) when it has one.
// - MTU: base − 80 for every device (IPv6 outer header 40 + UDP 8 + WireGuard 32).
// - A kernel without the wireguard module fails at device creation (EOPNOTSUPP), which becomes a plain
//   FlannelError (kernel-module.ts).

import { errorMessage } from "../../errors.ts";
import type { NetworkConfig } from "../../config/network-config.ts";
import { IpAddr, type Family } from "../../ip/addr.ts";
import { IfAddr, type IpNet } from "../../ip/net.ts";
import {
  RT_SCOPE_LINK,
  RT_TABLE_MAIN,
  type Kernel,
  type KernelEvent,
  type Link,
  type Route,
  type Wireguard,
  type WireguardPeer,
  type WireguardPeerConfig,
} from "../../kernel/ports.ts";
import type { Lease, LeaseAttrs, LeaseEvent } from "../../lease/lease.ts";
import { watchLeaseBatches } from "../../lease/watcher.ts";
import type { Logger } from "../../log/logger.ts";
import { isAbort } from "../../util/sleep.ts";
import type { Backend, BackendDeps, Network } from "../backend.ts";
import { missingModuleError } from "../kernel-module.ts";
import { Reconciler, type ActualState, type DesiredPeer, type ReconcileTarget } from "../reconcile.ts";
import { configureVxlanDevice } from "../vxlan/device.ts";
import {
  decodeWireguardConfig,
  parseWireguardBackendData,
  WIREGUARD_OVERHEAD,
  wireguardBackendData,
  type WireguardConfig,
  type WireguardMode,
} from "./config.ts";
import { DEFAULT_WIREGUARD_KEY_FILE, loadOrCreateWireguardKey } from "./keys.ts";

const RTPROT_KERNEL = 2;

export interface WireguardBackendOptions {
  /** The private key file (flanneld passes WIREGUARD_KEY_FILE); default /run/flannel/wgkey. */
  keyFile?: string;
  checkMs?: number;
  retryMs?: number;
}

/** One WireGuard device and what it carries. */
interface WgDev {
  name: string;
  listenPort: number;
  /** The families it carries, each with its /32 (/128) address and cluster network. */
  families: { family: Family; addr: IfAddr; network: IpNet | null }[];
  /** Current ifindex; 0 while missing. */
  index: number;
}

/** A peer as the kernel should have it, plus a fingerprint of the lease-derived settings. */
interface DesiredWgPeer {
  peer: WireguardPeer;
  fingerprint: string;
}

export const WG_DEVICE = "flannel-wg";
export const WG_DEVICE_V6 = "flannel-wg-v6";

/** upstream selectMode: which endpoint family to dial in `auto` mode. */
export function selectEndpointFamily(
  peerIpv4: IpAddr | null,
  peerIpv6: IpAddr | null,
  ownExtAddr: IpAddr | null,
  ownExtV6Addr: IpAddr | null,
): Family {
  if (peerIpv6 === null) return 4;
  if (peerIpv4 !== null && !peerIpv4.isUnspecified && !peerIpv4.isPrivate && ownExtAddr !== null) return 4;
  if (!peerIpv6.isPrivate && ownExtV6Addr !== null && !ownExtV6Addr.isPrivate) return 6;
  return 4;
}

function peerKey(lease: Lease): string {
  return lease.enableIpv4 || !lease.enableIpv6
    ? `4|${String(lease.subnet)}`
    : `6|${String(lease.ipv6Subnet)}`;
}

function samePeerState(a: WireguardPeer, b: WireguardPeer): boolean {
  const nets = (p: WireguardPeer): string =>
    p.allowedIps
      .map((n) => n.toString())
      .sort()
      .join(",");
  return (
    nets(a) === nets(b) &&
    (a.presharedKey ?? "") === (b.presharedKey ?? "") &&
    (a.persistentKeepaliveSec ?? 0) === (b.persistentKeepaliveSec ?? 0)
  );
}

/**
 * Creates the device link afresh: an existing one is deleted first (upstream recreates it on every start).
 * A kernel without the module fails here, with the plain missing-module error.
 */
export function createWgLink(kernel: Kernel, opts: { name: string; mtu: number }, logger: Logger): Link {
  if (kernel.links.get(opts.name) !== undefined) {
    logger.warn(`${JSON.stringify(opts.name)} already exists; recreating device`);
    kernel.links.delete(opts.name);
  }
  try {
    return kernel.links.addWireguard(opts.name, opts.mtu);
  } catch (err) {
    const missing = missingModuleError("wireguard", "wireguard", err);
    if (missing !== undefined) throw missing;
    throw new Error(`failed to create wireguard interface ${opts.name}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

/** Gives a new device its key and port, with no peers. */
export function initWgDevice(
  wg: Wireguard,
  opts: { name: string; privateKey: string; listenPort: number },
): void {
  try {
    wg.configure(opts.name, {
      privateKey: opts.privateKey,
      listenPort: opts.listenPort,
      replacePeers: true,
      peers: [],
    });
  } catch (err) {
    const missing = missingModuleError("wireguard", "wireguard", err);
    if (missing !== undefined) throw missing;
    throw new Error(`failed to configure wireguard interface ${opts.name}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

export class WireguardNetwork implements Network, ReconcileTarget {
  /** Per remote lease and device name, the peer it needs there. */
  private readonly peers = new Map<string, Map<string, DesiredWgPeer>>();
  /** Per device, public key → fingerprint of what was last configured (endpoint included). */
  private readonly configured = new Map<string, Map<string, string>>();
  private readonly reconciler: Reconciler;

  constructor(
    private readonly deps: BackendDeps,
    private readonly wg: Wireguard,
    private readonly cfg: WireguardConfig,
    private readonly keys: { privateKey: string; publicKey: string },
    private readonly ownLease: Lease,
    private readonly devs: WgDev[],
    private readonly logger: Logger,
    opts: WireguardBackendOptions,
  ) {
    this.reconciler = new Reconciler({
      target: this,
      kernel: deps.kernel,
      logger,
      ...(deps.metrics === undefined ? {} : { metrics: deps.metrics, loop: "wireguard" }),
      onFirstPass: deps.onSynced,
      ...(opts.checkMs === undefined ? {} : { checkMs: opts.checkMs }),
      ...(opts.retryMs === undefined ? {} : { retryMs: opts.retryMs }),
    });
  }

  lease(): Lease {
    return this.ownLease;
  }

  mtu(): number {
    return this.cfg.mtu - WIREGUARD_OVERHEAD;
  }

  async run(signal: AbortSignal): Promise<void> {
    this.logger.info("Watching for new subnet leases");
    try {
      await this.reconciler.run(
        signal,
        watchLeaseBatches(this.deps.subnetManager, this.ownLease, this.logger, signal),
        (batch) => {
          this.handleBatch(batch);
          return undefined; // a full pass: it syncs the peers (ensureDevices) and the 1-2 routes
        },
      );
    } catch (err) {
      if (isAbort(err, signal)) return;
      throw new Error(`could not watch leases: ${errorMessage(err)}`, { cause: err });
    } finally {
      this.cleanUp();
    }
  }

  /** Deletes the devices (with them their peers, addresses and routes), as upstream does at exit. */
  cleanUp(): void {
    for (const d of this.devs) {
      try {
        this.deps.kernel.links.delete(d.name);
        this.logger.info(`Deleted interface ${d.name}`);
      } catch (err) {
        this.logger.error(`Failed to delete interface ${d.name}: ${errorMessage(err)}`);
      }
    }
  }

  reconcileNow(): ReturnType<Reconciler["reconcile"]> {
    return this.reconciler.reconcile();
  }

  /** Updates the desired peers from a lease batch. */
  handleBatch(batch: readonly LeaseEvent[]): void {
    for (const ev of batch) {
      const { lease } = ev;
      if (lease.attrs.backendType !== "wireguard") {
        this.logger.warn(
          `Ignoring non-wireguard subnet ${String(lease.subnet ?? lease.ipv6Subnet)}: type=${lease.attrs.backendType}`,
        );
        continue;
      }
      const key = peerKey(lease);
      if (ev.type === "removed") {
        if (this.peers.delete(key))
          this.logger.info(`Subnet removed: ${String(lease.subnet ?? lease.ipv6Subnet)}`);
        continue;
      }
      const perDev = this.peersOf(lease);
      if (perDev === undefined) continue;
      this.peers.set(key, perDev);
    }
  }

  private peersOf(lease: Lease): Map<string, DesiredWgPeer> | undefined {
    const a = lease.attrs;
    const out = new Map<string, DesiredWgPeer>();
    let d4: { publicKey: string; port: number } | undefined;
    let d6: { publicKey: string; port: number } | undefined;
    try {
      if (a.backendData !== undefined && a.backendData !== "null")
        d4 = parseWireguardBackendData(a.backendData);
      if (a.backendV6Data !== undefined && a.backendV6Data !== "null")
        d6 = parseWireguardBackendData(a.backendV6Data);
    } catch (err) {
      this.logger.error(`Ignoring wireguard lease ${String(lease.subnet)}: ${errorMessage(err)}`);
      return undefined;
    }
    const pub4 = a.publicIp.isUnspecified ? null : a.publicIp;
    const pub6 = a.publicIpv6;
    const common = {
      ...(this.cfg.psk === undefined ? {} : { presharedKey: this.cfg.psk }),
      ...(this.cfg.keepaliveSec > 0 ? { persistentKeepaliveSec: this.cfg.keepaliveSec } : {}),
    };
    const add = (
      dev: string,
      data: { publicKey: string },
      allowedIps: IpNet[],
      endpoint: WireguardPeer["endpoint"],
    ): void => {
      const peer: WireguardPeer = {
        publicKey: data.publicKey,
        allowedIps,
        ...common,
        ...(endpoint ? { endpoint } : {}),
      };
      const ep = endpoint === undefined ? "" : `${endpoint.ip.toString()}|${endpoint.port}`;
      out.set(dev, {
        peer,
        fingerprint: `${allowedIps.map(String).join(",")}|${ep}|${common.presharedKey ?? ""}|${common.persistentKeepaliveSec ?? 0}`,
      });
    };
    if (this.cfg.mode === "separate") {
      for (const d of this.devs) {
        const f = d.families[0]?.family;
        if (f === 4 && d4 !== undefined && lease.subnet !== null && pub4 !== null) {
          add(d.name, d4, [lease.subnet], { ip: pub4, port: d4.port || this.cfg.listenPort });
        }
        if (f === 6 && d6 !== undefined && lease.ipv6Subnet !== null && pub6 !== null) {
          add(d.name, d6, [lease.ipv6Subnet], { ip: pub6, port: d6.port || this.cfg.listenPortV6 });
        }
      }
    } else {
      const data = d4 ?? d6;
      if (data === undefined) {
        this.logger.error(`Ignoring wireguard lease ${String(lease.subnet)}: it has no backend data`);
        return undefined;
      }
      const allowed: IpNet[] = [];
      const carried = new Set(this.devs[0]?.families.map((x) => x.family));
      if (carried.has(4) && lease.subnet !== null) allowed.push(lease.subnet);
      if (carried.has(6) && lease.ipv6Subnet !== null) allowed.push(lease.ipv6Subnet);
      const family = this.endpointFamily(this.cfg.mode, pub4, pub6);
      // A16: the single device listens on ListenPort only; dial that (BackendData's port) when known.
      const port =
        family === 4 ? d4?.port || this.cfg.listenPort : d4?.port || d6?.port || this.cfg.listenPortV6;
      const ip = family === 4 ? pub4 : pub6;
      add(WG_DEVICE, data, allowed, ip === null ? undefined : { ip, port });
    }
    return out;
  }

  private endpointFamily(mode: WireguardMode, pub4: IpAddr | null, pub6: IpAddr | null): Family {
    if (mode === "ipv4") return 4;
    if (mode === "ipv6") return 6;
    return selectEndpointFamily(pub4, pub6, this.deps.extIface.extAddr, this.deps.extIface.extV6Addr);
  }

  // ------------------------------------------------------------------ ReconcileTarget

  ensureDevices(): void {
    const errors: string[] = [];
    for (const d of this.devs) {
      try {
        this.ensureDevice(d);
        this.syncPeers(d);
      } catch (err) {
        errors.push(`failed to repair interface ${d.name}: ${errorMessage(err)}`);
      }
    }
    if (errors.length > 0) throw new Error(errors.join("; "));
  }

  private ensureDevice(d: WgDev): void {
    const k = this.deps.kernel;
    let link = k.links.get(d.name);
    if (link === undefined || link.kind !== "wireguard") {
      this.logger.warn(`Interface ${d.name} ${link === undefined ? "deleted" : "replaced"}; recreating it`);
      d.index = 0;
      this.configured.delete(d.name);
      link = createWgLink(k, { name: d.name, mtu: this.mtu() }, this.logger);
      initWgDevice(this.wg, { name: d.name, privateKey: this.keys.privateKey, listenPort: d.listenPort });
    }
    for (const f of d.families) {
      configureVxlanDevice(
        k,
        link,
        { family: f.family, addr: f.addr, network: f.network, mac: link.mac, fixMac: false },
        this.logger,
      );
      link = k.links.get(d.name) ?? link;
    }
    d.index = link.index;
  }

  /** Makes the device's peers the desired ones: configures missing/changed peers, removes unknown ones. */
  private syncPeers(d: WgDev): void {
    const want = new Map<string, DesiredWgPeer>();
    for (const perDev of this.peers.values()) {
      const p = perDev.get(d.name);
      if (p !== undefined) want.set(p.peer.publicKey, p);
    }
    const dev = this.wg.get(d.name);
    if (dev === undefined) throw new Error(`wireguard device ${d.name} disappeared`);
    if (dev.publicKey !== this.keys.publicKey || dev.listenPort !== d.listenPort) {
      this.logger.warn(`${d.name} lost its key or port; setting them again`);
      this.wg.configure(d.name, { privateKey: this.keys.privateKey, listenPort: d.listenPort });
    }
    const done = this.configured.get(d.name) ?? new Map<string, string>();
    this.configured.set(d.name, done);
    const changes: WireguardPeerConfig[] = [];
    const have = new Map(dev.peers.map((p) => [p.publicKey, p]));
    for (const [pub, w] of want) {
      const cur = have.get(pub);
      if (cur !== undefined && done.get(pub) === w.fingerprint && samePeerState(cur, w.peer)) continue;
      if (cur !== undefined && done.has(pub)) this.logger.info(`Updating peer ${pub} on ${d.name}`);
      else if (cur === undefined && done.has(pub)) this.logger.info(`Restoring peer ${pub} on ${d.name}`);
      changes.push({
        ...w.peer,
        replaceAllowedIps: true,
        persistentKeepaliveSec: w.peer.persistentKeepaliveSec ?? 0,
      });
    }
    for (const pub of have.keys()) {
      if (!want.has(pub)) {
        this.logger.info(`Removing peer ${pub} from ${d.name}`);
        changes.push({ publicKey: pub, allowedIps: [], remove: true });
      }
    }
    for (const pub of [...done.keys()]) if (!want.has(pub)) done.delete(pub);
    if (changes.length === 0) return;
    this.wg.configure(d.name, { peers: changes });
    for (const c of changes) if (c.remove !== true) done.set(c.publicKey, want.get(c.publicKey)!.fingerprint);
  }

  desired(): DesiredPeer[] {
    const out: DesiredPeer[] = [];
    for (const d of this.devs) {
      if (d.index === 0) continue;
      for (const f of d.families) {
        if (f.network === null) continue;
        const route: Route = { family: f.family, dst: f.network, linkIndex: d.index, scope: RT_SCOPE_LINK };
        out.push({ key: `${d.name}|${f.network.toString()}`, route });
      }
    }
    return out;
  }

  actual(): ActualState {
    return { neighbours: [], fdb: [], routes: this.actualRoutes() };
  }

  /** One route at a time from the kernel's dumps (ActualState says why). */
  private *actualRoutes(): Generator<Route, void, undefined> {
    const families = new Set(this.devs.flatMap((d) => d.families.map((f) => f.family)));
    for (const f of families) {
      for (const r of this.deps.kernel.routes.each({ family: f })) {
        if (r.dst === null || r.protocol === RTPROT_KERNEL || (r.table ?? RT_TABLE_MAIN) !== RT_TABLE_MAIN)
          continue;
        if ((r.type ?? "unicast") !== "unicast") continue;
        if (this.devs.some((d) => d.index !== 0 && d.index === r.linkIndex)) yield r;
      }
    }
  }

  concerns(ev: KernelEvent): boolean {
    switch (ev.type) {
      case "link-deleted":
        return this.devs.some((d) => d.name === ev.name || d.index === ev.index);
      case "route-deleted":
        return this.devs.some((d) => d.index !== 0 && d.index === ev.route.linkIndex);
      case "overflow":
        return true;
      default:
        return false;
    }
  }
}

/** The wireguard backend factory (registry.ts). */
export function createWireguardBackend(deps: BackendDeps, opts: WireguardBackendOptions = {}): Backend {
  const logger = deps.logger.child("wireguard.ts");
  const ext = deps.extIface;
  return {
    async registerNetwork(config: NetworkConfig, signal: AbortSignal): Promise<Network> {
      const cfg = decodeWireguardConfig(config.backend, ext.iface.mtu);
      const wg = deps.kernel.wireguard;
      if (wg === undefined) throw new Error("This kernel adapter cannot configure WireGuard devices");
      const mtu = cfg.mtu - WIREGUARD_OVERHEAD;

      const plan: { name: string; listenPort: number; families: Family[] }[] = [];
      if (cfg.mode === "separate") {
        if (config.enableIpv4) plan.push({ name: WG_DEVICE, listenPort: cfg.listenPort, families: [4] });
        if (config.enableIpv6) plan.push({ name: WG_DEVICE_V6, listenPort: cfg.listenPortV6, families: [6] });
      } else {
        const fams: Family[] = [];
        if (config.enableIpv4) fams.push(4);
        if (config.enableIpv6) fams.push(6);
        plan.push({ name: WG_DEVICE, listenPort: cfg.listenPort, families: fams });
      }
      // Links first: on a kernel without the module this fails before anything (a key file) is written.
      try {
        for (const p of plan) createWgLink(deps.kernel, { name: p.name, mtu }, logger);
      } catch (err) {
        for (const p of plan) deps.kernel.links.delete(p.name);
        throw err;
      }
      let keys: { privateKey: string; publicKey: string };
      try {
        keys = loadOrCreateWireguardKey(opts.keyFile ?? DEFAULT_WIREGUARD_KEY_FILE);
        for (const p of plan)
          initWgDevice(wg, { name: p.name, privateKey: keys.privateKey, listenPort: p.listenPort });
      } catch (err) {
        for (const p of plan) deps.kernel.links.delete(p.name);
        throw err;
      }

      const attrs: LeaseAttrs = {
        publicIp: ext.extAddr ?? IpAddr.zero(4),
        publicIpv6: ext.extV6Addr,
        backendType: "wireguard",
      };
      if (config.enableIpv4) attrs.backendData = wireguardBackendData(keys.publicKey, cfg.listenPort);
      if (config.enableIpv6) {
        attrs.backendV6Data = wireguardBackendData(
          keys.publicKey,
          cfg.mode === "separate" ? cfg.listenPortV6 : cfg.listenPort,
        );
      }
      let lease: Lease;
      try {
        lease = await deps.subnetManager.acquireLease(attrs, signal);
      } catch (err) {
        for (const p of plan) deps.kernel.links.delete(p.name);
        if (isAbort(err, signal)) throw err;
        throw new Error(`failed to acquire lease: ${errorMessage(err)}`, { cause: err });
      }

      const devs: WgDev[] = [];
      for (const p of plan) {
        const families: WgDev["families"] = [];
        for (const f of p.families) {
          const subnet = f === 4 ? lease.subnet : lease.ipv6Subnet;
          if (subnet === null) {
            throw new Error(
              `failed to configure interface ${p.name}: IPv${f} is enabled but the lease has no IPv${f}`,
            );
          }
          families.push({
            family: f,
            addr: new IfAddr(subnet.ip, subnet.ip.bits),
            network: f === 4 ? config.network : config.ipv6Network,
          });
        }
        devs.push({ name: p.name, listenPort: p.listenPort, families, index: 0 });
      }
      const net = new WireguardNetwork(deps, wg, cfg, keys, lease, devs, logger, opts);
      try {
        net.ensureDevices();
      } catch (err) {
        net.cleanUp();
        throw err;
      }
      return net;
    },
  };
}
