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
import type { FdbEntry, Kernel, KernelEvent, Neighbour, Route } from "../kernel/ports.ts";
import { NUD_PERMANENT, RT_TABLE_MAIN } from "../kernel/ports.ts";
import type { LeaseEvent } from "../lease/lease.ts";
import type { Logger } from "../log/logger.ts";
import type { ReconcileMetrics } from "../metrics/metrics.ts";
import { errorMessage } from "../errors.ts";

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

/** The kernel entries a network owns, as listed in one pass. */
export interface ActualState {
  neighbours: Neighbour[];
  fdb: FdbEntry[];
  routes: Route[];
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

const neighKey = (linkIndex: number, ip: IpAddr): string => `${linkIndex}|${ip.toString()}`;
const fdbKey = (linkIndex: number, mac: string): string => `${linkIndex}|${mac.toLowerCase()}`;
const routeKey = (r: Route): string => `${r.table ?? RT_TABLE_MAIN}|${r.dst?.toString() ?? "default"}`;

/** The kernel's default priority: 0 for IPv4, 1024 for IPv6 (IP6_RT_PRIO_USER). */
const metricOf = (r: Route): number => r.metric ?? (r.family === 6 ? 1024 : 0);

function sameAddr(a: IpAddr | null | undefined, b: IpAddr | null | undefined): boolean {
  if (a == null || b == null) return a == null && b == null;
  return a.equals(b);
}

/** True when `actual` is what `desired` asks for; a desired route without linkIndex lets the kernel pick. */
export function routeMatches(desired: Route, actual: Route): boolean {
  return (
    routeKey(desired) === routeKey(actual) &&
    sameAddr(desired.gw, actual.gw) &&
    (desired.linkIndex === undefined || desired.linkIndex === actual.linkIndex) &&
    (desired.onlink ?? false) === (actual.onlink ?? false) &&
    (actual.type ?? "unicast") === (desired.type ?? "unicast")
  );
}

function groupBy<T>(items: readonly T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    const list = m.get(k);
    if (list === undefined) m.set(k, [it]);
    else list.push(it);
  }
  return m;
}

/** Computes the kernel writes that turn `actual` into `desired`. Pure. */
export function plan(desired: readonly DesiredPeer[], actual: ActualState): Plan {
  const neighs = groupBy(actual.neighbours, (n) => neighKey(n.linkIndex, n.ip));
  const fdbs = groupBy(actual.fdb, (e) => fdbKey(e.linkIndex, e.mac));
  const routes = groupBy(actual.routes, routeKey);
  const wanted = { neigh: new Set<string>(), fdb: new Set<string>(), route: new Set<string>() };
  const adds: Plan["adds"] = [];
  const deletes = { route: [] as PlanOp[], fdb: [] as PlanOp[], neigh: [] as PlanOp[] };

  for (const peer of desired) {
    const ops: PlanOp[] = [];
    if (peer.neighbour !== undefined) {
      const n = peer.neighbour;
      const k = neighKey(n.linkIndex, n.ip);
      wanted.neigh.add(k);
      const ok = (neighs.get(k) ?? []).some(
        (a) => a.mac.toLowerCase() === n.mac.toLowerCase() && (a.state & NUD_PERMANENT) !== 0,
      );
      if (!ok) ops.push({ op: "neigh-replace", neighbour: n });
    }
    if (peer.fdb !== undefined) {
      const f = peer.fdb;
      const k = fdbKey(f.linkIndex, f.mac);
      wanted.fdb.add(k);
      const existing = fdbs.get(k) ?? [];
      if (!existing.some((a) => sameAddr(a.dst, f.dst))) ops.push({ op: "fdb-replace", fdb: f });
      // Other remotes for the same MAC (the peer's public IP changed): removed after the replace.
      for (const a of existing) {
        if (a.dst !== null && !a.dst.equals(f.dst)) {
          deletes.fdb.push({ op: "fdb-delete", fdb: { linkIndex: a.linkIndex, mac: a.mac, dst: a.dst } });
        }
      }
    }
    if (peer.route !== undefined) {
      const r = peer.route;
      const k = routeKey(r);
      wanted.route.add(k);
      const existing = routes.get(k) ?? [];
      const match = existing.find((a) => routeMatches(r, a));
      if (match === undefined) {
        const previous = existing[0];
        ops.push(
          previous === undefined
            ? { op: "route-replace", route: r }
            : { op: "route-replace", route: r, previous },
        );
      }
      // `replace` overwrites the route with the same metric; one with another metric would stay and compete.
      for (const a of existing) {
        if (a !== match && metricOf(a) !== metricOf(r)) deletes.route.push({ op: "route-delete", route: a });
      }
    }
    if (ops.length > 0) adds.push({ peer: peer.key, ops });
  }

  for (const [k, list] of routes) {
    if (!wanted.route.has(k)) for (const a of list) deletes.route.push({ op: "route-delete", route: a });
  }
  for (const [k, list] of fdbs) {
    if (wanted.fdb.has(k)) continue;
    for (const a of list) {
      if (a.dst !== null)
        deletes.fdb.push({ op: "fdb-delete", fdb: { linkIndex: a.linkIndex, mac: a.mac, dst: a.dst } });
    }
  }
  for (const [k, list] of neighs) {
    if (wanted.neigh.has(k)) continue;
    for (const a of list) {
      if ((a.state & NUD_PERMANENT) !== 0) {
        deletes.neigh.push({ op: "neigh-delete", neighbour: { linkIndex: a.linkIndex, ip: a.ip } });
      }
    }
  }
  return { adds, deletes: [...deletes.route, ...deletes.fdb, ...deletes.neigh] };
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

function applyOp(kernel: Kernel, op: PlanOp): void {
  switch (op.op) {
    case "neigh-replace":
      kernel.neighbours.replace(op.neighbour);
      return;
    case "fdb-replace":
      kernel.fdb.replace(op.fdb);
      return;
    case "route-replace":
      kernel.routes.replace(op.route);
      return;
    case "route-delete":
      kernel.routes.delete(op.route);
      return;
    case "fdb-delete":
      kernel.fdb.delete(op.fdb);
      return;
    case "neigh-delete":
      kernel.neighbours.delete(op.neighbour);
      return;
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
  /** Every peer's entries, with the current device indexes. */
  desired(): DesiredPeer[];
  /** The kernel entries this network owns (its device's neighbours/FDB, routes into the cluster network). */
  actual(): ActualState;
  /** Whether a kernel notification may concern this network. */
  concerns(ev: KernelEvent): boolean;
}

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
}

export interface PassResult {
  /** Kernel writes attempted. */
  writes: number;
  failures: number;
}

export class Reconciler {
  private readonly target: ReconcileTarget;
  private readonly kernel: Kernel;
  private readonly logger: Logger;
  readonly checkMs: number;
  private readonly retryMs: number;
  /** Entries (neighbours, FDB, routes) are reconciled only once the first lease batch has been applied. */
  private synced = false;
  /** Peers fully programmed at the end of an earlier pass, to tell "recovered" from "new" in logs. */
  private established = new Set<string>();
  private retryDelayMs: number;
  private readonly metrics: ReconcileMetrics | undefined;
  private readonly loop: string;

  constructor(opts: ReconcilerOptions) {
    this.metrics = opts.metrics;
    this.loop = opts.loop ?? "reconcile";
    this.target = opts.target;
    this.kernel = opts.kernel;
    this.logger = opts.logger;
    this.checkMs = opts.checkMs ?? 10_000;
    this.retryMs = opts.retryMs ?? 1000;
    this.retryDelayMs = this.retryMs;
  }

  /** One reconcile pass. Never throws: failures are logged and counted, the next pass retries. */
  reconcile(): PassResult {
    const t0 = process.hrtime.bigint();
    try {
      return this.reconcilePass();
    } finally {
      this.metrics?.observePass(this.loop, Number(process.hrtime.bigint() - t0) / 1e9);
    }
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

    let desired: DesiredPeer[];
    let actual: ActualState;
    try {
      desired = this.target.desired();
      actual = this.target.actual();
    } catch (err) {
      this.logger.error(`Failed to read kernel state: ${errorMessage(err)}`);
      result.failures++;
      return result;
    }
    const p = plan(desired, actual);
    const failedPeers = new Set<string>();

    for (const { peer, ops } of p.adds) {
      const done: PlanOp[] = [];
      for (const op of ops) {
        if (op.op === "route-replace") {
          if (op.previous !== undefined) {
            this.logger.info(
              `Replacing existing route to ${formatRoute(op.previous)} with ${formatRoute(op.route)}`,
            );
          } else if (this.established.has(peer)) {
            this.logger.info(
              `Route recovered ${op.route.dst?.toString() ?? "default"} : ${op.route.gw?.toString() ?? ""}`,
            );
          }
        } else if (this.established.has(peer)) {
          this.logger.info(`Restoring ${formatOp(op)} for ${peer}`);
        }
        result.writes++;
        try {
          applyOp(this.kernel, op);
          done.push(op);
          if (this.established.has(peer)) this.metrics?.countRepair(repairKind(op));
        } catch (err) {
          result.failures++;
          failedPeers.add(peer);
          this.logger.error(`Failed to ${formatOp(op)} for ${peer}: ${errorMessage(err)}`);
          for (const d of done.reverse()) {
            const undo = undoOf(d);
            if (undo === undefined) continue;
            try {
              applyOp(this.kernel, undo);
            } catch (undoErr) {
              this.logger.error(`Failed to undo ${formatOp(d)}: ${errorMessage(undoErr)}`);
            }
          }
          break;
        }
      }
    }
    const touched = new Set(p.adds.map((a) => a.peer));
    for (const peer of desired) {
      if (!this.established.has(peer.key) && peer.route !== undefined && !touched.has(peer.key)) {
        this.logger.info(`Route to ${peer.route.dst?.toString() ?? "default"} already exists, skipping.`);
      }
    }
    for (const op of p.deletes) {
      result.writes++;
      try {
        applyOp(this.kernel, op);
        this.metrics?.countRepair("stale");
        this.logger.v(1)?.info(`Removed stale entry: ${formatOp(op)}`);
      } catch (err) {
        result.failures++;
        this.logger.error(`Failed to ${formatOp(op)}: ${errorMessage(err)}`);
      }
    }
    this.established = new Set(desired.map((d) => d.key).filter((k) => !failedPeers.has(k)));
    return result;
  }

  /**
   * Runs until `signal` aborts: applies each lease batch (through `onBatch`, which updates the desired
   * state) followed by one pass, and re-runs a pass on relevant kernel events and every `checkMs`.
   * Rejects when the lease stream fails; resolves when it ends or the signal aborts.
   */
  async run(
    signal: AbortSignal,
    batches: AsyncIterable<LeaseEvent[]>,
    onBatch: (batch: LeaseEvent[]) => void,
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
    const pass = (): void => {
      pending = false;
      timer = undefined;
      const r = this.reconcile();
      backingOff = r.failures > 0;
      if (backingOff) {
        schedule(this.retryDelayMs);
        this.retryDelayMs = Math.min(this.retryDelayMs * 2, 30_000, Math.max(this.checkMs, this.retryMs));
      } else {
        this.retryDelayMs = this.retryMs;
        schedule(this.checkMs);
      }
    };
    this.kernel.events.subscribe((ev) => {
      if (!backingOff && (ev.type === "overflow" || this.target.concerns(ev))) schedule(0);
    }, signal);
    schedule(this.checkMs);

    const aborted = new Promise<"aborted">((resolve) =>
      signal.addEventListener("abort", () => resolve("aborted"), { once: true }),
    );
    const it = batches[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await Promise.race([it.next(), aborted]);
        if (next === "aborted" || next.done === true) break;
        onBatch(next.value);
        this.synced = true;
        if (timer !== undefined) clearTimeout(timer);
        pass();
      }
    } finally {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      if (signal.aborted) void it.return?.();
    }
  }
}
