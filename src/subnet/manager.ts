// The SubnetManager port (upstream pkg/subnet/subnet.go Manager): where leases come from. Implemented by
// the etcd manager (etcd/) and the Kubernetes manager (kube/).

import type { NetworkConfig } from "../config/network-config.ts";
import type { IpAddr } from "../ip/addr.ts";
import type { Lease, LeaseAttrs, LeaseWatchResult } from "../lease/lease.ts";

export interface SubnetManager {
  /** e.g. `Etcd Local Manager with Previous Subnet: 10.244.1.0/24` or `Kubernetes Subnet Manager - node1`. */
  name(): string;
  /** The current network config; etcd mode validates it (checkNetworkConfig) and throws its message. */
  getNetworkConfig(signal: AbortSignal): Promise<NetworkConfig>;
  /** Leases (or re-leases) this node's subnet. */
  acquireLease(attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease>;
  /**
   * All leases, as a snapshot first and then batches of events, until `signal` aborts. Each yielded array
   * holds everything that arrived since the consumer last pulled, so the consumer can handle it in one pass.
   * Never ends on a dropped connection: it reconnects and sends a fresh snapshot where needed.
   */
  watchLeases(signal: AbortSignal): AsyncIterable<LeaseWatchResult[]>;
  /**
   * Keeps the lease alive (etcd: renews before expiry; kube: marks the node's network available) until
   * `signal` aborts ("interrupted") or the lease is removed by someone else ("revoked").
   */
  completeLease(lease: Lease, signal: AbortSignal): Promise<"interrupted" | "revoked">;
  /** VTEP MACs stored for this node (kube: backend-data annotations); empty in etcd mode. */
  getStoredMacAddresses(signal: AbortSignal): Promise<{ v4?: string; v6?: string }>;
  /** Public IPs stored for this node (kube: node-public-ip annotations); empty in etcd mode. */
  getStoredPublicIp(signal: AbortSignal): Promise<{ v4?: IpAddr; v6?: IpAddr }>;
  /** Releases connections (etcd client, watches); the manager is unusable afterwards. */
  close?(): void | Promise<void>;
}
