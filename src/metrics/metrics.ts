// flanneld's metrics: what an operator wants on a dashboard next to "is the node ready" — how many peers
// it knows, how many lease events it handled, how many kernel writes it made and how many failed, how often
// it had to repair drift, how long a reconcile pass takes and when its own lease expires.
//
// Design notes
// - One `Metrics` object is built by the composition root and handed down; there is no global registry.
// - Most counting needs no change in the code it measures: `instrumentKernel` wraps the write methods of the
//   kernel ports in place (every write the daemon makes goes through them), and `instrumentSubnetManager`
//   wraps the lease watch and acquisition. Only the reconciler reports itself (pass duration and repairs),
//   through the small `ReconcileMetrics` interface, because only it knows a write is a repair.

import type { Kernel, KernelWrite } from "../kernel/ports.ts";
import type { Lease, LeaseWatchResult } from "../lease/lease.ts";
import type { SubnetManager } from "../subnet/manager.ts";
import {
  Registry,
  type Counter,
  type CounterSeries,
  type Gauge,
  type Histogram,
  type HistogramSeries,
} from "./registry.ts";

/** What the reconciler reports about itself. */
export interface ReconcileMetrics {
  /** One pass of `loop` ("vxlan", "host-gw", ...) took `seconds`. */
  observePass(loop: string, seconds: number): void;
  /** A pass re-created an entry that had been programmed before and went missing (kind: route, neighbour, fdb, device, stale). */
  countRepair(kind: string, n?: number): void;
}

export interface Metrics extends ReconcileMetrics {
  readonly registry: Registry;
  readonly leases: Gauge;
  readonly leaseEvents: Counter;
  readonly kernelOps: Counter;
  readonly kernelFailures: Counter;
  readonly repairs: Counter;
  readonly resyncSeconds: Histogram;
  readonly leaseExpiry: Gauge;
  /** The registry as Prometheus text. */
  render(): string;
}

/** Seconds; a pass is usually well under a millisecond, thousands of peers take tens of milliseconds. */
export const RESYNC_BUCKETS = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];

export function createMetrics(): Metrics {
  const registry = new Registry();
  const leases = registry.gauge("flannel_leases", "Leases of other nodes currently known to this node");
  const leaseEvents = registry.counter(
    "flannel_lease_events_total",
    "Lease events handled (snapshot: a full re-list)",
    ["type"],
  );
  const kernelOps = registry.counter(
    "flannel_kernel_operations_total",
    "Kernel writes made (routes, neighbours, FDB entries, links, addresses, sysctls)",
    ["op"],
  );
  const kernelFailures = registry.counter(
    "flannel_kernel_operation_failures_total",
    "Kernel writes that failed",
    ["op"],
  );
  const repairs = registry.counter(
    "flannel_repairs_total",
    "Entries re-created or removed because the kernel drifted from the desired state",
    ["kind"],
  );
  const resyncSeconds = registry.histogram(
    "flannel_resync_duration_seconds",
    "Duration of one reconcile pass (desired vs actual kernel state)",
    RESYNC_BUCKETS,
    ["loop"],
  );
  const leaseExpiry = registry.gauge(
    "flannel_lease_expiry_timestamp_seconds",
    "When this node's own lease expires (Unix time); absent for leases without expiry",
  );
  // Every reconcile pass reports its duration: one bound series per loop.
  const passSeries = new Map<string, HistogramSeries>();
  return {
    registry,
    leases,
    leaseEvents,
    kernelOps,
    kernelFailures,
    repairs,
    resyncSeconds,
    leaseExpiry,
    render: () => registry.render(),
    observePass: (loop, seconds) => {
      let h = passSeries.get(loop);
      if (h === undefined) {
        h = resyncSeconds.labels({ loop });
        passSeries.set(loop, h);
      }
      h.observe(seconds);
    },
    countRepair: (kind, n = 1) => repairs.inc({ kind }, n),
  };
}

/** The kernel port methods that change state, by port; reads are not counted. */
const WRITES: Record<string, readonly string[]> = {
  links: ["addVxlan", "addBridge", "delete", "setUp", "setMtu", "setMac"],
  addrs: ["add", "delete"],
  routes: ["replace", "delete"],
  neighbours: ["replace", "delete"],
  fdb: ["replace", "delete"],
  sysctl: ["set"],
};

/**
 * Wraps the write methods of `kernel`'s ports in place so that each call counts in `kernel_operations_total`
 * (label `op` = `routes.replace`, ...) and each throw in `kernel_operation_failures_total`. Returns `kernel`.
 * Idempotent: a kernel is wrapped at most once.
 */
export function instrumentKernel<K extends Kernel>(kernel: K, metrics: Metrics): K {
  const marked = kernel as K & { [INSTRUMENTED]?: true };
  if (marked[INSTRUMENTED]) return kernel;
  // A batch may be carried out through the port methods (FakeKernel) or not (netlink): count it once, per write.
  let inBatch = false;
  const counters = new Map<string, OpCounters>();
  const countersOf = (op: string): OpCounters => {
    let c = counters.get(op);
    if (c === undefined) {
      c = { ops: metrics.kernelOps.labels({ op }), failures: metrics.kernelFailures.labels({ op }) };
      counters.set(op, c);
    }
    return c;
  };
  for (const [port, methods] of Object.entries(WRITES)) {
    const target = (kernel as unknown as Record<string, Record<string, unknown>>)[port];
    if (!target) continue;
    for (const m of methods) {
      const orig = target[m];
      if (typeof orig !== "function") continue;
      const c = countersOf(`${port}.${m}`);
      target[m] = function (this: unknown, ...args: unknown[]): unknown {
        if (inBatch) return (orig as (...a: unknown[]) => unknown).apply(target, args);
        c.ops.inc();
        try {
          return (orig as (...a: unknown[]) => unknown).apply(target, args);
        } catch (err) {
          c.failures.inc();
          throw err;
        }
      };
    }
  }
  // Batched writes (Kernel.batch) bypass the port methods: count them per write with the same labels.
  const batch = kernel.batch;
  if (typeof batch === "function") {
    const byKind = new Map<KernelWrite["op"], OpCounters>();
    for (const [kind, op] of Object.entries(BATCH_OP)) byKind.set(kind as KernelWrite["op"], countersOf(op));
    kernel.batch = (writes) => {
      inBatch = true;
      let results: ReturnType<typeof batch>;
      try {
        results = batch.call(kernel, writes);
      } finally {
        inBatch = false;
      }
      for (let i = 0; i < writes.length; i++) {
        const c = byKind.get((writes[i] as KernelWrite).op) as OpCounters;
        c.ops.inc();
        if (results[i] !== undefined) c.failures.inc();
      }
      return results;
    };
  }
  Object.defineProperty(marked, INSTRUMENTED, { value: true });
  return kernel;
}

/** The port-method label of each batched write kind. */
const BATCH_OP: Record<KernelWrite["op"], string> = {
  "neigh-replace": "neighbours.replace",
  "neigh-delete": "neighbours.delete",
  "fdb-replace": "fdb.replace",
  "fdb-delete": "fdb.delete",
  "route-replace": "routes.replace",
  "route-delete": "routes.delete",
};

const INSTRUMENTED = Symbol("flannel-ts.metrics.instrumented");

/** The two counters of one kernel operation, bound once. */
interface OpCounters {
  ops: CounterSeries;
  failures: CounterSeries;
}

/**
 * A lease's identity for counting: its IPv4 subnet, or its IPv6 one when it has only that (no two leases
 * share either). The IpNet's own text, so that 10,000 known leases cost no string of their own.
 */
function leaseKey(l: Lease): string {
  return String(l.subnet ?? l.ipv6Subnet);
}

/**
 * Returns a SubnetManager that behaves as `sm` and counts: lease events (`type` added/removed/snapshot),
 * the number of other nodes' leases, and the own lease's expiry (from acquisition and from the renewals
 * the watch reports).
 */
export function instrumentSubnetManager(sm: SubnetManager, metrics: Metrics): SubnetManager {
  let own: Lease | undefined;
  const known = new Set<string>();
  const setExpiry = (l: Lease): void => {
    if (l.expiration !== null) metrics.leaseExpiry.set(Math.floor(l.expiration.getTime() / 1000));
  };
  const isOwn = (l: Lease): boolean =>
    own !== undefined &&
    ((own.subnet !== null && own.subnet.equals(l.subnet)) ||
      (own.ipv6Subnet !== null && own.ipv6Subnet.equals(l.ipv6Subnet)));
  const events = {
    snapshot: metrics.leaseEvents.labels({ type: "snapshot" }),
    added: metrics.leaseEvents.labels({ type: "added" }),
    removed: metrics.leaseEvents.labels({ type: "removed" }),
  };
  const observe = (r: LeaseWatchResult): void => {
    if ("snapshot" in r) {
      events.snapshot.inc();
      known.clear();
      for (const l of r.snapshot) {
        if (isOwn(l)) setExpiry(l);
        else known.add(leaseKey(l));
      }
    } else {
      for (const e of r.events) {
        events[e.type].inc();
        if (isOwn(e.lease)) {
          if (e.type === "added") setExpiry(e.lease);
          continue;
        }
        if (e.type === "added") known.add(leaseKey(e.lease));
        else known.delete(leaseKey(e.lease));
      }
    }
    metrics.leases.set(known.size);
  };
  const wrapped: SubnetManager = {
    name: () => sm.name(),
    getNetworkConfig: (signal) => sm.getNetworkConfig(signal),
    acquireLease: async (attrs, signal) => {
      const lease = await sm.acquireLease(attrs, signal);
      own = lease;
      setExpiry(lease);
      return lease;
    },
    async *watchLeases(signal) {
      for await (const results of sm.watchLeases(signal)) {
        for (const r of results) observe(r);
        yield results;
      }
    },
    completeLease: (lease, signal) => sm.completeLease(lease, signal),
    getStoredMacAddresses: (signal) => sm.getStoredMacAddresses(signal),
    getStoredPublicIp: (signal) => sm.getStoredPublicIp(signal),
  };
  if (sm.close) wrapped.close = () => sm.close?.();
  return wrapped;
}
