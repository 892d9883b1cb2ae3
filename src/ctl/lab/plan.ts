// The lab's layout, computed up front and pure: names, addresses and files for every namespace, plus the
// network config and CNI conflist each node gets. Nothing here touches the system, so it is unit-tested.
//
// Layout (prefix P, underlay 192.168.250.0/24 by default):
//   P-ul            underlay namespace: bridge br0 = .1 (etcd listens there), veth ve-n<i> per node
//   P-n<i>          node i: eth0 = .(10+i), ip_forward=1, flanneld, cni0 from the bridge plugin
//   P-n<i>-p<j>     pod j of node i: eth0 from the bridge plugin
// With an IPv6 pod network (`ipv6Network`) the underlay is dual-stack: fd00:250::1/64 on br0 and
// fd00:250::(10+i)/64 on each node's eth0 (added `nodad`, so they are usable at once); etcd stays on IPv4.
// Interface names are fixed and short because each lives in its own namespace; only namespace names carry
// the prefix (they are files under /run/netns, without the 15-character limit of interface names).

import { join } from "node:path";
import { FlannelError } from "../../errors.ts";
import { IpNet } from "../../ip/net.ts";

export const DEFAULT_NETWORK = "10.244.0.0/16";
export const DEFAULT_UNDERLAY_CIDR = "192.168.250.0/24";
export const DEFAULT_UNDERLAY_V6_CIDR = "fd00:250::/64";
export const ETCD_CLIENT_PORT = 2379;
export const ETCD_PEER_PORT = 2380;
export const MAX_NODES = 200;
export const MAX_PODS_PER_NODE = 50;

export interface PodPlan {
  name: string;
  ns: string;
  containerId: string;
  ifName: string;
}

export interface NodePlan {
  index: number;
  name: string;
  ns: string;
  /** The veth end in the underlay namespace. */
  underlayVeth: string;
  /** e.g. 192.168.250.11/24 */
  underlayAddr: string;
  underlayIp: string;
  /** e.g. fd00:250::11/64; only with an IPv6 pod network. */
  underlayAddr6?: string;
  underlayIp6?: string;
  dir: string;
  subnetFile: string;
  /** Where the flannel CNI plugin keeps delegate confs (its `dataDir`). */
  cniDataDir: string;
  /** host-local's store; per node, because all nodes share one filesystem here. */
  ipamDataDir: string;
  logFile: string;
  pods: PodPlan[];
}

export interface LabPlan {
  prefix: string;
  stateDir: string;
  underlayNs: string;
  bridge: string;
  underlayCidr: string;
  bridgeAddr: string;
  bridgeIp: string;
  etcdEndpoint: string;
  etcdDataDir: string;
  etcdLog: string;
  /** IPv4 pod network; null for an IPv6-only cluster. */
  network: string | null;
  /** IPv6 pod network; null without IPv6. */
  ipv6Network: string | null;
  /** Set with an IPv6 pod network: the underlay's IPv6 CIDR and br0's address in it. */
  underlayV6Cidr: string | null;
  bridgeAddr6: string | null;
  enableNftables: boolean;
  backend: string;
  nodes: NodePlan[];
}

export interface PlanInput {
  prefix: string;
  stateDir: string;
  nodes: number;
  podsPerNode: number;
  backend: string;
  /** IPv4 pod network (default 10.244.0.0/16); null: IPv6-only. */
  network?: string | null;
  /** IPv6 pod network (e.g. fd00:10:244::/56); enables IPv6 in net-conf and an IPv6 underlay. */
  ipv6Network?: string | null;
  underlayCidr?: string;
  underlayV6Cidr?: string;
  /** `EnableNFTables` in net-conf. */
  enableNftables?: boolean;
}

function checkCount(what: string, n: number, min: number, max: number): void {
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new FlannelError(
      "LAB_OPTIONS",
      `Invalid ${what} ${n}: must be a whole number from ${min} to ${max}`,
    );
  }
}

/** Computes the whole layout; throws a FlannelError (code LAB_OPTIONS) on impossible options. */
export function planLab(input: PlanInput): LabPlan {
  checkCount("node count", input.nodes, 1, MAX_NODES);
  checkCount("pods per node", input.podsPerNode, 0, MAX_PODS_PER_NODE);
  if (!/^[a-z][a-z0-9-]{0,11}$/.test(input.prefix)) {
    throw new FlannelError(
      "LAB_OPTIONS",
      `Invalid lab prefix ${JSON.stringify(input.prefix)}: use 1 to 12 lower-case letters, digits or '-', starting with a letter`,
    );
  }
  const network = input.network === undefined ? DEFAULT_NETWORK : input.network;
  const net = network === null ? null : IpNet.tryParse(network);
  if (net === undefined || (net !== null && net.family !== 4)) {
    throw new FlannelError(
      "LAB_OPTIONS",
      `Invalid pod network ${String(network)}: expected an IPv4 CIDR such as 10.244.0.0/16`,
    );
  }
  const ipv6Network = input.ipv6Network ?? null;
  const net6 = ipv6Network === null ? null : IpNet.tryParse(ipv6Network);
  if (net6 === undefined || (net6 !== null && net6.family !== 6)) {
    throw new FlannelError(
      "LAB_OPTIONS",
      `Invalid IPv6 pod network ${String(ipv6Network)}: expected an IPv6 CIDR such as fd00:10:244::/56`,
    );
  }
  if (net === null && net6 === null) {
    throw new FlannelError("LAB_OPTIONS", "No pod network: give an IPv4 network, an IPv6 network or both");
  }
  let ul6: IpNet | null = null;
  if (net6 !== null) {
    const text6 = input.underlayV6Cidr ?? DEFAULT_UNDERLAY_V6_CIDR;
    const parsed = IpNet.tryParse(text6);
    if (parsed === undefined || parsed.family !== 6 || parsed.size < BigInt(input.nodes + 12)) {
      throw new FlannelError(
        "LAB_OPTIONS",
        `Invalid IPv6 underlay CIDR ${text6}: expected an IPv6 CIDR with room for the nodes, such as ${DEFAULT_UNDERLAY_V6_CIDR}`,
      );
    }
    if (parsed.overlaps(net6)) {
      throw new FlannelError(
        "LAB_OPTIONS",
        `IPv6 underlay ${parsed.toString()} overlaps the IPv6 pod network ${net6.toString()}: choose CIDRs that do not overlap`,
      );
    }
    ul6 = parsed;
  }
  const underlayText = input.underlayCidr ?? DEFAULT_UNDERLAY_CIDR;
  const ul = IpNet.tryParse(underlayText);
  if (ul === undefined || ul.family !== 4) {
    throw new FlannelError(
      "LAB_OPTIONS",
      `Invalid underlay CIDR ${underlayText}: expected an IPv4 CIDR such as ${DEFAULT_UNDERLAY_CIDR}`,
    );
  }
  // .1 is the bridge, nodes start at .11; the last address is broadcast.
  if (ul.size < BigInt(input.nodes + 12)) {
    throw new FlannelError(
      "LAB_OPTIONS",
      `Underlay ${ul.toString()} is too small for ${input.nodes} nodes: use a larger CIDR (nodes start at .11)`,
    );
  }
  if (net !== null && ul.overlaps(net)) {
    throw new FlannelError(
      "LAB_OPTIONS",
      `Underlay ${ul.toString()} overlaps the pod network ${net.toString()}: choose CIDRs that do not overlap`,
    );
  }
  const p = input.prefix;
  const bridgeIp = ul.ip.add(1).toString();
  const nodes: NodePlan[] = [];
  for (let i = 1; i <= input.nodes; i++) {
    const dir = join(input.stateDir, `node${i}`);
    const underlayIp = ul.ip.add(10 + i).toString();
    const underlayIp6 = ul6?.ip.add(10 + i).toString();
    const pods: PodPlan[] = [];
    for (let j = 1; j <= input.podsPerNode; j++) {
      pods.push({
        name: `node${i}-pod${j}`,
        ns: `${p}-n${i}-p${j}`,
        containerId: `${p}-n${i}-p${j}`,
        ifName: "eth0",
      });
    }
    nodes.push({
      index: i,
      name: `node${i}`,
      ns: `${p}-n${i}`,
      underlayVeth: `ve-n${i}`,
      underlayAddr: `${underlayIp}/${ul.prefixLen}`,
      underlayIp,
      ...(ul6 && underlayIp6 !== undefined
        ? { underlayAddr6: `${underlayIp6}/${ul6.prefixLen}`, underlayIp6 }
        : {}),
      dir,
      subnetFile: join(dir, "subnet.env"),
      cniDataDir: join(dir, "cni"),
      ipamDataDir: join(dir, "ipam"),
      logFile: join(dir, "flanneld.log"),
      pods,
    });
  }
  return {
    prefix: p,
    stateDir: input.stateDir,
    underlayNs: `${p}-ul`,
    bridge: "br0",
    underlayCidr: ul.toString(),
    bridgeAddr: `${bridgeIp}/${ul.prefixLen}`,
    bridgeIp,
    etcdEndpoint: `http://${bridgeIp}:${ETCD_CLIENT_PORT}`,
    etcdDataDir: join(input.stateDir, "etcd"),
    etcdLog: join(input.stateDir, "etcd.log"),
    network: net?.toString() ?? null,
    ipv6Network: net6?.toString() ?? null,
    underlayV6Cidr: ul6?.toString() ?? null,
    bridgeAddr6: ul6 ? `${ul6.ip.add(1).toString()}/${ul6.prefixLen}` : null,
    enableNftables: input.enableNftables ?? false,
    backend: input.backend,
    nodes,
  };
}

/**
 * The value for etcd's `<prefix>/config` key (net-conf.json, §2): `Network` for IPv4; `EnableIPv6` and
 * `IPv6Network` for IPv6 (with `EnableIPv4: false` when there is no IPv4 network); `EnableNFTables` if asked.
 */
export function networkConfigJson(
  network: string | null,
  backend: string,
  more: { ipv6Network?: string | null; enableNftables?: boolean } = {},
): string {
  const conf: Record<string, unknown> = {};
  if (network === null) conf.EnableIPv4 = false;
  else conf.Network = network;
  if (more.ipv6Network) {
    conf.EnableIPv6 = true;
    conf.IPv6Network = more.ipv6Network;
  }
  if (more.enableNftables) conf.EnableNFTables = true;
  conf.Backend = { Type: backend };
  return JSON.stringify(conf);
}

/** networkConfigJson for a planned lab. */
export function labNetworkConfigJson(plan: LabPlan): string {
  return networkConfigJson(plan.network, plan.backend, {
    ipv6Network: plan.ipv6Network,
    enableNftables: plan.enableNftables,
  });
}

/**
 * The conflist a node's pods are attached with: the stock manifest's cni-conf.json (§9) plus the per-node
 * `subnetFile`/`dataDir` and host-local `dataDir`, which every real node gets for free from having its own
 * filesystem. portmap is left out: it needs port mappings to do anything and would add iptables state.
 */
export function flannelConflist(node: NodePlan): CniConflist {
  return {
    name: "cbr0",
    cniVersion: "0.3.1",
    plugins: [
      {
        type: "flannel",
        subnetFile: node.subnetFile,
        dataDir: node.cniDataDir,
        ipam: { dataDir: node.ipamDataDir },
        delegate: { hairpinMode: true, isDefaultGateway: true },
      },
    ],
  };
}

export interface CniConflist {
  name: string;
  cniVersion: string;
  plugins: Record<string, unknown>[];
}

/** flanneld's argv after the command: upstream flag syntax, one node of the lab. */
export function flanneldArgs(plan: LabPlan, node: NodePlan, extra: readonly string[] = []): string[] {
  return [
    `--etcd-endpoints=${plan.etcdEndpoint}`,
    "--iface=eth0",
    "--ip-masq",
    `--subnet-file=${node.subnetFile}`,
    ...extra,
  ];
}
