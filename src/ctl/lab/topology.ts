// What the lab looks like, as plain data that the CLI renders (and the state file keeps).

export interface PodInfo {
  name: string;
  ns: string;
  node: string;
  /** The pod's IPv4 address on eth0, without prefix length; undefined until attached. */
  ip?: string;
  /** The pod's IPv6 address on eth0 (clusters with an IPv6 pod network). */
  ipv6?: string;
}

export interface NodeInfo {
  name: string;
  ns: string;
  /** Address on eth0 in the underlay, e.g. 192.168.250.11/24. */
  underlayAddr: string;
  underlayIp: string;
  /** Address on eth0 in the IPv6 underlay (clusters with an IPv6 pod network). */
  underlayIp6?: string;
  /** FLANNEL_SUBNET from the node's subnet.env, e.g. 10.244.3.1/24; undefined until leased. */
  subnet?: string;
  /** FLANNEL_IPV6_SUBNET, e.g. fd00:10:244:3::1/64. */
  ipv6Subnet?: string;
  mtu?: number;
  subnetFile: string;
  flanneldPid?: number;
  flanneldLog?: string;
  pods: PodInfo[];
}

export interface LabTopology {
  prefix: string;
  backend: string;
  /** IPv4 pod network; null in an IPv6-only cluster. */
  network: string | null;
  ipv6Network?: string | null;
  underlayCidr: string;
  underlayNs: string;
  bridge: string;
  etcdEndpoint: string;
  stateDir: string;
  nodes: NodeInfo[];
}
