// What `flannelctl doctor` knows about a node and its cluster: plain data, collected once by collect.ts and
// judged by the pure checks in checks.ts. Keeping the two apart lets unit tests feed hand-written facts for
// every failure, and lets `--json` print exactly what the checks saw.
//
// Addresses and CIDRs are kept as text as the kernel/tools print them, so facts serialise as they are.

export interface LinkFact {
  name: string;
  index: number;
  /** "vxlan", "bridge", "veth", "tun", "" ... */
  kind: string;
  mtu: number;
  up: boolean;
  masterIndex: number;
  mac: string;
  /** Addresses with prefix length, both families, link-local IPv6 left out. */
  addrs: string[];
  vxlan?: { vni: number; local: string | null; vtepIndex: number; port: number };
}

export interface RouteFact {
  /** "10.244.2.0/24"; "default" for the default route. */
  dst: string;
  gw?: string;
  dev?: string;
  onlink?: boolean;
  type?: string;
}

export interface NeighbourFact {
  dev: string;
  ip: string;
  mac: string;
  permanent: boolean;
}

export interface FdbFact {
  dev: string;
  mac: string;
  dst: string | null;
}

export type FileState = "ok" | "missing" | "unreadable";

export interface SubnetEnvFact {
  path: string;
  state: FileState;
  /** Parsed variables (dotenv, as flanneld reads it back). */
  values?: Record<string, string>;
  error?: string;
}

export interface CniConfEntry {
  name: string;
  type: "file" | "dir" | "other";
  size: number;
  /** File content (only for files up to 64 KiB). */
  content?: string;
}

export interface CniConfFact {
  dir: string;
  state: FileState;
  entries: CniConfEntry[];
  error?: string;
}

export interface IptablesFact {
  /** `iptables -S` of the filter table, one line each; undefined when iptables is not usable. */
  filter?: string[];
  /** `iptables -t nat -S`. */
  nat?: string[];
  error?: string;
}

export interface NftFact {
  /** `nft list tables`, e.g. ["ip flannel-ipv4"]; undefined when nft is not usable. */
  tables?: string[];
}

export interface LeaseFact {
  subnet: string;
  ipv6Subnet?: string;
  publicIp: string;
  backendType: string;
  vtepMac?: string;
  vni?: number;
  /** ISO time; absent for leases without expiry. */
  expiration?: string;
  /** Kubernetes node name (kube mode). */
  node?: string;
}

export interface LeasesFact {
  source: "etcd" | "kube";
  /** Where they came from, e.g. the etcd endpoints. */
  from: string;
  leases: LeaseFact[];
  /** net-conf Network when known (etcd `<prefix>/config`). */
  network?: string;
  error?: string;
}

export interface KubeNodeFact {
  name: string;
  podCidr?: string;
  podCidrs: string[];
  annotations: Record<string, string>;
  internalIp?: string;
  /** status of the NetworkUnavailable condition ("True"/"False"), when present. */
  networkUnavailable?: string;
}

export interface KubeAccessFact {
  /** What flanneld does, e.g. "get pods", "list nodes", "patch nodes/status". */
  action: string;
  ok: boolean;
  /** HTTP status of a failure (403 RBAC, 401 credentials). */
  status?: number;
  message?: string;
}

export interface KubeFact {
  server: string;
  /** Connection-level failure (DNS, TLS, refused); then nothing else is known. */
  error?: string;
  nodeName?: string;
  access: KubeAccessFact[];
  nodes: KubeNodeFact[];
}

export interface ProbeFact {
  ip: string;
  /** Whether `ping -c 1` from this node got an answer. */
  ok: boolean;
}

export interface NodeFacts {
  /** The node's name as doctor knows it (flag, NODE_NAME or hostname). */
  node?: string;
  links: LinkFact[];
  /** IPv4 main-table routes. */
  routes: RouteFact[];
  neighbours: NeighbourFact[];
  fdb: FdbFact[];
  sysctls: Record<string, string | undefined>;
  subnetEnv: SubnetEnvFact;
  cniConf: CniConfFact;
  iptables: IptablesFact;
  nft: NftFact;
  leases?: LeasesFact;
  kube?: KubeFact;
  probes?: ProbeFact[];
}
