// The vxlan backend (upstream pkg/backend/vxlan): one VXLAN device per address family, and per remote host
// one neighbour, one FDB entry and one route.
//
// Design notes:
// - Scaling: the device is created once; each remote lease costs exactly 1 permanent neighbour (the peer's
//   subnet network address → its VTEP MAC), 1 FDB entry (VTEP MAC → the peer's public IP) and 1 onlink route
//   (peer subnet via its network address). No L2/L3-miss handling: everything is programmed ahead of traffic.
// - Order ARP → FDB → route: the route is what attracts traffic to the device. Once it exists the kernel
//   resolves the gateway (the peer subnet's network address) through the neighbour table and finds the
//   remote VTEP through the FDB, so both must exist first; otherwise the first packets trigger an ARP on a
//   device that has nobody to answer, and a failed neighbour entry lingers. If a later step fails the
//   earlier ones are undone (reconcile.ts), so no half-programmed peer is left.
// - DirectRouting: a peer whose public IP is directly reachable (`ip route get` gives no gateway) gets a
//   plain route `subnet via publicIP` instead, decided when its lease event arrives, as upstream does.
// - Repair (better than upstream, which only recreates a deleted device and never replays its entries):
//   the network keeps the desired state — the devices with their address and MAC, and per peer the entries
//   above — and a Reconciler pass makes the kernel match it after every lease batch, on every kernel event
//   that concerns the network (device/route/neighbour/FDB deleted, socket overflow) and every `checkMs`.
//   A deleted device is recreated with the *same* MAC (peers keep working without a lease update), its
//   address and every entry are replayed in the same pass. Stale entries of departed peers are removed.
// - IPv4 and IPv6 share every line: a `Vtep` per family (flannel.<VNI> / flannel-v6.<VNI>) and family-
//   generic peer entries; nothing here is written twice.
// - MTU: device MTU = base − 50 for IPv4, base − 70 for an IPv6 underlay (upstream subtracts 50 for both,
//   appendix A12, which drops full-size packets over IPv6). The pod MTU is the smallest device MTU.
// - At exit nothing is removed (§7.4): devices, neighbours, FDB entries and routes stay so a restart does
//   not disturb existing flows; the next start reuses the device and reconciles the entries.

import { errorMessage } from "../../errors.ts";
import { IpAddr, type Family } from "../../ip/addr.ts";
import { IfAddr, IpNet } from "../../ip/net.ts";
import type { FdbEntry, KernelEvent, Neighbour, Route, VxlanSpec } from "../../kernel/ports.ts";
import { NUD_PERMANENT, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN } from "../../kernel/ports.ts";
import type { Lease, LeaseAttrs, LeaseEvent } from "../../lease/lease.ts";
import { watchLeaseBatches } from "../../lease/watcher.ts";
import { Claims, overlapsOwnSubnet } from "../claims.ts";
import type { Logger } from "../../log/logger.ts";
import { isAbort } from "../../util/sleep.ts";
import type { NetworkConfig } from "../../config/network-config.ts";
import type { Backend, BackendDeps, Network } from "../backend.ts";
import {
  Reconciler,
  type ActualState,
  type DesiredFdb,
  type DesiredNeighbour,
  type DesiredPeer,
  type ReconcileTarget,
} from "../reconcile.ts";
import { describeVxlanConfig, decodeVxlanConfig, VXLAN_OVERHEAD, type VxlanConfig } from "./config.ts";
import { configureVxlanDevice, ensureVxlanLink, randomMac, vxlanLinkIncompat } from "./device.ts";

const FAMILIES: readonly Family[] = [4, 6];
const RTPROT_KERNEL = 2;

export interface VxlanBackendOptions {
  /** Period of the drift check (default 10 s). */
  checkMs?: number;
  /** First retry delay after a failed repair (default 1 s, doubling up to 30 s). */
  retryMs?: number;
}

/** One VXLAN device: everything needed to (re)create and configure it. */
interface Vtep {
  family: Family;
  spec: VxlanSpec & { mac: string };
  addr: IfAddr;
  network: IpNet | null;
  ownSubnet: IpNet;
  /** Current ifindex; changes when the device is recreated. 0 while it is missing. */
  index: number;
}

/** A remote VTEP reached directly (DirectRouting, on the same network): a plain route via its public IP. */
interface DirectVtep {
  readonly direct: true;
  readonly subnet: IpNet;
  readonly publicIp: IpAddr;
  readonly mac: string;
  /** Its entry, made once: a periodic pass hands the reconciler the same object again. */
  desired: DesiredPeer | undefined;
}

/**
 * A remote VTEP as a lease advertises it for one family. One reached through the overlay is its own entries
 * (OverlayEntries) on one device index; a new one replaces it when the device is recreated or the lease
 * changes.
 */
type RemoteVtep = DirectVtep | OverlayEntries;

/** A peer's VTEPs per family (fields rather than a record: one object less per peer). */
interface Peer {
  v4: RemoteVtep | undefined;
  v6: RemoteVtep | undefined;
}

const vtepOf = (peer: Peer, f: Family): RemoteVtep | undefined => (f === 4 ? peer.v4 : peer.v6);

/**
 * A remote VTEP reached through the overlay, as its entries on the vxlan device: the DesiredPeer is also its
 * neighbour (the peer's VTEP address, the subnet's first address, at its MAC) and its route (the subnet via
 * that address, onlink). One object with the rest on its prototype instead of five (the VTEP, the
 * DesiredPeer, its neighbour, FDB entry and route): ~180 bytes less per peer. Never mutated; a changed lease
 * or device gets a new one.
 */
class OverlayEntries implements DesiredPeer, DesiredNeighbour, Route {
  constructor(
    readonly key: string,
    readonly family: Family,
    /** The device's index; 0 when made before the device existed (the entries are then not wanted yet). */
    readonly linkIndex: number,
    readonly dst: IpNet,
    readonly mac: string,
    readonly fdb: DesiredFdb,
  ) {}
  static of(family: Family, linkIndex: number, subnet: IpNet, mac: string, publicIp: IpAddr): OverlayEntries {
    return new OverlayEntries(subnet.toString(), family, linkIndex, subnet, mac, {
      linkIndex,
      mac,
      dst: publicIp,
    });
  }
  /** The same entries on the device with index `linkIndex`. */
  onDevice(linkIndex: number): OverlayEntries {
    return OverlayEntries.of(this.family, linkIndex, this.dst, this.mac, this.fdb.dst);
  }
  get direct(): false {
    return false;
  }
  get subnet(): IpNet {
    return this.dst;
  }
  get publicIp(): IpAddr {
    return this.fdb.dst;
  }
  get neighbour(): DesiredNeighbour {
    return this;
  }
  get route(): Route {
    return this;
  }
  get ip(): IpAddr {
    return this.dst.ip;
  }
  get gw(): IpAddr {
    return this.dst.ip;
  }
  get onlink(): boolean {
    return true;
  }
  get scope(): number {
    return RT_SCOPE_UNIVERSE;
  }
  /** One route per peer on flannel.<VNI>: through a nexthop object each (IPv4), see Route.nexthop. */
  get nexthop(): boolean {
    return true;
  }
}

/** Device name per family: flannel.<VNI> and flannel-v6.<VNI>. */
export function vxlanDeviceName(family: Family, vni: number): string {
  return family === 4 ? `flannel.${vni}` : `flannel-v6.${vni}`;
}

/** BackendData as upstream marshals it: compact, keys in this order. */
export function vxlanBackendData(vni: number, mac: string): string {
  return JSON.stringify({ VNI: vni, VtepMAC: mac });
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Decodes a peer's BackendData (`{"VNI":1,"VtepMAC":"…"}`); throws on missing or malformed VtepMAC. */
export function parseVxlanBackendData(raw: string | undefined): { vni: number; mac: string } {
  if (raw === undefined) throw new Error("lease has no backend data");
  const obj: unknown = JSON.parse(raw);
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    throw new Error(`backend data is not an object: ${raw}`);
  let vni = 0;
  let mac: string | undefined;
  // Go decodes case-insensitively, the last matching key winning.
  for (const [k, v] of Object.entries(obj)) {
    if (k.toLowerCase() === "vni" && typeof v === "number") vni = v;
    if (k.toLowerCase() === "vtepmac" && typeof v === "string") mac = v;
  }
  const norm = mac?.toLowerCase().replaceAll("-", ":");
  if (norm === undefined || !MAC_RE.test(norm)) throw new Error(`invalid VtepMAC in backend data: ${raw}`);
  return { vni, mac: norm };
}

function subnetOf(lease: Lease, family: Family): IpNet | null {
  return family === 4 ? lease.subnet : lease.ipv6Subnet;
}

function familyEnabled(lease: Lease, family: Family): boolean {
  // Legacy etcd leases set neither flag and are IPv4 (upstream's lease watcher treats them so, too).
  if (family === 4) return lease.enableIpv4 || (!lease.enableIpv4 && !lease.enableIpv6);
  return lease.enableIpv6;
}

/** The family of a subnet key (IpNet text). */
const familyOfKey = (k: string): Family => (k.includes(":") ? 6 : 4);

export class VxlanNetwork implements Network, ReconcileTarget {
  /**
   * Which peer each peer subnet (a DesiredPeer key) is programmed for: `bySubnet` maps it to the peer, whose
   * VTEP of the key's family it is; one map rather than one per peer and one per subnet. A subnet two leases
   * claim goes to the later one, and back when it goes (claims.ts).
   */
  private readonly claims = new Claims<Peer>();
  private readonly bySubnet = this.claims.current;
  private readonly reconciler: Reconciler;

  constructor(
    private readonly deps: BackendDeps,
    private readonly cfg: VxlanConfig,
    private readonly ownLease: Lease,
    private readonly vteps: Vtep[],
    private readonly logger: Logger,
    opts: VxlanBackendOptions,
  ) {
    this.reconciler = new Reconciler({
      target: this,
      kernel: deps.kernel,
      logger,
      ...(deps.metrics === undefined ? {} : { metrics: deps.metrics, loop: "vxlan" }),
      onFirstPass: deps.onSynced,
      ...(opts.checkMs === undefined ? {} : { checkMs: opts.checkMs }),
      ...(opts.retryMs === undefined ? {} : { retryMs: opts.retryMs }),
    });
  }

  lease(): Lease {
    return this.ownLease;
  }

  mtu(): number {
    if (this.vteps.length === 0) return this.cfg.mtu - VXLAN_OVERHEAD[4];
    return Math.min(...this.vteps.map((v) => v.spec.mtu ?? this.cfg.mtu));
  }

  async run(signal: AbortSignal): Promise<void> {
    this.logger.info("watching for new subnet leases");
    try {
      await this.reconciler.run(
        signal,
        watchLeaseBatches(this.deps.subnetManager, this.ownLease, this.logger, signal),
        (batch) => this.handleBatch(batch),
      );
    } catch (err) {
      if (isAbort(err, signal)) return;
      throw new Error(`could not watch leases: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** One full reconcile pass now (tests and `flannelctl` use it; `run` does it by itself). */
  reconcileNow(): ReturnType<Reconciler["reconcile"]> {
    return this.reconciler.reconcile();
  }

  /**
   * The lease's subnet of family `f` that this network programs: null when the lease lacks the family, or
   * when it overlaps this node's own subnet (overlapsOwnSubnet).
   */
  private claimedSubnet(lease: Lease, f: Family): IpNet | null {
    return familyEnabled(lease, f) && !overlapsOwnSubnet(lease, this.ownLease, f) ? subnetOf(lease, f) : null;
  }

  /**
   * Whether `peer` was made from `lease` (or from an update of it): it has a VTEP for exactly the lease's
   * subnets, in the families this network handles.
   */
  private isPeerOf(peer: Peer, lease: Lease): boolean {
    for (const { family: f } of this.vteps) {
      const mine = vtepOf(peer, f)?.subnet ?? null;
      const theirs = this.claimedSubnet(lease, f);
      if (mine === null ? theirs !== null : theirs === null || !mine.equals(theirs)) return false;
    }
    return true;
  }

  /**
   * Updates the desired state from a lease batch; returns the DesiredPeer keys (subnets) it may have
   * changed, which the reconciler applies.
   *
   * Each subnet is programmed for the lease that last claimed it, as upstream's route replace does. Unlike
   * upstream, when that lease goes, the subnet goes back to the lease that claimed it before, if it is still
   * there; upstream deletes the subnet's route, and the other node's subnet stays unreachable.
   */
  handleBatch(batch: readonly LeaseEvent[]): Set<string> {
    const changed = new Set<string>();
    for (const ev of batch) {
      const { lease } = ev;
      const attrs = lease.attrs;
      if (attrs.backendType !== "vxlan") {
        this.logger.warn(
          `ignoring non-vxlan v4Subnet(${String(lease.subnet ?? "<nil>")}) v6Subnet(${String(lease.ipv6Subnet ?? "<nil>")}): type=${attrs.backendType}`,
        );
        continue;
      }
      if (ev.type === "removed") {
        for (const { family: f } of this.vteps) {
          const subnet = this.claimedSubnet(lease, f);
          if (subnet === null) continue;
          const k = subnet.toString();
          const cur = this.bySubnet.get(k);
          const v = cur && vtepOf(cur, f);
          if (!this.claims.release(k, (p) => this.isPeerOf(p, lease))) continue;
          if (v !== undefined) {
            this.logger
              .v(2)
              ?.info(
                `removing ${f === 6 ? "v6 " : ""}subnet: ${k} PublicIP${f === 6 ? "v6" : ""}: ${v.publicIp.toString()} VtepMAC: ${v.mac}`,
              );
          }
          changed.add(k);
        }
        continue;
      }
      const peer: Peer = { v4: undefined, v6: undefined };
      let ok = true;
      for (const vtep of this.vteps) {
        const f = vtep.family;
        if (!familyEnabled(lease, f) || overlapsOwnSubnet(lease, this.ownLease, f, this.logger)) continue;
        const remote = this.remoteVtep(lease, attrs, f);
        if (remote === undefined) {
          ok = false;
          break;
        }
        if (f === 4) peer.v4 = remote;
        else peer.v6 = remote;
        this.logger
          .v(2)
          ?.info(
            remote.direct
              ? `Adding ${f === 6 ? "v6 " : ""}direct route to subnet: ${remote.subnet.toString()} PublicIP${f === 6 ? "v6" : ""}: ${remote.publicIp.toString()}`
              : `adding ${f === 6 ? "v6 " : ""}subnet: ${remote.subnet.toString()} PublicIP${f === 6 ? "v6" : ""}: ${remote.publicIp.toString()} VtepMAC: ${remote.mac}`,
          );
      }
      // A lease we cannot use is skipped as upstream does; what an earlier version of it programmed stays.
      if (!ok) continue;
      for (const f of FAMILIES) {
        const v = vtepOf(peer, f);
        if (v === undefined) continue;
        const k = v.subnet.toString();
        this.claims.claim(k, peer, (p) => this.isPeerOf(p, lease));
        changed.add(k);
      }
    }
    return changed;
  }

  private remoteVtep(lease: Lease, attrs: LeaseAttrs, f: Family): RemoteVtep | undefined {
    const subnet = subnetOf(lease, f);
    const publicIp = f === 4 ? attrs.publicIp : attrs.publicIpv6;
    if (subnet === null || publicIp === null || publicIp.isUnspecified) {
      this.logger.error(
        `Ignoring vxlan lease ${String(subnet ?? lease.subnet ?? "<nil>")}: it has no IPv${f} ${subnet === null ? "subnet" : "public IP"}`,
      );
      return undefined;
    }
    let mac: string;
    try {
      mac = parseVxlanBackendData(f === 4 ? attrs.backendData : attrs.backendV6Data).mac;
    } catch (err) {
      this.logger.error(`error decoding ${f === 6 ? "v6 " : ""}subnet lease JSON: ${errorMessage(err)}`);
      return undefined;
    }
    let direct = false;
    if (this.cfg.directRouting) {
      try {
        direct = this.deps.kernel.routes.get(publicIp).gw === undefined;
      } catch (err) {
        this.logger.error(errorMessage(err));
      }
    }
    return direct
      ? { direct, subnet, publicIp, mac, desired: undefined }
      : OverlayEntries.of(f, 0, subnet, mac, publicIp);
  }

  // ------------------------------------------------------------------ ReconcileTarget

  ensureDevices(): void {
    const errors: string[] = [];
    for (const v of this.vteps) {
      try {
        let link = this.deps.kernel.links.get(v.spec.name);
        if (link === undefined || vxlanLinkIncompat(v.spec, link) !== "") {
          if (link === undefined) this.logger.warn(`Interface ${v.spec.name} deleted; recreating it`);
          v.index = 0;
          link = ensureVxlanLink(this.deps.kernel, v.spec, this.logger).link;
        }
        configureVxlanDevice(
          this.deps.kernel,
          link,
          { family: v.family, addr: v.addr, network: v.network, mac: v.spec.mac, fixMac: true },
          this.logger,
        );
        if (v.index !== link.index && v.index !== 0) this.logger.info(`Recreated interface ${v.spec.name}`);
        v.index = link.index;
      } catch (err) {
        v.index = 0;
        errors.push(`failed to repair interface ${v.spec.name}: ${errorMessage(err)}`);
      }
    }
    if (errors.length > 0) throw new Error(errors.join("; "));
  }

  /** One peer's entries on one device; undefined when the peer has none there or the device is missing. */
  private entriesOf(peer: Peer, v: Vtep): DesiredPeer | undefined {
    const r = vtepOf(peer, v.family);
    if (r === undefined || v.index === 0) return undefined;
    if (r.direct) {
      r.desired ??= { key: r.subnet.toString(), route: { family: v.family, dst: r.subnet, gw: r.publicIp } };
      return r.desired;
    }
    if (r.linkIndex === v.index) return r;
    const moved = r.onDevice(v.index);
    if (v.family === 4) peer.v4 = moved;
    else peer.v6 = moved;
    return moved;
  }

  /** The entries of the peer indexed under subnet key `k`, on the device of the key's family. */
  private entriesAt(k: string, peer: Peer | undefined): DesiredPeer | undefined {
    if (peer === undefined) return undefined;
    const f = familyOfKey(k);
    const v = this.vteps.find((x) => x.family === f);
    return v && this.entriesOf(peer, v);
  }

  desired(): DesiredPeer[] {
    const out: DesiredPeer[] = [];
    // forEach, not for-of over entries: no [key, value] pair per peer every pass.
    this.bySubnet.forEach((peer, k) => {
      const d = this.entriesAt(k, peer);
      if (d !== undefined) out.push(d);
    });
    return out;
  }

  desiredOf(keys: ReadonlySet<string>): DesiredPeer[] {
    const out: DesiredPeer[] = [];
    for (const k of keys) {
      const d = this.entriesAt(k, this.bySubnet.get(k));
      if (d !== undefined) out.push(d);
    }
    return out;
  }

  actual(): ActualState {
    return { neighbours: this.actualNeighbours(), fdb: this.actualFdb(), routes: this.actualRoutes() };
  }

  // One entry at a time from the kernel's dumps (ActualState says why).
  private *actualNeighbours(): Generator<Neighbour, void, undefined> {
    for (const v of this.vteps) {
      if (v.index === 0) continue;
      for (const n of this.deps.kernel.neighbours.each({ linkIndex: v.index, family: v.family }))
        if ((n.state & NUD_PERMANENT) !== 0) yield n;
    }
  }

  private *actualFdb(): Generator<FdbEntry, void, undefined> {
    for (const v of this.vteps) {
      if (v.index === 0) continue;
      for (const e of this.deps.kernel.fdb.each({ linkIndex: v.index }))
        if (e.dst !== null && e.dst.family === v.family) yield e;
    }
  }

  private *actualRoutes(): Generator<Route, void, undefined> {
    for (const v of this.vteps) {
      if (v.index === 0) continue;
      for (const r of this.deps.kernel.routes.each({ family: v.family })) if (this.ownsRoute(v, r)) yield r;
    }
  }

  /**
   * Routes this network manages: into the cluster network (or, with no network configured, through the
   * device), never our own subnet, never the kernel's connected routes. That covers the onlink routes on
   * the device and direct routes over the external interface, including those of peers that left while
   * flanneld was down (upstream #2554).
   */
  private ownsRoute(v: Vtep, r: Route): boolean {
    if (r.dst === null || (r.type ?? "unicast") !== "unicast" || r.protocol === RTPROT_KERNEL) return false;
    if ((r.table ?? RT_TABLE_MAIN) !== RT_TABLE_MAIN || r.dst.overlaps(v.ownSubnet)) return false;
    if (v.network !== null)
      return v.network.containsNet(r.dst) && (r.linkIndex === v.index || r.gw !== undefined);
    return r.linkIndex === v.index;
  }

  concerns(ev: KernelEvent): boolean {
    switch (ev.type) {
      case "link-deleted":
        return this.vteps.some((v) => v.spec.name === ev.name || v.index === ev.index);
      case "route-deleted":
        return this.vteps.some(
          (v) =>
            v.index === ev.route.linkIndex ||
            (ev.route.dst !== null && v.network !== null && v.network.containsNet(ev.route.dst)),
        );
      case "neigh-deleted":
        return this.vteps.some((v) => v.index === ev.linkIndex);
      case "link-added":
        return false;
      case "overflow":
        return true;
    }
  }
}

/** The vxlan backend factory (registry.ts). */
export function createVxlanBackend(deps: BackendDeps, opts: VxlanBackendOptions = {}): Backend {
  const logger = deps.logger.child("vxlan.ts");
  return {
    async registerNetwork(config: NetworkConfig, signal: AbortSignal): Promise<Network> {
      const ext = deps.extIface;
      const cfg = decodeVxlanConfig(config.backend, ext.iface.mtu);
      logger.info(describeVxlanConfig(cfg));

      const stored = await deps.subnetManager.getStoredMacAddresses(signal);
      const families = FAMILIES.filter((f) => (f === 4 ? config.enableIpv4 : config.enableIpv6));
      const devices: { family: Family; spec: VxlanSpec & { mac: string } }[] = [];
      for (const f of families) {
        const name = vxlanDeviceName(f, cfg.vni);
        const storedMac = f === 4 ? stored.v4 : stored.v6;
        if (storedMac !== undefined) logger.info(`Interface ${name} mac address set to: ${storedMac}`);
        const spec: VxlanSpec & { mac: string } = {
          name,
          vni: cfg.vni,
          // The device binds its UDP socket to the interface address; --public-ip may be a NAT address that
          // is not local (upstream passes IfaceAddr here too).
          local: f === 4 ? ext.ifaceAddr : ext.ifaceV6Addr,
          vtepIndex: ext.iface.index,
          port: cfg.port,
          learning: cfg.learning,
          gbp: cfg.gbp,
          mtu: cfg.mtu - VXLAN_OVERHEAD[f],
          mac: storedMac?.toLowerCase() ?? randomMac(),
        };
        const { link, reused } = ensureVxlanLink(deps.kernel, spec, logger);
        // A reused device keeps its MAC: peers already point their FDB entries at it. A new one must have
        // the MAC we chose (checked after configuration: systemd may replace it, upstream #1795).
        if (reused) spec.mac = link.mac;
        devices.push({ family: f, spec });
      }

      const mac4 = devices.find((d) => d.family === 4)?.spec.mac;
      const mac6 = devices.find((d) => d.family === 6)?.spec.mac;
      const attrs: LeaseAttrs = { publicIp: IpAddr.zero(4), publicIpv6: null, backendType: "vxlan" };
      if (ext.extAddr !== null && mac4 !== undefined) {
        attrs.publicIp = ext.extAddr;
        attrs.backendData = vxlanBackendData(cfg.vni, mac4);
      }
      if (ext.extV6Addr !== null && mac6 !== undefined) {
        attrs.publicIpv6 = ext.extV6Addr;
        attrs.backendV6Data = vxlanBackendData(cfg.vni, mac6);
      }

      let lease: Lease;
      try {
        lease = await deps.subnetManager.acquireLease(attrs, signal);
      } catch (err) {
        if (isAbort(err, signal)) throw err;
        throw new Error(`failed to acquire lease: ${errorMessage(err)}`, { cause: err });
      }

      const vteps: Vtep[] = [];
      for (const d of devices) {
        const subnet = subnetOf(lease, d.family);
        const name = d.spec.name;
        if (subnet === null) {
          throw new Error(
            `failed to configure interface ${name}: IPv${d.family} is enabled but the lease has no IPv${d.family}`,
          );
        }
        const link = deps.kernel.links.get(name);
        if (link === undefined) throw new Error(`failed to configure interface ${name}: ${name} disappeared`);
        const v: Vtep = {
          family: d.family,
          spec: d.spec,
          addr: new IfAddr(subnet.ip, subnet.ip.bits),
          network: d.family === 4 ? config.network : config.ipv6Network,
          ownSubnet: subnet,
          index: link.index,
        };
        try {
          configureVxlanDevice(
            deps.kernel,
            link,
            { family: d.family, addr: v.addr, network: v.network, mac: d.spec.mac, fixMac: false },
            logger,
          );
        } catch (err) {
          throw new Error(`failed to configure interface ${name}: ${errorMessage(err)}`, { cause: err });
        }
        vteps.push(v);
      }
      return new VxlanNetwork(deps, cfg, lease, vteps, logger, opts);
    },
  };
}
