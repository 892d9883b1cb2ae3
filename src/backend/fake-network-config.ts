// A NetworkConfig for backend tests, so each backend's tests state only what differs: the cluster network
// 10.244.0.0/16 with /24 subnets, IPv4 only, iptables, and `Backend: { Type: type, ...backend }`.

import type { NetworkConfig } from "../config/network-config.ts";
import { IpNet } from "../ip/net.ts";

export function fakeNetworkConfig(
  type: string,
  backend: Record<string, unknown> = {},
  over: Partial<NetworkConfig> = {},
): NetworkConfig {
  return {
    enableIpv4: true,
    enableIpv6: false,
    enableNftables: false,
    network: IpNet.parse("10.244.0.0/16"),
    ipv6Network: null,
    subnetLen: 24,
    subnetMin: null,
    subnetMax: null,
    ipv6SubnetLen: 0,
    ipv6SubnetMin: null,
    ipv6SubnetMax: null,
    backendType: type,
    backend: { Type: type, ...backend },
    ...over,
  };
}
