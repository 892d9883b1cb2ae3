// What the lab looks like, as plain data that the CLI renders (and the state file keeps).

export interface PodInfo {
  name: string;
  ns: string;
  node: string;
  /** The pod's IPv4 address on eth0, without prefix length; undefined until attached. */
  ip?: string;
}

export interface NodeInfo {
  name: string;
  ns: string;
  /** Address on eth0 in the underlay, e.g. 192.168.250.11/24. */
  underlayAddr: string;
  underlayIp: string;
  /** FLANNEL_SUBNET from the node's subnet.env, e.g. 10.244.3.1/24; undefined until leased. */
  subnet?: string;
  mtu?: number;
  subnetFile: string;
  flanneldPid?: number;
  flanneldLog?: string;
  pods: PodInfo[];
}

export interface LabTopology {
  prefix: string;
  backend: string;
  network: string;
  underlayCidr: string;
  underlayNs: string;
  bridge: string;
  etcdEndpoint: string;
  stateDir: string;
  nodes: NodeInfo[];
}
