// The network configuration (net-conf.json, or the etcd key <prefix>/config) as a typed value.
// parseConfig / checkNetworkConfig (config.ts) produce it with upstream's defaults, rules and error texts.

import type { IpAddr } from "../ip/addr.ts";
import type { IpNet } from "../ip/net.ts";

export interface NetworkConfig {
  enableIpv4: boolean;
  enableIpv6: boolean;
  enableNftables: boolean;
  /** IPv4 cluster network (masked); null when unset. */
  network: IpNet | null;
  ipv6Network: IpNet | null;
  /** 0 until checkNetworkConfig computes the default. */
  subnetLen: number;
  subnetMin: IpAddr | null;
  subnetMax: IpAddr | null;
  ipv6SubnetLen: number;
  ipv6SubnetMin: IpAddr | null;
  ipv6SubnetMax: IpAddr | null;
  /** Lower-cased `Backend.Type`; "udp" when `Backend` is absent (upstream's code default). */
  backendType: string;
  /**
   * The `Backend` object as parsed JSON (keys as written; backends look fields up case-insensitively with
   * `getField`). Empty object when absent.
   */
  backend: Record<string, unknown>;
}
