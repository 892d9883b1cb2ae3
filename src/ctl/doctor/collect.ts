// Collects NodeFacts from the live node: kernel state through the kernel ports (of the network namespace
// this process runs in), files, `iptables -S` / `nft list tables`, and — when given — the leases from etcd
// or the Kubernetes API. Reading only: the one write-like call is an empty strategic-merge patch of the
// node's status, the cheapest way to learn whether flanneld's service account may patch it (it changes
// nothing).
//
// Every source is collected independently; a failing source becomes an `error` in its fact so the checks
// can say what could not be looked at instead of the whole command failing.

import { lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../../errors.ts";
import type { CommandRunner } from "../../kernel/command.ts";
import { NUD_PERMANENT, type Kernel } from "../../kernel/ports.ts";
import type { Lease } from "../../lease/lease.ts";
import type { Logger } from "../../log/logger.ts";
import { parseDotenv } from "../../subnet/subnet-env.ts";
import type {
  CniConfFact,
  FdbFact,
  IptablesFact,
  KubeFact,
  LeaseFact,
  LeasesFact,
  LinkFact,
  NeighbourFact,
  NftFact,
  NodeFacts,
  ProbeFact,
  RouteFact,
  SubnetEnvFact,
} from "./facts.ts";
import { kubeNodesToLeases } from "./checks.ts";

export interface KernelFacts {
  links: LinkFact[];
  routes: RouteFact[];
  neighbours: NeighbourFact[];
  fdb: FdbFact[];
}

/** Links (with addresses), IPv4 routes of the main table, IPv4 neighbours and FDB entries with a remote. */
export function collectKernelFacts(kernel: Kernel): KernelFacts {
  const links = kernel.links.list();
  const name = (i: number | undefined): string | undefined =>
    i === undefined ? undefined : links.find((l) => l.index === i)?.name;
  const addrs = kernel.addrs.list();
  const linkFacts: LinkFact[] = links.map((l) => {
    const lf: LinkFact = {
      name: l.name,
      index: l.index,
      kind: l.kind,
      mtu: l.mtu,
      up: l.up,
      masterIndex: l.masterIndex,
      mac: l.mac,
      addrs: addrs
        .filter((a) => a.linkIndex === l.index && !(a.addr.family === 6 && a.addr.ip.isLinkLocalUnicast))
        .map((a) => a.addr.toString()),
    };
    if (l.vxlan) {
      lf.vxlan = {
        vni: l.vxlan.vni,
        local: l.vxlan.local?.toString() ?? null,
        vtepIndex: l.vxlan.vtepIndex,
        port: l.vxlan.port,
      };
    }
    return lf;
  });
  const routes: RouteFact[] = kernel.routes.list({ family: 4 }).map((r) => {
    const rf: RouteFact = { dst: r.dst?.toString() ?? "default" };
    if (r.gw) rf.gw = r.gw.toString();
    const dev = name(r.linkIndex);
    if (dev !== undefined) rf.dev = dev;
    if (r.onlink) rf.onlink = true;
    if (r.type && r.type !== "unicast") rf.type = r.type;
    return rf;
  });
  const neighbours: NeighbourFact[] = kernel.neighbours.list({ family: 4 }).map((n) => ({
    dev: name(n.linkIndex) ?? String(n.linkIndex),
    ip: n.ip.toString(),
    mac: n.mac,
    permanent: (n.state & NUD_PERMANENT) !== 0,
  }));
  const fdb: FdbFact[] = kernel.fdb
    .list({})
    .filter((e) => e.dst !== null)
    .map((e) => ({
      dev: name(e.linkIndex) ?? String(e.linkIndex),
      mac: e.mac,
      dst: e.dst?.toString() ?? null,
    }));
  return { links: linkFacts, routes, neighbours, fdb };
}

export function readSubnetEnvFact(path: string): SubnetEnvFact {
  try {
    const text = readFileSync(path, "utf8");
    return { path, state: "ok", values: Object.fromEntries(parseDotenv(text)) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { path, state: "missing" };
    return { path, state: "unreadable", error: errorMessage(err) };
  }
}

export function readCniConfFact(dir: string): CniConfFact {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { dir, state: "missing", entries: [] };
    return { dir, state: "unreadable", entries: [], error: errorMessage(err) };
  }
  const entries = names.map((n) => {
    const p = join(dir, n);
    try {
      const st = lstatSync(p);
      const type = st.isDirectory() ? "dir" : st.isFile() ? "file" : "other";
      const e: CniConfFact["entries"][number] = { name: n, type, size: st.size };
      if (type === "file" && st.size <= 64 * 1024) e.content = readFileSync(p, "utf8");
      return e;
    } catch {
      return { name: n, type: "other" as const, size: 0 };
    }
  });
  return { dir, state: "ok", entries };
}

async function lines(
  runner: CommandRunner,
  file: string,
  args: string[],
): Promise<{ lines?: string[]; error?: string }> {
  try {
    const r = await runner.run(file, args);
    if (r.code !== 0) return { error: `${file} ${args.join(" ")}: ${r.stderr.trim() || `exit ${r.code}`}` };
    return { lines: r.stdout.split("\n").filter((l) => l.trim() !== "") };
  } catch (err) {
    return { error: `${file}: ${errorMessage(err)}` };
  }
}

export async function collectIptables(runner: CommandRunner): Promise<IptablesFact> {
  const filter = await lines(runner, "iptables", ["-w", "5", "-S"]);
  const nat = await lines(runner, "iptables", ["-w", "5", "-t", "nat", "-S"]);
  const out: IptablesFact = {};
  if (filter.lines) out.filter = filter.lines;
  if (nat.lines) out.nat = nat.lines;
  const error = filter.error ?? nat.error;
  if (error !== undefined) out.error = error;
  return out;
}

export async function collectNft(runner: CommandRunner): Promise<NftFact> {
  const r = await lines(runner, "nft", ["list", "tables"]);
  return r.lines ? { tables: r.lines.map((l) => l.replace(/^table\s+/, "").trim()) } : {};
}

export function leaseToFact(l: Lease): LeaseFact {
  const f: LeaseFact = {
    subnet: l.subnet?.toString() ?? "",
    publicIp: l.attrs.publicIp.toString(),
    backendType: l.attrs.backendType,
  };
  if (l.ipv6Subnet) f.ipv6Subnet = l.ipv6Subnet.toString();
  if (l.expiration) f.expiration = l.expiration.toISOString();
  if (l.attrs.backendData) {
    try {
      const d = JSON.parse(l.attrs.backendData) as { VtepMAC?: string; VNI?: number } | null;
      if (d?.VtepMAC) f.vtepMac = d.VtepMAC;
      if (typeof d?.VNI === "number") f.vni = d.VNI;
    } catch {
      // not JSON: leave it out
    }
  }
  return f;
}

export interface EtcdSource {
  endpoints: string[];
  prefix: string;
  keyFile?: string;
  certFile?: string;
  caFile?: string;
  username?: string;
  password?: string;
}

export async function collectEtcdLeases(src: EtcdSource, logger: Logger): Promise<LeasesFact> {
  const from = src.endpoints.join(",");
  const { EtcdRegistry } = await import("../../subnet/etcd/registry.ts");
  const reg = new EtcdRegistry({ ...src, logger, callTimeoutMs: 5000 });
  try {
    const fact: LeasesFact = { source: "etcd", from, leases: [] };
    try {
      const cfg = JSON.parse(await reg.getNetworkConfig()) as Record<string, unknown>;
      const key = Object.keys(cfg).find((k) => k.toLowerCase() === "network");
      if (key !== undefined && typeof cfg[key] === "string") fact.network = cfg[key];
    } catch {
      // the config is checked by flanneld itself; the leases are what matter here
    }
    const { leases } = await reg.getSubnets();
    fact.leases = leases.map(leaseToFact);
    return fact;
  } catch (err) {
    return { source: "etcd", from, leases: [], error: errorMessage(err) };
  } finally {
    reg.close();
  }
}

export interface KubeSource {
  kubeApiUrl: string;
  kubeconfigFile: string;
  /** This node (NODE_NAME); needed for the `get nodes/<n>` and `patch nodes/status` probes. */
  nodeName?: string;
  /** flanneld's own pod, for the `get pods` probe (POD_NAMESPACE/POD_NAME). */
  pod?: { namespace: string; name: string };
  annotationPrefix?: string;
}

export async function collectKube(
  src: KubeSource,
  logger: Logger,
): Promise<{ kube: KubeFact; leases?: LeasesFact }> {
  const k8s = await import("@kubernetes/client-node");
  const { buildKubeConfig, httpCode, kubeErrorMessage } = await import("../../subnet/kube/manager.ts");
  let server = src.kubeApiUrl || src.kubeconfigFile;
  const kube: KubeFact = { server, access: [], nodes: [] };
  let core: InstanceType<typeof k8s.CoreV1Api>;
  try {
    const kc = buildKubeConfig({
      kubeApiUrl: src.kubeApiUrl,
      kubeconfigFile: src.kubeconfigFile,
      env: process.env,
      logger,
    });
    server = kc.getCurrentCluster()?.server ?? server;
    kube.server = server;
    core = kc.makeApiClient(k8s.CoreV1Api);
  } catch (err) {
    kube.error = errorMessage(err);
    return { kube };
  }
  if (src.nodeName !== undefined) kube.nodeName = src.nodeName;
  const probe = async (action: string, fn: () => Promise<unknown>): Promise<unknown> => {
    try {
      const v = await fn();
      kube.access.push({ action, ok: true });
      return v;
    } catch (err) {
      const status = httpCode(err);
      if (status === undefined) throw err; // not an API answer: connection trouble
      const a: KubeFact["access"][number] = { action, ok: status !== 401 && status !== 403, status };
      a.message = kubeErrorMessage(err);
      kube.access.push(a);
      return undefined;
    }
  };
  try {
    if (src.pod) {
      const { namespace, name } = src.pod;
      await probe(`get pods (${namespace}/${name})`, () => core.readNamespacedPod({ name, namespace }));
    }
    const list = (await probe("list nodes", () => core.listNode())) as { items?: unknown[] } | undefined;
    if (src.nodeName !== undefined) {
      const name = src.nodeName;
      await probe(`get nodes (${name})`, () => core.readNode({ name }));
      await probe(`patch nodes/status (${name})`, () =>
        core.patchNodeStatus(
          { name, body: {} },
          k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.StrategicMergePatch),
        ),
      );
    }
    for (const item of (list?.items ?? []) as {
      metadata?: { name?: string; annotations?: Record<string, string> };
      spec?: { podCIDR?: string; podCIDRs?: string[] };
      status?: {
        addresses?: { type?: string; address?: string }[];
        conditions?: { type?: string; status?: string }[];
      };
    }[]) {
      const n: KubeFact["nodes"][number] = {
        name: item.metadata?.name ?? "",
        podCidrs: item.spec?.podCIDRs ?? [],
        annotations: item.metadata?.annotations ?? {},
      };
      if (item.spec?.podCIDR) n.podCidr = item.spec.podCIDR;
      const ip = item.status?.addresses?.find((a) => a.type === "InternalIP")?.address;
      if (ip) n.internalIp = ip;
      const cond = item.status?.conditions?.find((c) => c.type === "NetworkUnavailable")?.status;
      if (cond) n.networkUnavailable = cond;
      kube.nodes.push(n);
    }
  } catch (err) {
    kube.error = errorMessage(err);
    return { kube };
  }
  const canList = kube.access.find((a) => a.action === "list nodes")?.ok === true;
  if (!canList) return { kube };
  const leases: LeasesFact = {
    source: "kube",
    from: server,
    leases: kubeNodesToLeases(kube.nodes, src.annotationPrefix),
  };
  return { kube, leases };
}

/** `ping -c 1` each address once (in parallel); used to see whether other nodes' public IPs answer. */
export async function probeAddresses(runner: CommandRunner, ips: readonly string[]): Promise<ProbeFact[]> {
  return Promise.all(
    ips.map(async (ip) => {
      try {
        const r = await runner.run("ping", ["-c", "1", "-W", "2", ip]);
        return { ip, ok: r.code === 0 };
      } catch {
        return { ip, ok: false };
      }
    }),
  );
}

export interface CollectOptions {
  kernel: Kernel;
  commands: CommandRunner;
  logger: Logger;
  subnetFile: string;
  cniConfDir: string;
  node?: string;
  etcd?: EtcdSource;
  kube?: KubeSource;
  /** Ping other nodes' public IPs (default true when leases are known). */
  probe?: boolean;
}

export async function collectNodeFacts(o: CollectOptions): Promise<NodeFacts> {
  const k = collectKernelFacts(o.kernel);
  const sysctls: Record<string, string | undefined> = {};
  for (const p of ["net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"]) {
    try {
      sysctls[p] = o.kernel.sysctl.get(p);
    } catch {
      sysctls[p] = undefined;
    }
  }
  const facts: NodeFacts = {
    ...k,
    sysctls,
    subnetEnv: readSubnetEnvFact(o.subnetFile),
    cniConf: readCniConfFact(o.cniConfDir),
    iptables: await collectIptables(o.commands),
    nft: await collectNft(o.commands),
  };
  if (o.node !== undefined) facts.node = o.node;
  if (o.kube) {
    const { kube, leases } = await collectKube(o.kube, o.logger);
    facts.kube = kube;
    if (leases) facts.leases = leases;
  }
  if (o.etcd) facts.leases = await collectEtcdLeases(o.etcd, o.logger);
  if (o.probe !== false && facts.leases && !facts.leases.error) {
    const localIps = new Set(k.links.flatMap((l) => l.addrs.map((a) => a.split("/")[0])));
    const peers = [...new Set(facts.leases.leases.map((l) => l.publicIp))].filter((ip) => !localIps.has(ip));
    facts.probes = await probeAddresses(o.commands, peers);
  }
  return facts;
}
