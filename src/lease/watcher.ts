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
// - Each list scan is O(known leases); batches are small and the list is one entry per node, so a linear
//   scan keeps the code obvious (1000 nodes × 1000-event snapshot is still ~1 ms).

import type { IpNet } from "../ip/net.ts";
import type { Logger } from "../log/logger.ts";
import type { SubnetManager } from "../subnet/manager.ts";
import type { Lease, LeaseEvent } from "./lease.ts";

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

export class LeaseWatcher {
  private leases: Lease[] = [];

  constructor(
    /** This node's lease; leases with its subnet(s) are never reported. */
    readonly ownLease: Lease,
    private readonly logger: Logger,
  ) {}

  /** The other nodes' leases currently known. */
  known(): readonly Lease[] {
    return this.leases;
  }

  private isOwn(l: Lease): boolean {
    return sameSubnet(l.enableIpv4, l.enableIpv6, this.ownLease, l);
  }

  /** Takes a full snapshot: `added` for leases not known before, `removed` for known leases now absent. */
  reset(snapshot: readonly Lease[]): LeaseEvent[] {
    const batch: LeaseEvent[] = [];
    const previous = [...this.leases];
    const next: Lease[] = [];
    for (const nl of snapshot) {
      if (this.isOwn(nl)) continue;
      next.push(nl);
      const i = previous.findIndex((ol) => sameSubnet(ol.enableIpv4, ol.enableIpv6, ol, nl));
      if (i === -1) batch.push({ type: "added", lease: nl });
      else previous.splice(i, 1);
    }
    for (const l of previous) batch.push({ type: "removed", lease: l });
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

  private findIndex(lease: Lease): number {
    return this.leases.findIndex((l) => sameSubnet(l.enableIpv4, l.enableIpv6, l, lease));
  }

  private add(lease: Lease): LeaseEvent {
    const i = this.findIndex(lease);
    if (i === -1) this.leases.push(lease);
    else this.leases[i] = lease;
    return { type: "added", lease };
  }

  private remove(lease: Lease): LeaseEvent {
    const i = this.findIndex(lease);
    const stored = this.leases[i];
    if (stored !== undefined) {
      this.leases.splice(i, 1);
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
    `Attrs:{PublicIP:${a.publicIp.toString()}, PublicIPv6:${String(a.publicIpv6 ?? "<nil>")}, ` +
    `BackendType:${JSON.stringify(a.backendType)}, BackendData:${a.backendData ?? "<nil>"}, ` +
    `BackendV6Data:${a.backendV6Data ?? "<nil>"}}, Asof:${l.asof}}}`
  );
}

/**
 * Watches all leases through `subnetManager` and yields one non-empty batch of events about other nodes
 * per pull of the manager's watch (a pull may hold several snapshots/event lists; they are merged so the
 * backend handles them in one pass). Ends when `signal` aborts.
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
    for (const r of results) {
      batch.push(...("snapshot" in r ? watcher.reset(r.snapshot) : watcher.update(r.events)));
    }
    batch.forEach((e, i) => logger.info(`Batch elem [${i}] is { ${describeLeaseEvent(e)} }`));
    if (batch.length > 0) yield batch;
    if (signal.aborted) return;
  }
}
