// The client-side lease state machine every backend uses (upstream pkg/lease/lease.go LeaseWatcher):
// it turns what a subnet manager's watch yields — full snapshots and batches of events — into batches of
// added/removed events about *other* nodes' leases.
//
// Design notes:
// - "Same subnet" depends on the family flags: v4-only compares Subnet, v6-only IPv6Subnet, dual-stack both,
//   and neither flag (legacy etcd leases) compares Subnet. Which lease's flags are used follows upstream:
//   the incoming lease's flags to recognise our own lease, the stored lease's flags to find a known entry.
// - A removal emits the *stored* lease, because the removal event from etcd carries no attributes and the
//   backend needs the peer's MAC / public IP to undo what it programmed.
// - Difference from upstream: our own lease is never stored. Upstream copies the whole snapshot (own lease
//   included) into its list, so a second snapshot reports our own lease as removed; here it never is.
// - Lookups are O(1) per event through `LeaseIndex`: a linear scan per event made 10,000 streamed leases
//   quadratic (~1 s of CPU already at 1000). A stored lease is found by the key its *own* flags select
//   (v4: Subnet, v6: IPv6Subnet, dual: both, neither: Subnet), so an incoming lease is looked up under all
//   three key forms, and the earliest stored match wins — the entry a linear scan would have found first.

import type { IpNet } from "../ip/net.ts";
import type { Logger } from "../log/logger.ts";
import type { SubnetManager } from "../subnet/manager.ts";
import type { Lease, LeaseEvent } from "./lease.ts";
import { appendAll } from "../util/array.ts";

function sameNet(a: IpNet | null, b: IpNet | null): boolean {
  if (a === null || b === null) return a === b;
  return a.equals(b);
}

/** Upstream's sameSubnet: compares `a` and `b` by the subnets that the flags `v4`/`v6` say are in use. */
export function sameSubnet(v4: boolean, v6: boolean, a: Lease, b: Lease): boolean {
  if (v4 && !v6) return sameNet(a.subnet, b.subnet);
  if (!v4 && v6) return sameNet(a.ipv6Subnet, b.ipv6Subnet);
  if (v4 && v6) return sameNet(a.subnet, b.subnet) && sameNet(a.ipv6Subnet, b.ipv6Subnet);
  return sameNet(a.subnet, b.subnet);
}

// Keys are the networks' own texts (IpNet keeps its text, which logs and the backends use too), in one map per
// kind of lease: a key built per lease ("4 " + the subnet) cost ~90 bytes per lease at 10,000.
type Kind = "4" | "6" | "46";

function netKey(n: IpNet | null): string {
  return n === null ? "-" : n.toString();
}

/** The kind and key under which a stored lease is found, chosen by its own flags (see `sameSubnet`). */
function storedKey(l: Lease): [Kind, string] {
  if (l.enableIpv6 && !l.enableIpv4) return ["6", netKey(l.ipv6Subnet)];
  if (l.enableIpv6 && l.enableIpv4) return ["46", [netKey(l.subnet), netKey(l.ipv6Subnet)].join(" ")];
  return ["4", netKey(l.subnet)];
}

/** The keys of stored leases that `sameSubnet(stored flags, stored, l)` would match, per kind. */
function lookupKeys(l: Lease): [Kind, string][] {
  const v4 = netKey(l.subnet);
  const v6 = netKey(l.ipv6Subnet);
  return [
    ["4", v4],
    ["6", v6],
    ["46", [v4, v6].join(" ")],
  ];
}

/**
 * An ordered set of leases, found by subnet key in O(1). Order is insertion order (a replaced lease keeps
 * its place), as in the array a linear scan would walk; slots are numbered in that order.
 */
class LeaseIndex {
  private readonly bySlot = new Map<number, Lease>();
  /**
   * Slots per stored key, ascending: a number, or an array in the rare case of several (a snapshot that
   * repeats a subnet). Not an array each: that is ~50 bytes more per lease at 10,000.
   */
  private readonly byKey: Record<Kind, Map<string, number | number[]>> = {
    "4": new Map(),
    "6": new Map(),
    "46": new Map(),
  };
  private nextSlot = 0;
  private cache: Lease[] | undefined;

  values(): Lease[] {
    this.cache ??= [...this.bySlot.values()];
    return this.cache;
  }

  get(slot: number): Lease | undefined {
    return this.bySlot.get(slot);
  }

  push(lease: Lease): void {
    const slot = this.nextSlot++;
    this.bySlot.set(slot, lease);
    this.link(storedKey(lease), slot);
    this.cache = undefined;
  }

  /** The first slot (in order) whose lease is the same subnet as `lease` by the stored lease's flags. */
  find(lease: Lease): number | undefined {
    let best: number | undefined;
    for (const [kind, k] of lookupKeys(lease)) {
      const slots = this.byKey[kind].get(k);
      const s = typeof slots === "number" ? slots : slots?.[0];
      if (s !== undefined && (best === undefined || s < best)) best = s;
    }
    return best;
  }

  replace(slot: number, lease: Lease): void {
    const old = this.bySlot.get(slot);
    if (old === undefined) return;
    this.bySlot.set(slot, lease);
    const ok = storedKey(old);
    const nk = storedKey(lease);
    if (ok[0] !== nk[0] || ok[1] !== nk[1]) {
      this.unlink(ok, slot);
      this.link(nk, slot);
    }
    this.cache = undefined;
  }

  delete(slot: number): void {
    const old = this.bySlot.get(slot);
    if (old === undefined) return;
    this.bySlot.delete(slot);
    this.unlink(storedKey(old), slot);
    this.cache = undefined;
  }

  private link([kind, key]: [Kind, string], slot: number): void {
    const m = this.byKey[kind];
    const had = m.get(key);
    if (had === undefined) {
      m.set(key, slot);
      return;
    }
    const slots = typeof had === "number" ? [had] : had;
    m.set(key, slots);
    // Keep ascending order; a replaced lease may move to a key whose slots are newer than its own.
    let i = slots.length;
    while (i > 0 && (slots[i - 1] as number) > slot) i--;
    slots.splice(i, 0, slot);
  }

  private unlink([kind, key]: [Kind, string], slot: number): void {
    const m = this.byKey[kind];
    const slots = m.get(key);
    if (slots === undefined) return;
    if (typeof slots === "number") {
      if (slots === slot) m.delete(key);
      return;
    }
    const i = slots.indexOf(slot);
    if (i !== -1) slots.splice(i, 1);
    if (slots.length === 1) m.set(key, slots[0] as number);
    else if (slots.length === 0) m.delete(key);
  }
}

export class LeaseWatcher {
  private leases = new LeaseIndex();

  constructor(
    /** This node's lease; leases with its subnet(s) are never reported. */
    readonly ownLease: Lease,
    private readonly logger: Logger,
  ) {}

  /** The other nodes' leases currently known. */
  known(): readonly Lease[] {
    return this.leases.values();
  }

  private isOwn(l: Lease): boolean {
    return sameSubnet(l.enableIpv4, l.enableIpv6, this.ownLease, l);
  }

  /** Takes a full snapshot: `added` for leases not known before, `removed` for known leases now absent. */
  reset(snapshot: readonly Lease[]): LeaseEvent[] {
    const batch: LeaseEvent[] = [];
    // The old index is consumed: each lease found again leaves it, what remains was removed.
    const previous = this.leases;
    const next = new LeaseIndex();
    for (const nl of snapshot) {
      if (this.isOwn(nl)) continue;
      next.push(nl);
      const i = previous.find(nl);
      if (i === undefined) batch.push({ type: "added", lease: nl });
      else previous.delete(i);
    }
    for (const l of previous.values()) batch.push({ type: "removed", lease: l });
    this.leases = next;
    return batch;
  }

  /** Applies a batch of events; `added` upserts, `removed` reports the stored lease. */
  update(events: readonly LeaseEvent[]): LeaseEvent[] {
    const batch: LeaseEvent[] = [];
    for (const e of events) {
      if (this.isOwn(e.lease)) continue;
      batch.push(e.type === "added" ? this.add(e.lease) : this.remove(e.lease));
    }
    return batch;
  }

  private add(lease: Lease): LeaseEvent {
    const i = this.leases.find(lease);
    if (i === undefined) this.leases.push(lease);
    else this.leases.replace(i, lease);
    return { type: "added", lease };
  }

  private remove(lease: Lease): LeaseEvent {
    const i = this.leases.find(lease);
    const stored = i === undefined ? undefined : this.leases.get(i);
    if (i !== undefined && stored !== undefined) {
      this.leases.delete(i);
      return { type: "removed", lease: stored };
    }
    this.logger.error(
      `Removed subnet (${String(lease.subnet ?? "<nil>")}) and ipv6 subnet (${String(lease.ipv6Subnet ?? "<nil>")}) were not found`,
    );
    return { type: "removed", lease };
  }
}

/** One lease event as upstream's `Batch elem` log line shows it (Go `%#v`-like, one line). */
export function describeLeaseEvent(e: LeaseEvent): string {
  const l = e.lease;
  const a = l.attrs;
  return (
    `lease.Event{Type:${e.type}, Lease:lease.Lease{EnableIPv4:${l.enableIpv4}, EnableIPv6:${l.enableIpv6}, ` +
    `Subnet:${String(l.subnet ?? "<nil>")}, IPv6Subnet:${String(l.ipv6Subnet ?? "<nil>")}, ` +
    `Attrs:{PublicIP:${a.publicIp.format()}, PublicIPv6:${a.publicIpv6?.format() ?? "<nil>"}, ` +
    `BackendType:${JSON.stringify(a.backendType)}, BackendData:${a.backendData ?? "<nil>"}, ` +
    `BackendV6Data:${a.backendV6Data ?? "<nil>"}}, Asof:${l.asof}}}`
  );
}

/**
 * Watches all leases through `subnetManager` and yields one batch of events about other nodes per pull of
 * the manager's watch (a pull may hold several snapshots/event lists; they are merged so the backend handles
 * them in one pass). A batch is empty only when its pull held a snapshot with no change, such as the first
 * one on a cluster with no other node: the backend then knows that its start-up state is complete. Ends when
 * `signal` aborts.
 */
export async function* watchLeaseBatches(
  subnetManager: SubnetManager,
  ownLease: Lease,
  logger: Logger,
  signal: AbortSignal,
): AsyncGenerator<LeaseEvent[]> {
  const watcher = new LeaseWatcher(ownLease, logger);
  for await (const results of subnetManager.watchLeases(signal)) {
    const batch: LeaseEvent[] = [];
    let snapshot = false;
    for (const r of results) {
      if ("snapshot" in r) snapshot = true;
      appendAll(batch, "snapshot" in r ? watcher.reset(r.snapshot) : watcher.update(r.events));
    }
    batch.forEach((e, i) => logger.info(`Batch elem [${i}] is { ${describeLeaseEvent(e)} }`));
    if (batch.length > 0 || snapshot) yield batch;
    if (signal.aborted) return;
  }
}
