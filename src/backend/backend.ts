// What the daemon knows of a backend (upstream pkg/backend/common.go): a Backend registers a Network, and a
// Network reports its lease and MTU and runs until aborted. Backends are looked up in an explicit map
// (registry.ts), never registered by import side effects.

import type { NetworkConfig } from "../config/network-config.ts";
import type { IpAddr } from "../ip/addr.ts";
import type { Kernel, Link } from "../kernel/ports.ts";
import type { Lease } from "../lease/lease.ts";
import type { Logger } from "../log/logger.ts";
import type { ReconcileMetrics } from "../metrics/metrics.ts";
import type { SubnetManager } from "../subnet/manager.ts";

/** The interface used for inter-host traffic, as chosen by interface selection. */
export interface ExternalInterface {
  iface: Link;
  /** The interface's own IPv4 / IPv6 address (null when the family is not in use). */
  ifaceAddr: IpAddr | null;
  ifaceV6Addr: IpAddr | null;
  /** The address advertised to peers: --public-ip(v6) when given, else the interface address. */
  extAddr: IpAddr | null;
  extV6Addr: IpAddr | null;
}

export interface BackendDeps {
  subnetManager: SubnetManager;
  extIface: ExternalInterface;
  kernel: Kernel;
  logger: Logger;
  /** flanneld's metrics; the reconcilers report pass durations and repairs here. */
  metrics?: ReconcileMetrics;
  /** The wireguard backend's private key file (WIREGUARD_KEY_FILE); default /run/flannel/wgkey. */
  wireguardKeyFile?: string;
  /**
   * Called once the backend has programmed its first snapshot of leases (its first reconcile pass). A
   * backend that has no such pass does not call it.
   */
  onSynced?: (() => void) | undefined;
}

export interface Network {
  lease(): Lease;
  /** The MTU pods should use (FLANNEL_MTU). */
  mtu(): number;
  /** Programs peers and keeps the kernel state right until `signal` aborts. */
  run(signal: AbortSignal): Promise<void>;
}

export interface Backend {
  /** Creates devices as needed and acquires this node's lease. */
  registerNetwork(config: NetworkConfig, signal: AbortSignal): Promise<Network>;
}

export type BackendFactory = (deps: BackendDeps) => Backend;
