// The lab's layout, computed up front and pure: names, addresses and files for every namespace, plus the
// network config and CNI conflist each node gets. Nothing here touches the system, so it is unit-tested.
//
// Layout (prefix P, underlay 192.168.250.0/24 by default):
//   P-ul            underlay namespace: bridge br0 = .1 (etcd listens there), veth ve-n<i> per node
//   P-n<i>          node i: eth0 = .(10+i), ip_forward=1, flanneld, cni0 from the bridge plugin
//   P-n<i>-p<j>     pod j of node i: eth0 from the bridge plugin
// Interface names are fixed and short because each lives in its own namespace; only namespace names carry
// the prefix (they are files under /run/netns, without the 15-character limit of interface names).

import { join } from "node:path";
import { FlannelError } from "../../errors.ts";
import { IpNet } from "../../ip/net.ts";

export const DEFAULT_NETWORK = "10.244.0.0/16";
export const DEFAULT_UNDERLAY_CIDR = "192.168.250.0/24";
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
  network: string;
  backend: string;
  nodes: NodePlan[];
}

export interface PlanInput {
  prefix: string;
  stateDir: string;
  nodes: number;
  podsPerNode: number;
  backend: string;
  network?: string;
  underlayCidr?: string;
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
  const network = input.network ?? DEFAULT_NETWORK;
  const net = IpNet.tryParse(network);
  if (net === undefined || net.family !== 4) {
    throw new FlannelError(
      "LAB_OPTIONS",
      `Invalid pod network ${network}: expected an IPv4 CIDR such as 10.244.0.0/16`,
    );
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
  if (ul.overlaps(net)) {
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
    network: net.toString(),
    backend: input.backend,
    nodes,
  };
}

/** The value for etcd's `<prefix>/config` key (net-conf.json, §2). */
export function networkConfigJson(network: string, backend: string): string {
  return JSON.stringify({ Network: network, Backend: { Type: backend } });
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
