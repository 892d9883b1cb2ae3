// RouteNetwork (upstream pkg/backend/route_network.go): a network whose whole datapath is one route per
// remote lease — host-gw (`subnet via peerPublicIP dev <ext iface>`) and, later, ipip.
//
// Design notes:
// - Scaling: 1 route per remote host; nothing else in the kernel.
// - The desired routes are derived from the leases of the backend's type (others are logged and ignored),
//   and a Reconciler (reconcile.ts) makes the main table match: after each lease batch, on a route-deleted
//   notification into the cluster network, on socket overflow and at least every `checkMs` (10 s, upstream's
//   route check period). Upstream's per-event logic — keep an identical route (`Route to X already exists,
//   skipping.`), replace a different one (`Replacing existing route to X with Y`), re-add a vanished one
//   (`Route recovered X : GW`) — falls out of plan(desired, actual), with the same log lines.
// - Better than upstream: routes of peers that left while flanneld was down are removed (upstream #2554).
//   Only routes into the cluster network, with a gateway, outside our own subnet and not made by the
//   kernel count as ours; nothing else in the table is ever touched.

import { errorMessage } from "../errors.ts";
import type { Family } from "../ip/addr.ts";
import type { IpNet } from "../ip/net.ts";
import type { KernelEvent, Route } from "../kernel/ports.ts";
import { RT_TABLE_MAIN } from "../kernel/ports.ts";
import { leaseIdentity, type Lease, type LeaseEvent } from "../lease/lease.ts";
import { watchLeaseBatches } from "../lease/watcher.ts";
import { Claims, overlapsOwnSubnet } from "./claims.ts";
import type { Logger } from "../log/logger.ts";
import { isAbort } from "../util/sleep.ts";
import type { BackendDeps, Network } from "./backend.ts";
import {
  formatRoute,
  Reconciler,
  type ActualState,
  type DesiredPeer,
  type ReconcileTarget,
} from "./reconcile.ts";

const RTPROT_KERNEL = 2;

export interface RouteNetworkOptions {
  deps: BackendDeps;
  logger: Logger;
  /** Leases of other types are ignored (`Ignoring non-<type> subnet: type=<t>`). */
  backendType: string;
  ownLease: Lease;
  /** Which families carry routes (the config's EnableIPv4 / EnableIPv6). */
  families: readonly Family[];
  /** The cluster networks; routes inside them (outside our subnet) are ours. Null: only desired ones. */
  networks: Partial<Record<Family, IpNet | null>>;
  mtu: number;
  /** The route to a peer's subnet for one family, or undefined when the lease lacks what it needs. */
  routeFor(lease: Lease, family: Family): Route | undefined;
  checkMs?: number;
  retryMs?: number;
}

export class RouteNetwork implements Network, ReconcileTarget {
  /**
   * Per remote lease, its route per family, as the DesiredPeer the reconciler is given: built once per lease
   * change, so a periodic pass neither allocates them again nor re-derives their kernel keys.
   */
  private readonly routes = new Map<string, DesiredPeer[]>();
  /**
   * Which route each destination (a DesiredPeer key) is programmed for: `byDst`. Also for applying only what a
   * batch changed. A destination two leases claim goes to the later one, and back when it goes (claims.ts).
   */
  private readonly claims = new Claims<DesiredPeer>();
  private readonly byDst = this.claims.current;
  private readonly reconciler: Reconciler;
  private readonly logger: Logger;

  constructor(private readonly opts: RouteNetworkOptions) {
    this.logger = opts.logger;
    this.reconciler = new Reconciler({
      target: this,
      kernel: opts.deps.kernel,
      logger: opts.logger,
      ...(opts.deps.metrics === undefined ? {} : { metrics: opts.deps.metrics, loop: "route" }),
      onFirstPass: opts.deps.onSynced,
      checkMs: opts.checkMs ?? 10_000,
      ...(opts.retryMs === undefined ? {} : { retryMs: opts.retryMs }),
    });
  }

  lease(): Lease {
    return this.opts.ownLease;
  }

  mtu(): number {
    return this.opts.mtu;
  }

  async run(signal: AbortSignal): Promise<void> {
    this.logger.info("Watching for new subnet leases");
    try {
      await this.reconciler.run(
        signal,
        watchLeaseBatches(this.opts.deps.subnetManager, this.opts.ownLease, this.logger, signal),
        (batch) => this.handleBatch(batch),
      );
    } catch (err) {
      if (isAbort(err, signal)) return;
      throw new Error(`could not watch leases: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** One reconcile pass now. */
  reconcileNow(): ReturnType<Reconciler["reconcile"]> {
    return this.reconciler.reconcile();
  }

  /**
   * Updates the desired routes from a lease batch; returns the destinations (DesiredPeer keys) it may have
   * changed.
   *
   * Each destination is routed for the lease that last claimed it, as upstream's route replace does. Unlike
   * upstream, when that lease goes, the destination goes back to the lease that claimed it before, if it is
   * still there; upstream deletes the route, and the other node's subnet stays unreachable.
   */
  handleBatch(batch: readonly LeaseEvent[]): Set<string> {
    const changed = new Set<string>();
    for (const ev of batch) {
      const { lease } = ev;
      if (lease.attrs.backendType !== this.opts.backendType) {
        this.logger.warn(`Ignoring non-${this.opts.backendType} subnet: type=${lease.attrs.backendType}`);
        continue;
      }
      const key = leaseIdentity(lease);
      if (ev.type === "removed") {
        this.logger.info(
          `Subnet removed: ${String(lease.subnet ?? "<nil>")} ${String(lease.ipv6Subnet ?? "")}`.trim(),
        );
        this.releaseAll(key, changed);
        this.routes.delete(key);
        continue;
      }
      const routes: DesiredPeer[] = [];
      for (const f of this.opts.families) {
        const enabled = f === 4 ? lease.enableIpv4 || !lease.enableIpv6 : lease.enableIpv6;
        if (!enabled) continue;
        const r = this.opts.routeFor(lease, f);
        if (r === undefined) continue;
        if (overlapsOwnSubnet(lease, this.opts.ownLease, f, this.logger)) continue;
        this.logger.info(`Subnet added: ${String(r.dst)} via ${String(r.gw)}`);
        routes.push({ key: String(r.dst), route: r });
      }
      this.releaseAll(key, changed);
      this.routes.set(key, routes);
      for (const d of routes) {
        this.claims.claim(d.key, d, () => false);
        changed.add(d.key);
      }
    }
    return changed;
  }

  /** Withdraws the routes of the lease `key`; a destination it had goes back to the route before, if any. */
  private releaseAll(key: string, changed: Set<string>): void {
    for (const d of this.routes.get(key) ?? []) {
      if (this.claims.release(d.key, (x) => x === d)) changed.add(d.key);
    }
  }

  // ------------------------------------------------------------------ ReconcileTarget

  ensureDevices(): void {
    // No devices of our own: the external interface belongs to the host.
  }

  desired(): DesiredPeer[] {
    return [...this.byDst.values()];
  }

  desiredOf(keys: ReadonlySet<string>): DesiredPeer[] {
    const out: DesiredPeer[] = [];
    for (const key of keys) {
      const d = this.byDst.get(key);
      if (d !== undefined) out.push(d);
    }
    return out;
  }

  actual(): ActualState {
    return { neighbours: [], fdb: [], routes: this.actualRoutes() };
  }

  /** One route at a time from the kernel's dumps (ActualState says why). */
  private *actualRoutes(): Generator<Route, void, undefined> {
    for (const f of this.opts.families) {
      const network = this.opts.networks[f] ?? null;
      const own = f === 4 ? this.opts.ownLease.subnet : this.opts.ownLease.ipv6Subnet;
      for (const r of this.opts.deps.kernel.routes.each({ family: f }))
        if (this.owns(r, network, own)) yield r;
    }
  }

  private owns(r: Route, network: IpNet | null, own: IpNet | null): boolean {
    if (r.dst === null || r.gw === undefined || (r.type ?? "unicast") !== "unicast") return false;
    if (r.protocol === RTPROT_KERNEL || (r.table ?? RT_TABLE_MAIN) !== RT_TABLE_MAIN) return false;
    if (own !== null && r.dst.overlaps(own)) return false;
    if (network !== null) return network.containsNet(r.dst);
    // Without a known cluster network only the destinations we want are ours (they get replaced).
    return this.byDst.has(r.dst.toString());
  }

  concerns(ev: KernelEvent): boolean {
    if (ev.type === "overflow") return true;
    if (ev.type !== "route-deleted" || ev.route.dst === null) return false;
    return this.byDst.has(ev.route.dst.toString());
  }

  /** For logs and tests. */
  describe(): string[] {
    return this.desired().map((d) => (d.route ? formatRoute(d.route) : d.key));
  }
}
