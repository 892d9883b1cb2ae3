// The lease model shared by subnet managers, the lease watcher and backends (upstream pkg/lease/lease.go).
// A lease is one node's subnet (v4 and/or v6) plus the attributes it publishes for its peers.

import type { IpAddr } from "../ip/addr.ts";
import type { IpNet } from "../ip/net.ts";

export interface LeaseAttrs {
  /** IPv4 public address; 0.0.0.0 when unset (it is always present in the JSON). */
  publicIp: IpAddr;
  /** IPv6 public address; null when unset (JSON `null`). */
  publicIpv6: IpAddr | null;
  /** "" when absent (udp, alloc leases carry none). */
  backendType: string;
  /** Raw compact JSON text of BackendData, e.g. `{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}`; undefined when absent. */
  backendData?: string;
  backendV6Data?: string;
}

export interface Lease {
  enableIpv4: boolean;
  enableIpv6: boolean;
  subnet: IpNet | null;
  ipv6Subnet: IpNet | null;
  attrs: LeaseAttrs;
  /** When the lease expires; null for leases without a TTL (reservations). */
  expiration: Date | null;
  /** etcd mod revision (or Kubernetes resourceVersion as a number); 0 when unknown. */
  asof: number;
}

/** A lease's identity: both its subnets, as its etcd key names them. */
export function leaseIdentity(lease: Lease): string {
  return `${String(lease.subnet)}&${String(lease.ipv6Subnet)}`;
}

export type LeaseEventType = "added" | "removed";

export interface LeaseEvent {
  type: LeaseEventType;
  lease: Lease;
}

/** What a subnet manager's watch yields: either a full snapshot of all leases, or a batch of events. */
export type LeaseWatchResult = { snapshot: Lease[] } | { events: LeaseEvent[] };
