// Desired-state reconciliation shared by the vxlan and host-gw backends.
//
// Design notes:
// - Upstream programs the kernel once per lease event (vxlan) or re-adds missing routes every 10 s
//   (RouteNetwork), and forgets about everything else: a deleted FDB entry or neighbour stays deleted, a
//   recreated flannel.<VNI> comes back empty, and routes of nodes that left while flanneld was down stay
//   forever (issue #2554). Here a backend keeps the *desired* state — per remote lease its neighbour, FDB
//   entry and route — and `Reconciler.reconcile()` makes the kernel match it: after each lease batch, on
//   every kernel notification that concerns the network (link/route/neighbour deleted, socket overflow) and
//   every `checkMs`. One pass lists the kernel once (neighbours, FDB, routes) and computes `plan(desired,
//   actual)`; it never lists per event, so a 1000-lease snapshot costs 3 dumps plus the writes needed.
// - `plan` is pure and orders its operations: all adds/replaces first, grouped per peer in the order
//   ARP → FDB → route (the route is what makes the kernel send traffic to the peer; when it appears, the
//   neighbour and FDB entry it needs must already be there, otherwise the kernel would ARP on a device that
//   cannot answer), then deletes of stale entries in the reverse order (route first, so no route is left
//   pointing at a missing neighbour). Adding before deleting means a peer whose MAC or public IP changed is
//   never without a working entry.
// - When one add of a peer fails, the adds already made for that peer in the same pass are undone (the
//   kernel is left without a half-programmed peer) and the next pass retries.
// - "Actual" is only what the network owns (the backend's filter): stale owned entries are deleted, nothing
//   else is ever touched. Deletes start only after the first lease batch has been applied, so a restart does
//   not tear down the routes of a running node before the snapshot arrives.
// - All kernel calls are synchronous; the whole pass runs without yielding, so lease batches, kernel events
//   and the timer can never interleave inside a pass.

import type { IpAddr } from "../ip/addr.ts";
import { applyWrites } from "../kernel/batch.ts";
import type { FdbEntry, Kernel, KernelEvent, Neighbour, Route } from "../kernel/ports.ts";
import { NUD_PERMANENT, RT_TABLE_MAIN } from "../kernel/ports.ts";
import type { LeaseEvent } from "../lease/lease.ts";
import type { Logger } from "../log/logger.ts";
import type { ReconcileMetrics } from "../metrics/metrics.ts";
import { errorMessage } from "../errors.ts";
import { AbortableIterator } from "../util/sleep.ts";
import { appendAll } from "../util/array.ts";

export interface DesiredNeighbour {
  linkIndex: number;
  ip: IpAddr;
  mac: string;
}

export interface DesiredFdb {
  linkIndex: number;
  mac: string;
  dst: IpAddr;
}

/** What one remote lease needs in the kernel (for one address family). */
export interface DesiredPeer {
  /** Names the peer in logs, e.g. "10.244.2.0/24". */
  key: string;
  neighbour?: DesiredNeighbour;
  fdb?: DesiredFdb;
  route?: Route;
}

/**
 * The kernel entries a network owns, as listed in one pass. `plan` iterates each once and keeps only what
 * differs from the desired state, so a target can hand out the kernel's lists one entry at a time
 * (`Routes.each` and the like): a pass over tens of thousands of entries then leaves no object per entry
 * behind for the garbage collector to promote.
 */
export interface ActualState {
  neighbours: Iterable<Neighbour>;
  fdb: Iterable<FdbEntry>;
  routes: Iterable<Route>;
}

export type PlanOp =
  | { op: "neigh-replace"; neighbour: DesiredNeighbour }
  | { op: "fdb-replace"; fdb: DesiredFdb }
  | { op: "route-replace"; route: Route; previous?: Route }
  | { op: "route-delete"; route: Route }
  | { op: "fdb-delete"; fdb: DesiredFdb }
  | { op: "neigh-delete"; neighbour: { linkIndex: number; ip: IpAddr } };

export interface Plan {
  /** Per peer, the entries to write, in ARP → FDB → route order. Peers already right are absent. */
  adds: { peer: string; ops: PlanOp[] }[];
  /** Stale entries to remove: routes, then FDB entries, then neighbours. */
  deletes: PlanOp[];
}

// Kernel identities. `plan` finds neighbours and FDB entries per device by the address's value or the MAC's
// text, and routes per table, family and prefix length by the destination's value: values the entries already
// hold, so nothing is formatted or kept per peer to index them (four key strings and a key object per peer were
// ~0.2 KB per lease at 10,000), nor per listed entry. `routeKey` (a main-table route by its destination's own
// text, which IpNet keeps) compares two routes' identities and names a deletion.
const routeKey = (r: Route): string =>
  (r.table ?? RT_TABLE_MAIN) === RT_TABLE_MAIN
    ? (r.dst?.toString() ?? "default")
    : [r.table, r.dst?.toString() ?? "default"].join("|");
/** A neighbour's device and family: IPv4 and IPv6 addresses of the same value are different neighbours. */
const neighSlot = (linkIndex: number, ip: IpAddr): number => linkIndex * 2 + (ip.family === 6 ? 1 : 0);
const sameNeighKey = (a: { linkIndex: number; ip: IpAddr }, b: { linkIndex: number; ip: IpAddr }): boolean =>
  a.linkIndex === b.linkIndex && a.ip.equals(b.ip);
// toLowerCase makes a new string even when nothing changes; listed MACs are lower-case already.
const UPPER_HEX = /[A-F]/;
const lowerMac = (mac: string): string => (UPPER_HEX.test(mac) ? mac.toLowerCase() : mac);
/**
 * A route's table, family and prefix length as one number, for `BySlot` (its destination's value is the
 * inner key): a listed route is then looked up without formatting its destination.
 */
const routeSlot = (r: Route): number =>
  ((r.table ?? RT_TABLE_MAIN) * 256 + (r.dst?.prefixLen ?? 0)) * 2 + (r.family === 6 ? 1 : 0);
const routeValue = (r: Route): bigint => r.dst?.ip.value ?? 0n;

/** Two-level maps: by a number first (a device, or a route's table, family and prefix length), then by key. */
class BySlot<K, V> {
  private readonly m = new Map<number, Map<K, V>>();
  get(slot: number, k: K): V | undefined {
    return this.m.get(slot)?.get(k);
  }
  inner(slot: number): Map<K, V> {
    let i = this.m.get(slot);
    if (i === undefined) this.m.set(slot, (i = new Map()));
    return i;
  }
}

/** The kernel's default priority: 0 for IPv4, 1024 for IPv6 (IP6_RT_PRIO_USER). */
const metricOf = (r: Route): number => r.metric ?? (r.family === 6 ? 1024 : 0);

function sameAddr(a: IpAddr | null | undefined, b: IpAddr | null | undefined): boolean {
  if (a == null || b == null) return a == null && b == null;
  return a.equals(b);
}

/**
 * For two routes with the same key (table and destination): whether `actual` is what `desired` asks for; a
 * desired route without linkIndex lets the kernel pick.
 */
function sameRouteOfKey(desired: Route, actual: Route): boolean {
  return (
    sameAddr(desired.gw, actual.gw) &&
    (desired.linkIndex === undefined || desired.linkIndex === actual.linkIndex) &&
    (desired.onlink ?? false) === (actual.onlink ?? false) &&
    (actual.type ?? "unicast") === (desired.type ?? "unicast")
  );
}

/** One desired peer in a pass, with what the listing showed of its entries. */
interface Want {
  peer: DesiredPeer;
  /** The next desired peer with the same neighbour / FDB / route key (there is hardly ever one). */
  nextNeigh: Want | undefined;
  nextFdb: Want | undefined;
  nextRoute: Want | undefined;
  /** A permanent neighbour with the desired MAC was listed. */
  neighOk: boolean;
  /** An FDB entry for the desired MAC with the desired remote was listed. */
  fdbOk: boolean;
  /** FDB entries for the desired MAC with another remote (the peer's public IP changed). */
  fdbOthers: FdbEntry[] | undefined;
  /** The first listed route with the desired key, and the first that is what is desired. */
  routeFirst: Route | undefined;
  routeMatch: Route | undefined;
  /** Listed routes with the desired key and another metric: `replace` would leave them competing. */
  routeOthers: Route[] | undefined;
}

function chain<K>(m: Map<K, Want>, key: K, w: Want, next: "nextNeigh" | "nextFdb" | "nextRoute"): void {
  let t = m.get(key);
  if (t === undefined) {
    m.set(key, w);
    return;
  }
  while (t[next] !== undefined) t = t[next];
  t[next] = w;
}

/**
 * Computes the kernel writes that turn `actual` into `desired`. Pure. The desired entries are indexed by
 * their kernel keys first; each listed entry is then looked up as it comes and only its verdict is kept.
 */
export function plan(desired: readonly DesiredPeer[], actual: ActualState): Plan {
  const wants: Want[] = [];
  const neighs = new BySlot<bigint, Want>();
  const fdbs = new BySlot<string, Want>();
  const routes = new BySlot<bigint, Want>();
  for (const peer of desired) {
    const w: Want = {
      peer,
      nextNeigh: undefined,
      nextFdb: undefined,
      nextRoute: undefined,
      neighOk: false,
      fdbOk: false,
      fdbOthers: undefined,
      routeFirst: undefined,
      routeMatch: undefined,
      routeOthers: undefined,
    };
    wants.push(w);
    const { neighbour: n, fdb: f, route: r } = peer;
    if (n !== undefined) chain(neighs.inner(neighSlot(n.linkIndex, n.ip)), n.ip.value, w, "nextNeigh");
    if (f !== undefined) chain(fdbs.inner(f.linkIndex), lowerMac(f.mac), w, "nextFdb");
    if (r !== undefined) chain(routes.inner(routeSlot(r)), routeValue(r), w, "nextRoute");
  }

  // Stale entries (keys no desired peer has), in listing order.
  const stale = { route: [] as PlanOp[], fdb: [] as PlanOp[], neigh: [] as PlanOp[] };
  for (const a of actual.neighbours) {
    const permanent = (a.state & NUD_PERMANENT) !== 0;
    let w = neighs.get(neighSlot(a.linkIndex, a.ip), a.ip.value);
    if (w === undefined) {
      if (permanent)
        stale.neigh.push({ op: "neigh-delete", neighbour: { linkIndex: a.linkIndex, ip: a.ip } });
      continue;
    }
    for (; w !== undefined; w = w.nextNeigh) {
      const mac = w.peer.neighbour!.mac;
      if (permanent && (a.mac === mac || a.mac.toLowerCase() === mac.toLowerCase())) w.neighOk = true;
    }
  }
  for (const a of actual.fdb) {
    let w = fdbs.get(a.linkIndex, lowerMac(a.mac));
    if (w === undefined) {
      if (a.dst !== null)
        stale.fdb.push({ op: "fdb-delete", fdb: { linkIndex: a.linkIndex, mac: a.mac, dst: a.dst } });
      continue;
    }
    for (; w !== undefined; w = w.nextFdb) {
      const dst = w.peer.fdb!.dst;
      if (sameAddr(a.dst, dst)) w.fdbOk = true;
      else if (a.dst !== null) (w.fdbOthers ??= []).push(a);
    }
  }
  for (const a of actual.routes) {
    let w = routes.get(routeSlot(a), routeValue(a));
    if (w === undefined) {
      stale.route.push({ op: "route-delete", route: a });
      continue;
    }
    for (; w !== undefined; w = w.nextRoute) {
      const r = w.peer.route!;
      w.routeFirst ??= a;
      if (w.routeMatch === undefined && sameRouteOfKey(r, a)) w.routeMatch = a;
      if (metricOf(a) !== metricOf(r)) (w.routeOthers ??= []).push(a);
    }
  }

  const adds: Plan["adds"] = [];
  const deletes = { route: [] as PlanOp[], fdb: [] as PlanOp[] };
  for (const w of wants) {
    const { peer } = w;
    const ops: PlanOp[] = [];
    if (peer.neighbour !== undefined && !w.neighOk)
      ops.push({ op: "neigh-replace", neighbour: peer.neighbour });
    if (peer.fdb !== undefined) {
      if (!w.fdbOk) ops.push({ op: "fdb-replace", fdb: peer.fdb });
      for (const a of w.fdbOthers ?? [])
        deletes.fdb.push({ op: "fdb-delete", fdb: { linkIndex: a.linkIndex, mac: a.mac, dst: a.dst! } });
    }
    if (peer.route !== undefined) {
      const r = peer.route;
      if (w.routeMatch === undefined) {
        const previous = w.routeFirst;
        ops.push(
          previous === undefined
            ? { op: "route-replace", route: r }
            : { op: "route-replace", route: r, previous },
        );
      }
      // `replace` overwrites the route with the same metric; one with another metric would stay and compete.
      for (const a of w.routeOthers ?? [])
        if (a !== w.routeMatch) deletes.route.push({ op: "route-delete", route: a });
    }
    if (ops.length > 0) adds.push({ peer: peer.key, ops });
  }
  appendAll(deletes.route, stale.route);
  appendAll(deletes.fdb, stale.fdb);
  return { adds, deletes: [...deletes.route, ...deletes.fdb, ...stale.neigh] };
}

/** A route as `ip route` would print it, for logs. */
export function formatRoute(r: Route): string {
  const parts = [r.type !== undefined && r.type !== "unicast" ? r.type : "", r.dst?.toString() ?? "default"];
  if (r.gw !== undefined) parts.push(`via ${r.gw.toString()}`);
  if (r.linkIndex !== undefined) parts.push(`dev #${r.linkIndex}`);
  if (r.onlink === true) parts.push("onlink");
  if (r.metric !== undefined && r.metric !== 0) parts.push(`metric ${r.metric}`);
  return parts.filter((p) => p !== "").join(" ");
}

export function formatOp(op: PlanOp): string {
  switch (op.op) {
    case "neigh-replace":
      return `neigh replace ${op.neighbour.ip.toString()} lladdr ${op.neighbour.mac} dev #${op.neighbour.linkIndex} nud permanent`;
    case "fdb-replace":
      return `fdb replace ${op.fdb.mac} dev #${op.fdb.linkIndex} dst ${op.fdb.dst.toString()} self permanent`;
    case "route-replace":
      return `route replace ${formatRoute(op.route)}`;
    case "route-delete":
      return `route del ${formatRoute(op.route)}`;
    case "fdb-delete":
      return `fdb del ${op.fdb.mac} dev #${op.fdb.linkIndex} dst ${op.fdb.dst.toString()} self`;
    case "neigh-delete":
      return `neigh del ${op.neighbour.ip.toString()} dev #${op.neighbour.linkIndex}`;
  }
}

/** The delete that undoes an add. */
function undoOf(op: PlanOp): PlanOp | undefined {
  switch (op.op) {
    case "neigh-replace":
      return { op: "neigh-delete", neighbour: op.neighbour };
    case "fdb-replace":
      return { op: "fdb-delete", fdb: op.fdb };
    case "route-replace":
      return { op: "route-delete", route: op.route };
    default:
      return undefined;
  }
}

function repairKind(op: PlanOp): string {
  return op.op.startsWith("route") ? "route" : op.op.startsWith("fdb") ? "fdb" : "neighbour";
}

/** What a network tells the reconciler. */
export interface ReconcileTarget {
  /**
   * Makes sure the network's devices exist and are configured, re-creating them when deleted. Idempotent.
   * Throws when that is not possible now (the reconciler retries with backoff).
   */
  ensureDevices(): void;
  /** Every peer's entries, with the current device indexes; each DesiredPeer.key once. */
  desired(): DesiredPeer[];
  /**
   * The entries of the peers named (DesiredPeer.key) that are still wanted; keys of peers no longer wanted
   * are simply absent. Optional: a target without it gets a full pass after every lease batch.
   */
  desiredOf?(keys: ReadonlySet<string>): DesiredPeer[];
  /** The kernel entries this network owns (its device's neighbours/FDB, routes into the cluster network). */
  actual(): ActualState;
  /** Whether a kernel notification may concern this network. */
  concerns(ev: KernelEvent): boolean;
}

/**
 * What `onBatch` tells `Reconciler.run`: the DesiredPeer keys the batch may have changed (added, changed or
 * removed peers; a key of a peer that did not change costs one comparison). `undefined`: unknown, run a
 * full pass.
 */
export type ChangedPeers = Iterable<string> | undefined;

export interface ReconcilerOptions {
  target: ReconcileTarget;
  kernel: Kernel;
  logger: Logger;
  /** Period of the drift check; upstream's RouteNetwork checks every 10 s. */
  checkMs?: number;
  /** First retry delay after a failed pass (doubles up to 30 s, as upstream's device re-creation). */
  retryMs?: number;
  /** Where pass durations and repairs are reported (flanneld's /metrics), labelled `loop`. */
  metrics?: ReconcileMetrics;
  loop?: string;
  /** Called once, after the pass that applied the first lease batch (the start-up snapshot). */
  onFirstPass?: (() => void) | undefined;
}

export interface PassResult {
  /** Kernel writes attempted. */
  writes: number;
  failures: number;
}

function sameNeighbour(a: DesiredNeighbour | undefined, b: DesiredNeighbour | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.linkIndex === b.linkIndex && a.ip.equals(b.ip) && a.mac.toLowerCase() === b.mac.toLowerCase();
}

function sameFdb(a: DesiredFdb | undefined, b: DesiredFdb | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.linkIndex === b.linkIndex && a.mac.toLowerCase() === b.mac.toLowerCase() && a.dst.equals(b.dst);
}

/** Whether two desired routes are the same request (every field the kernel gets). */
function sameRoute(a: Route | undefined, b: Route | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const net = (x: Route["dst"]): string => x?.toString() ?? "default";
  return (
    a.family === b.family &&
    net(a.dst) === net(b.dst) &&
    sameAddr(a.gw, b.gw) &&
    a.linkIndex === b.linkIndex &&
    (a.onlink ?? false) === (b.onlink ?? false) &&
    (a.table ?? RT_TABLE_MAIN) === (b.table ?? RT_TABLE_MAIN) &&
    (a.type ?? "unicast") === (b.type ?? "unicast") &&
    a.scope === b.scope &&
    a.protocol === b.protocol &&
    sameAddr(a.src, b.src) &&
    metricOf(a) === metricOf(b)
  );
}

/**
 * The writes that turn the entries of `old` (as last applied) into those of `next` for one peer: adds in
 * ARP → FDB → route order, and the deletes of what `next` no longer has (a replace already overwrote an
 * entry with the same kernel key). Pure.
 */
export function planPeerChange(
  old: DesiredPeer | undefined,
  next: DesiredPeer | undefined,
): { adds: PlanOp[]; deletes: { route: PlanOp[]; fdb: PlanOp[]; neigh: PlanOp[] } } {
  const adds: PlanOp[] = [];
  const deletes = { route: [] as PlanOp[], fdb: [] as PlanOp[], neigh: [] as PlanOp[] };
  if (next?.neighbour !== undefined && !sameNeighbour(old?.neighbour, next.neighbour))
    adds.push({ op: "neigh-replace", neighbour: next.neighbour });
  if (next?.fdb !== undefined && !sameFdb(old?.fdb, next.fdb))
    adds.push({ op: "fdb-replace", fdb: next.fdb });
  if (next?.route !== undefined && !sameRoute(old?.route, next.route)) {
    const previous = old?.route;
    adds.push(
      previous !== undefined && routeKey(previous) === routeKey(next.route)
        ? { op: "route-replace", route: next.route, previous }
        : { op: "route-replace", route: next.route },
    );
  }
  const o = old?.neighbour;
  if (o !== undefined && (next?.neighbour === undefined || !sameNeighKey(o, next.neighbour)))
    deletes.neigh.push({ op: "neigh-delete", neighbour: { linkIndex: o.linkIndex, ip: o.ip } });
  // A replace with the same MAC overwrote the old remote; deleting it as well is harmless (absent = done).
  if (old?.fdb !== undefined && !sameFdb(old.fdb, next?.fdb))
    deletes.fdb.push({ op: "fdb-delete", fdb: old.fdb });
  const r = old?.route;
  if (
    r !== undefined &&
    (next?.route === undefined ||
      routeKey(r) !== routeKey(next.route) ||
      metricOf(r) !== metricOf(next.route))
  )
    deletes.route.push({ op: "route-delete", route: r });
  return { adds, deletes };
}

// The identity of a deleted entry, the same whether made from our delete or from its notification.
const deletedRouteKey = (r: Route): string => ["r", routeKey(r)].join("|");
const deletedNeighKey = (linkIndex: number, ip: IpAddr): string => ["n", linkIndex, ip.toString()].join("|");
const deletedFdbKey = (linkIndex: number, mac: string, dst: IpAddr): string =>
  ["f", linkIndex, lowerMac(mac), dst.toString()].join("|");

function deletedKey(op: PlanOp): string | undefined {
  switch (op.op) {
    case "route-delete":
      return deletedRouteKey(op.route);
    case "fdb-delete":
      return deletedFdbKey(op.fdb.linkIndex, op.fdb.mac, op.fdb.dst);
    case "neigh-delete":
      return deletedNeighKey(op.neighbour.linkIndex, op.neighbour.ip);
    default:
      return undefined;
  }
}

function deletedKeyOfEvent(ev: KernelEvent): string | undefined {
  switch (ev.type) {
    case "route-deleted":
      return deletedRouteKey(ev.route);
    case "neigh-deleted":
      if (ev.ip === undefined) return undefined;
      if (ev.family !== "bridge") return deletedNeighKey(ev.linkIndex, ev.ip);
      return ev.mac === undefined ? undefined : deletedFdbKey(ev.linkIndex, ev.mac, ev.ip);
    default:
      return undefined;
  }
}

/**
 * The entries this reconciler deleted itself, until their deletion's notification comes back: that echo
 * needs no pass. Kept for two full passes (an echo whose delete found nothing never comes), so it holds
 * only recent deletes, not an index of every applied entry. Used only with a kernel that reports our own
 * deletions (`KernelEvents.ownDeletesReported`); the netlink kernel drops them, so every deletion that
 * reaches us there is someone else's.
 */
class OwnDeletes {
  private current = new Map<string, number>();
  private previous = new Map<string, number>();
  add(op: PlanOp): void {
    const k = deletedKey(op);
    if (k !== undefined) this.current.set(k, (this.current.get(k) ?? 0) + 1);
  }
  /** Whether `k` is one of ours; consumes it. */
  take(k: string): boolean {
    for (const m of [this.current, this.previous]) {
      const n = m.get(k);
      if (n === undefined) continue;
      if (n <= 1) m.delete(k);
      else m.set(k, n - 1);
      return true;
    }
    return false;
  }
  /** A full pass: what the pass before it deleted no longer waits for its echo. */
  age(): void {
    this.previous = this.current;
    this.current = new Map();
  }
}

export class Reconciler {
  private readonly target: ReconcileTarget;
  private readonly kernel: Kernel;
  private readonly logger: Logger;
  readonly checkMs: number;
  private readonly retryMs: number;
  /** Entries (neighbours, FDB, routes) are reconciled only once the first lease batch has been applied. */
  private synced = false;
  /**
   * Per peer key, its entries as last applied and acknowledged by the kernel. A peer whose writes failed is
   * absent. Lease batches are planned against this instead of the kernel; every full pass brings it in line.
   */
  private readonly applied = new Map<string, DesiredPeer>();
  /** To tell an entry we removed ourselves from one lost. */
  private readonly ownDeletes: OwnDeletes | undefined;
  /** False until a full pass succeeded, and again after any failure: lease batches then run full passes. */
  private trusted = false;
  private retryDelayMs: number;
  private readonly metrics: ReconcileMetrics | undefined;
  private readonly loop: string;
  private readonly onFirstPass: (() => void) | undefined;

  constructor(opts: ReconcilerOptions) {
    this.metrics = opts.metrics;
    this.onFirstPass = opts.onFirstPass;
    this.loop = opts.loop ?? "reconcile";
    this.target = opts.target;
    this.kernel = opts.kernel;
    this.logger = opts.logger;
    this.checkMs = opts.checkMs ?? 10_000;
    this.retryMs = opts.retryMs ?? 1000;
    this.retryDelayMs = this.retryMs;
    this.ownDeletes = opts.kernel.events.ownDeletesReported === true ? new OwnDeletes() : undefined;
  }

  /** One full reconcile pass. Never throws: failures are logged and counted, the next pass retries. */
  reconcile(): PassResult {
    return this.timed(() => this.reconcilePass());
  }

  private timed(fn: () => PassResult): PassResult {
    const t0 = process.hrtime.bigint();
    try {
      return fn();
    } finally {
      this.metrics?.observePass(this.loop, Number(process.hrtime.bigint() - t0) / 1e9);
    }
  }

  private setApplied(key: string, peer: DesiredPeer | undefined): void {
    if (peer === undefined) this.applied.delete(key);
    else this.applied.set(key, peer);
  }

  /**
   * Whether a kernel notification may mean that an entry we rely on is gone. The echoes of our own deletes
   * (departed peers, stale entries, undone adds) need no pass; any other deletion gets one.
   */
  private mayHaveLost(ev: KernelEvent): boolean {
    if (!this.trusted) return true;
    const k = deletedKeyOfEvent(ev);
    return k === undefined || this.ownDeletes?.take(k) !== true;
  }

  /**
   * Applies per-peer adds (each peer's writes undone when one of them fails) and then deletes, batched.
   * Returns the peers whose adds failed. With a batch every write of a peer is attempted even after one
   * failed; the undo then removes what did get written, so no half-programmed peer stays either way.
   */
  private apply(
    adds: Plan["adds"],
    deletes: readonly PlanOp[],
    result: PassResult,
    /** Full pass: the deletes remove drift (counted as "stale" repairs). Lease batch: departed peers. */
    deletesAreRepairs: boolean,
  ): Set<string> {
    const writes: PlanOp[] = [];
    for (const a of adds) appendAll(writes, a.ops);
    appendAll(writes, deletes);
    result.writes += writes.length;
    const errs = applyWrites(this.kernel, writes);
    const failed = new Set<string>();
    const undo: PlanOp[] = [];
    const undone: PlanOp[] = [];
    let i = 0;
    for (const { peer, ops } of adds) {
      const done: PlanOp[] = [];
      let peerFailed = false;
      for (const op of ops) {
        const err = errs[i++];
        if (err === undefined) {
          done.push(op);
          continue;
        }
        result.failures++;
        peerFailed = true;
        this.logger.error(`Failed to ${formatOp(op)} for ${peer}: ${errorMessage(err)}`);
      }
      if (!peerFailed) {
        if (this.applied.has(peer)) for (const op of ops) this.metrics?.countRepair(repairKind(op));
        continue;
      }
      failed.add(peer);
      for (const d of done.reverse()) {
        const u = undoOf(d);
        if (u !== undefined) {
          undo.push(u);
          undone.push(d);
        }
      }
    }
    for (const op of deletes) {
      const err = errs[i++];
      if (err === undefined) {
        this.ownDeletes?.add(op);
        if (deletesAreRepairs) {
          this.metrics?.countRepair("stale");
          this.logger.v(1)?.info(`Removed stale entry: ${formatOp(op)}`);
        }
      } else {
        result.failures++;
        this.logger.error(`Failed to ${formatOp(op)}: ${errorMessage(err)}`);
      }
    }
    applyWrites(this.kernel, undo).forEach((err, j) => {
      if (err === undefined) this.ownDeletes?.add(undo[j]!);
      else this.logger.error(`Failed to undo ${formatOp(undone[j]!)}: ${errorMessage(err)}`);
    });
    return failed;
  }

  private reconcilePass(): PassResult {
    const result: PassResult = { writes: 0, failures: 0 };
    try {
      this.target.ensureDevices();
    } catch (err) {
      this.logger.error(errorMessage(err));
      result.failures++;
    }
    if (!this.synced) return result;
    this.ownDeletes?.age();

    let desired: DesiredPeer[];
    let p: Plan;
    try {
      desired = this.target.desired();
      // The kernel is read while planning (ActualState's lists are iterated there).
      p = plan(desired, this.target.actual());
    } catch (err) {
      this.logger.error(`Failed to read kernel state: ${errorMessage(err)}`);
      result.failures++;
      this.trusted = false;
      return result;
    }

    for (const { peer, ops } of p.adds) {
      const established = this.applied.has(peer);
      for (const op of ops) {
        if (op.op === "route-replace") {
          if (op.previous !== undefined) {
            this.logger.info(
              `Replacing existing route to ${formatRoute(op.previous)} with ${formatRoute(op.route)}`,
            );
          } else if (established) {
            this.logger.info(
              `Route recovered ${op.route.dst?.toString() ?? "default"} : ${op.route.gw?.toString() ?? ""}`,
            );
          }
        } else if (established) {
          this.logger.info(`Restoring ${formatOp(op)} for ${peer}`);
        }
      }
    }
    const touched = new Set(p.adds.map((a) => a.peer));
    for (const peer of desired) {
      if (!this.applied.has(peer.key) && peer.route !== undefined && !touched.has(peer.key)) {
        this.logger.info(`Route to ${peer.route.dst?.toString() ?? "default"} already exists, skipping.`);
      }
    }
    const failedPeers = this.apply(p.adds, p.deletes, result, true);
    // The applied state becomes exactly `desired` minus the failed peers. Keys are unique, so when as many
    // are applied as were kept, none is left over: the set of kept keys (10,000 entries) is made only when
    // peers went away.
    let kept = 0;
    for (const d of desired) {
      if (failedPeers.has(d.key)) continue;
      kept++;
      this.setApplied(d.key, d);
    }
    if (this.applied.size !== kept) {
      const next = new Set<string>();
      for (const d of desired) if (!failedPeers.has(d.key)) next.add(d.key);
      // forEach, not for-of: no iterator result per entry. Deleting the entry being visited is allowed.
      this.applied.forEach((_, key) => {
        if (!next.has(key)) this.applied.delete(key);
      });
    }
    this.trusted = result.failures === 0;
    return result;
  }

  /**
   * A lease batch applied against the last applied state: only the changed peers' writes, no dumps.
   * Returns undefined when it cannot (no trusted state, or the target cannot name peers): run a full pass.
   */
  private applyChanges(keys: ReadonlySet<string>): PassResult | undefined {
    const desiredOf = this.target.desiredOf?.bind(this.target);
    if (!this.trusted || desiredOf === undefined) return undefined;
    return this.timed(() => {
      const result: PassResult = { writes: 0, failures: 0 };
      const next = new Map<string, DesiredPeer>();
      for (const d of desiredOf(keys)) next.set(d.key, d);
      const adds: Plan["adds"] = [];
      const deletes = { route: [] as PlanOp[], fdb: [] as PlanOp[], neigh: [] as PlanOp[] };
      for (const key of keys) {
        const old = this.applied.get(key);
        const neu = next.get(key);
        if (old === undefined && neu === undefined) continue;
        const c = planPeerChange(old, neu);
        for (const op of c.adds) {
          if (op.op === "route-replace" && op.previous !== undefined)
            this.logger.info(
              `Replacing existing route to ${formatRoute(op.previous)} with ${formatRoute(op.route)}`,
            );
        }
        if (c.adds.length > 0) adds.push({ peer: key, ops: c.adds });
        deletes.route.push(...c.deletes.route);
        deletes.fdb.push(...c.deletes.fdb);
        deletes.neigh.push(...c.deletes.neigh);
      }
      const failed = new Set<string>();
      const dels = [...deletes.route, ...deletes.fdb, ...deletes.neigh];
      if (adds.length > 0 || dels.length > 0) {
        // A changed peer is not a repair (metrics): forget its old state before applying.
        for (const a of adds) this.setApplied(a.peer, undefined);
        for (const f of this.apply(adds, dels, result, false)) failed.add(f);
      }
      for (const key of keys) this.setApplied(key, failed.has(key) ? undefined : next.get(key));
      if (result.failures > 0) this.trusted = false;
      return result;
    });
  }

  /**
   * Runs until `signal` aborts: applies each lease batch (through `onBatch`, which updates the desired
   * state and names the peers it changed) and re-runs a full pass on relevant kernel events and every
   * `checkMs`. Rejects when the lease stream fails; resolves when it ends or the signal aborts.
   *
   * A lease batch costs O(changed peers): its writes are planned against the last applied state, without
   * listing the kernel. The first batch, a batch after a failure, and a batch whose `onBatch` names no peers
   * run a full dump-and-plan pass instead. Batches that queue up while one is applied arrive merged (the
   * lease watch yields everything pending per pull), so a burst costs one apply.
   */
  async run(
    signal: AbortSignal,
    batches: AsyncIterable<LeaseEvent[]>,
    onBatch: (batch: LeaseEvent[]) => ChangedPeers | void,
  ): Promise<void> {
    if (signal.aborted) return;
    let timer: NodeJS.Timeout | undefined;
    let pending = false;
    let stopped = false;
    // After a failed pass, kernel events wait for the retry: the failed pass's own undo emits deletions,
    // and reacting to them at once would spin on a permanent error instead of backing off.
    let backingOff = false;
    // Kernel events come in bursts (deleting a device emits one per route/neighbour): coalesce them into
    // one pass on the next turn of the event loop.
    const schedule = (delayMs: number): void => {
      if (stopped || signal.aborted) return;
      if (pending && delayMs === 0) return;
      if (timer !== undefined) clearTimeout(timer);
      pending = delayMs === 0;
      timer = setTimeout(pass, delayMs);
    };
    const settle = (r: PassResult): void => {
      backingOff = r.failures > 0;
      if (backingOff) {
        schedule(this.retryDelayMs);
        this.retryDelayMs = Math.min(this.retryDelayMs * 2, 30_000, Math.max(this.checkMs, this.retryMs));
      } else {
        this.retryDelayMs = this.retryMs;
        if (!pending) schedule(this.checkMs);
      }
    };
    const pass = (): void => {
      pending = false;
      timer = undefined;
      settle(this.reconcile());
    };
    this.kernel.events.subscribe((ev) => {
      if (backingOff) return;
      if (ev.type === "overflow" || (this.target.concerns(ev) && this.mayHaveLost(ev))) schedule(0);
    }, signal);
    schedule(this.checkMs);

    const it = batches[Symbol.asyncIterator]();
    const pulls = new AbortableIterator(it, signal);
    try {
      for (;;) {
        const next = await pulls.next();
        if (next === "aborted" || next.done === true) break;
        const changed = onBatch(next.value);
        const first = !this.synced;
        this.synced = true;
        const r = first || changed == null || backingOff ? undefined : this.applyChanges(new Set(changed));
        if (r !== undefined) {
          // A pending full pass (kernel event) or the periodic check stays scheduled as it was.
          if (r.failures > 0) settle(r);
          continue;
        }
        if (timer !== undefined) clearTimeout(timer);
        timer = undefined;
        pending = false;
        pass();
        if (first) this.onFirstPass?.();
      }
    } finally {
      pulls.close();
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      if (signal.aborted) void it.return?.();
    }
  }
}
