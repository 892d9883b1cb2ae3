// The namespace lab: a whole flannel cluster on one machine, built from network namespaces.
//
// Design notes
// - Everything happens inside namespaces the lab creates (see plan.ts for the layout); the machine's own
//   namespace is never changed. Per cluster: 1 + N + N·K namespaces, 1 etcd, N flanneld processes.
// - Write-ahead state: each namespace, process and path is written to the state file *before* it is made
//   and completed right after, so `down()` — here, after a failure half way, after Ctrl-C, or in a later
//   process via `Lab.attach(stateDir)` — removes exactly what exists and never anything else (namespaces
//   are checked by inode, processes by PID + start time).
// - Long-lived processes are started detached with their output in a log file under the state dir, so
//   `--keep` leaves a working cluster behind and a later `down()` can still stop them.
// - A failure in `up()` tears everything down before rethrowing; the error names the step, the node and,
//   for a dying flanneld, the tail of its log (read before the log is removed).
// - The library never exits or prints: progress goes to the `onStep` callback; the CLI renders.
// - No setns: commands run in a namespace via `ip netns exec`, which keeps the PID (it execs).

import { flanneldCommand } from "../../cli/node-flags.ts";
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { FlannelError, errorMessage } from "../../errors.ts";
import { sleep } from "../../util/sleep.ts";
import { startLabEtcd, etcdPut } from "./etcd.ts";
import { exec, tryExec, tryExecAsync } from "./exec.ts";
import {
  ETCD_CLIENT_PORT,
  ETCD_PEER_PORT,
  flannelConflist,
  flanneldArgs,
  labNetworkConfigJson,
  planLab,
  type CniConflist,
  type LabPlan,
  type NodePlan,
} from "./plan.ts";
import { assertPreflight, type PreflightEnv } from "./preflight.ts";
import {
  isAlive,
  pauseProcess,
  resumeProcess,
  startDetached,
  stopProcess,
  tailFile,
  type ProcessRecord,
} from "./processes.ts";
import { namespaceInode, readState, statePath, writeState, type LabState } from "./state.ts";
import type { LabTopology, NodeInfo, PodInfo } from "./topology.ts";

export const ETCD_NETWORK_CONFIG_KEY = "/coreos.com/network/config";

export interface LabOptions {
  /** Namespace prefix: `flsb` for the sandbox, `fts-l…` in tests. */
  prefix: string;
  nodes: number;
  podsPerNode: number;
  backend: string;
  /** IPv4 pod network; default 10.244.0.0/16; null: IPv6-only. */
  network?: string | null;
  /** IPv6 pod network (dual stack, or IPv6-only with `network: null`); adds an IPv6 underlay. */
  ipv6Network?: string | null;
  /** `EnableNFTables: true` in the net-conf. */
  enableNftables?: boolean;
  /** Underlay network; default 192.168.250.0/24. */
  underlayCidr?: string;
  /** IPv6 underlay, used with `ipv6Network`; default fd00:250::/64. */
  underlayV6Cidr?: string;
  stateDir: string;
  /**
   * flanneld's command (its flags are appended); default `flanneldCommand(<repo>)`;
   * null: no flanneld.
   */
  flanneldCmd?: readonly string[] | null;
  extraFlanneldArgs?: readonly string[];
  /** CNI_PATH directories; default `<repo>/bin` (our `flannel`) then /usr/lib/cni. */
  cniPath?: readonly string[];
  /** The conflist a node's pods are attached with; default the stock cni-conf.json (plan.ts). */
  conflist?: (node: NodePlan) => CniConflist;
  /** Runs after etcd and flanneld started, before waiting for subnet.env (tests: host-gw by hand). */
  prepareNodes?: (lab: Lab) => void | Promise<void>;
  /** How long to wait for each node's subnet.env; default 60 s. */
  subnetTimeoutMs?: number;
  /** Overrides the root/tool checks (tests); default: the real machine. */
  preflight?: PreflightEnv | false;
  signal?: AbortSignal;
}

export interface LabStep {
  phase: "start" | "done";
  /** e.g. "Starting etcd". */
  title: string;
  /** Extra facts once done, e.g. "http://192.168.250.1:2379". */
  detail?: string;
  elapsedMs?: number;
}

export type OnStep = (step: LabStep) => void;

export interface MatrixResult {
  pods: PodInfo[];
  /** ok[i][j]: pod i reached pod j. */
  ok: boolean[][];
  /** `family` names the address family that failed. */
  failures: { from: string; to: string; family?: 4 | 6; output: string }[];
  allOk: boolean;
}

export interface ThroughputResult {
  podToPod: { from: string; to: string; bitsPerSecond: number };
  nodeToNode: { from: string; to: string; bitsPerSecond: number };
  /** podToPod / nodeToNode. */
  ratio: number;
}

export interface DownResult {
  processesStopped: number;
  namespacesDeleted: number;
  problems: string[];
}

/** The repository root (the directory with flannel-ts's package.json), found from this module's location. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "flannel-ts") return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new FlannelError("LAB_REPO", "Cannot find the flannel-ts repository root");
    dir = up;
  }
}

export class Lab {
  private state: LabState | undefined;
  private plan: LabPlan | undefined;
  private downing: Promise<DownResult> | undefined;

  private constructor(readonly stateDir: string) {}

  /** A lab that is not up yet; call `up()`. */
  static create(stateDir: string): Lab {
    return new Lab(stateDir);
  }

  /** The lab recorded in `stateDir` by an earlier process (for `down()`), or undefined when there is none. */
  static attach(stateDir: string): Lab | undefined {
    const state = readState(stateDir);
    if (!state) return undefined;
    const lab = new Lab(stateDir);
    lab.state = state;
    return lab;
  }

  /** The layout, once `up()` has begun. */
  get layout(): LabPlan {
    if (!this.plan) throw new FlannelError("LAB_STATE", "The lab has no layout yet: call up() first");
    return this.plan;
  }

  /** Builds the cluster. On any failure everything made so far is removed and the error rethrown. */
  async up(opts: LabOptions, onStep: OnStep = () => {}): Promise<LabTopology> {
    if (opts.preflight !== false) assertPreflight(opts.preflight);
    const plan = planLab({ ...opts, stateDir: this.stateDir });
    this.plan = plan;
    const existing = readState(this.stateDir);
    if (existing) {
      throw new FlannelError("LAB_EXISTS", `A lab is already recorded in ${statePath(this.stateDir)}`, {
        hint: "remove it first with `flannelctl sandbox down` (or pass another --state-dir)",
      });
    }
    const taken = [plan.underlayNs, ...plan.nodes.map((n) => n.ns)].filter(
      (ns) => namespaceInode(ns) !== undefined,
    );
    if (taken.length > 0) {
      throw new FlannelError("LAB_EXISTS", `Network namespaces already exist: ${taken.join(", ")}`, {
        hint: "another lab with the same prefix is running; remove it or use another prefix",
      });
    }
    const root = opts.flanneldCmd === undefined || opts.cniPath === undefined ? repoRoot() : "";
    const flanneldCmd = opts.flanneldCmd === undefined ? flanneldCommand(root) : opts.flanneldCmd;
    const cniPath = opts.cniPath ?? [join(root, "bin"), "/usr/lib/cni"];
    if (opts.flanneldCmd === undefined) requireBuilt(root, "flanneld.cjs");
    if (opts.cniPath === undefined && opts.conflist === undefined) requireBuilt(root, "flannel.js");

    const ownsStateDir = !existsSync(this.stateDir);
    mkdirSync(this.stateDir, { recursive: true, mode: 0o755 });
    this.state = {
      version: 1,
      prefix: plan.prefix,
      stateDir: this.stateDir,
      ownsStateDir,
      createdAt: new Date().toISOString(),
      namespaces: [],
      processes: [],
      paths: [],
    };
    this.save();

    const step = async <T>(
      title: string,
      fn: () => T | Promise<T>,
      detail?: (v: T) => string,
    ): Promise<T> => {
      opts.signal?.throwIfAborted();
      const t0 = Date.now();
      onStep({ phase: "start", title });
      let v: T;
      try {
        v = await fn();
      } catch (err) {
        if (err instanceof FlannelError) throw err;
        throw new FlannelError("LAB_STEP", `${title} failed: ${errorMessage(err)}`, { cause: err });
      }
      const done: LabStep = { phase: "done", title, elapsedMs: Date.now() - t0 };
      if (detail) done.detail = detail(v);
      onStep(done);
      return v;
    };

    try {
      await step(
        "Creating the underlay",
        () => {
          this.createNamespace(plan.underlayNs);
          const ns = plan.underlayNs;
          exec("ip", ["link", "add", plan.bridge, "type", "bridge"], { ns });
          exec("ip", ["addr", "add", plan.bridgeAddr, "dev", plan.bridge], { ns });
          if (plan.bridgeAddr6 !== null) {
            exec("ip", ["-6", "addr", "add", plan.bridgeAddr6, "dev", plan.bridge, "nodad"], { ns });
          }
          exec("ip", ["link", "set", plan.bridge, "up"], { ns });
        },
        () =>
          `${plan.underlayNs}: bridge ${plan.bridge} ${plan.bridgeAddr}${plan.bridgeAddr6 === null ? "" : ` ${plan.bridgeAddr6}`}`,
      );
      await step(
        `Creating ${plan.nodes.length} node namespaces`,
        () => {
          for (const node of plan.nodes) this.createNode(plan, node);
        },
        () => plan.nodes.map((n) => `${n.name}=${n.underlayIp}`).join(" "),
      );
      await step(
        "Starting etcd",
        async () => {
          this.recordPath(plan.etcdDataDir);
          this.recordPath(plan.etcdLog);
          let rec: ProcessRecord;
          try {
            rec = await startLabEtcd({
              ns: plan.underlayNs,
              host: plan.bridgeIp,
              clientPort: ETCD_CLIENT_PORT,
              peerPort: ETCD_PEER_PORT,
              dataDir: plan.etcdDataDir,
              logFile: plan.etcdLog,
              ...(opts.signal ? { signal: opts.signal } : {}),
            });
          } catch (err) {
            const rec = (err as { process?: ProcessRecord }).process;
            if (rec) this.recordProcess(rec);
            throw err;
          }
          this.recordProcess(rec);
          etcdPut(plan.underlayNs, plan.etcdEndpoint, ETCD_NETWORK_CONFIG_KEY, labNetworkConfigJson(plan));
        },
        () => `${plan.etcdEndpoint}, ${ETCD_NETWORK_CONFIG_KEY} = ${labNetworkConfigJson(plan)}`,
      );
      if (flanneldCmd !== null) {
        await step(
          `Starting flanneld on ${plan.nodes.length} nodes`,
          () => {
            for (const node of plan.nodes) {
              const rec = startDetached(
                [...flanneldCmd, ...flanneldArgs(plan, node, opts.extraFlanneldArgs)],
                {
                  role: `flanneld ${node.name}`,
                  ns: node.ns,
                  logFile: node.logFile,
                },
              );
              this.recordProcess(rec);
            }
          },
          () => `backend ${plan.backend}, logs in ${join(this.stateDir, "node*/flanneld.log")}`,
        );
      }
      if (opts.prepareNodes) await step("Preparing nodes", () => opts.prepareNodes?.(this));
      await step(
        "Waiting for every node's subnet lease",
        () => this.waitForSubnets(plan, opts.subnetTimeoutMs ?? 60_000, opts.signal),
        () =>
          plan.nodes
            .map((n) => {
              const env = readSubnetEnv(n.subnetFile);
              return `${n.name}=${[env.FLANNEL_SUBNET, env.FLANNEL_IPV6_SUBNET].filter((x) => x !== undefined).join(",") || "?"}`;
            })
            .join(" "),
      );
      if (plan.nodes.some((n) => n.pods.length > 0)) {
        await step(
          `Attaching ${plan.nodes.reduce((s, n) => s + n.pods.length, 0)} pods`,
          () => {
            for (const node of plan.nodes) {
              const conflist = (opts.conflist ?? flannelConflist)(node);
              for (const pod of node.pods) this.attachPod(node, pod.name, conflist, cniPath);
            }
          },
          () =>
            `through ${(opts.conflist ?? flannelConflist)(plan.nodes[0] as NodePlan)
              .plugins.map((p) => p.type)
              .join(" + ")}`,
        );
      }
      const topo = this.topology();
      this.state.topology = topo;
      this.save();
      return topo;
    } catch (err) {
      // Read what explains the failure before down() removes the logs.
      const explained = this.explainFailure(err);
      await this.down();
      throw explained;
    }
  }

  /** What the cluster looks like now (subnets read from each node's subnet.env). */
  topology(): LabTopology {
    const plan = this.plan;
    if (!plan) {
      const t = this.state?.topology;
      if (!t) throw new FlannelError("LAB_STATE", "The lab is not up: nothing to show");
      return t;
    }
    const nodes: NodeInfo[] = plan.nodes.map((n) => {
      const env = readSubnetEnv(n.subnetFile);
      const fl = this.state?.processes.find((p) => p.role === `flanneld ${n.name}`);
      const info: NodeInfo = {
        name: n.name,
        ns: n.ns,
        underlayAddr: n.underlayAddr,
        underlayIp: n.underlayIp,
        ...(n.underlayIp6 === undefined ? {} : { underlayIp6: n.underlayIp6 }),
        subnetFile: n.subnetFile,
        pods: n.pods.map((p) => {
          const pod: PodInfo = { name: p.name, ns: p.ns, node: n.name };
          const ips = this.podIps.get(p.ns);
          if (ips?.v4 !== undefined) pod.ip = ips.v4;
          if (ips?.v6 !== undefined) pod.ipv6 = ips.v6;
          return pod;
        }),
      };
      if (env.FLANNEL_SUBNET !== undefined) info.subnet = env.FLANNEL_SUBNET;
      if (env.FLANNEL_IPV6_SUBNET !== undefined) info.ipv6Subnet = env.FLANNEL_IPV6_SUBNET;
      if (env.FLANNEL_MTU !== undefined) info.mtu = Number(env.FLANNEL_MTU);
      if (fl) {
        info.flanneldPid = fl.pid;
        if (fl.logFile !== undefined) info.flanneldLog = fl.logFile;
      }
      return info;
    });
    return {
      prefix: plan.prefix,
      backend: plan.backend,
      network: plan.network,
      ipv6Network: plan.ipv6Network,
      underlayCidr: plan.underlayCidr,
      underlayNs: plan.underlayNs,
      bridge: plan.bridge,
      etcdEndpoint: plan.etcdEndpoint,
      stateDir: this.stateDir,
      nodes,
    };
  }

  /**
   * Every ordered pair of pods pings once (a few packets) per address family of the pod network (`ping -6`
   * for IPv6); at most `parallel` pings run at a time. ok[i][j] holds when every family got through.
   */
  async connectivityMatrix(opts: { parallel?: number } = {}): Promise<MatrixResult> {
    const topo = this.topology();
    const pods = topo.nodes.flatMap((n) => n.pods);
    const families: (4 | 6)[] = [];
    if (topo.network !== null) families.push(4);
    if (topo.ipv6Network) families.push(6);
    const ok = pods.map(() => pods.map(() => true));
    const failures: MatrixResult["failures"] = [];
    const jobs: [number, number, 4 | 6][] = [];
    pods.forEach((_, i) => pods.forEach((__, j) => families.forEach((f) => jobs.push([i, j, f]))));
    let next = 0;
    const worker = async (): Promise<void> => {
      for (;;) {
        const job = jobs[next++];
        if (!job) return;
        const [i, j, family] = job;
        const from = pods[i] as PodInfo;
        const to = pods[j] as PodInfo;
        const ip = family === 4 ? to.ip : to.ipv6;
        if (ip === undefined) {
          (ok[i] as boolean[])[j] = false;
          failures.push({
            from: from.name,
            to: to.name,
            family,
            output: `${to.name} has no IPv${family} address`,
          });
          continue;
        }
        // Two probes, 200 ms apart, 2 s to answer: the first may be spent on ARP/ND on a cold path.
        const args = ["-n", "-q", "-c", "2", "-i", "0.2", "-W", "2", ip];
        const res = await tryExecAsync("ping", family === 6 ? ["-6", ...args] : args, {
          ns: from.ns,
          timeoutMs: 20_000,
        });
        if (res.code !== 0) {
          (ok[i] as boolean[])[j] = false;
          failures.push({ from: from.name, to: to.name, family, output: (res.stdout + res.stderr).trim() });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, opts.parallel ?? 16) }, worker));
    return { pods, ok, failures, allOk: failures.length === 0 };
  }

  /**
   * iperf3 TCP for `seconds`: the first pod of node1 → the first pod of node2 (through flannel), then
   * node1 → node2 on the underlay (the ceiling the overlay is compared with).
   */
  async throughput(opts: { seconds?: number } = {}): Promise<ThroughputResult> {
    const topo = this.topology();
    const [n1, n2] = topo.nodes;
    const p1 = n1?.pods[0];
    const p2 = n2?.pods[0];
    if (!n1 || !n2 || !p1 || !p2 || p2.ip === undefined) {
      throw new FlannelError("LAB_THROUGHPUT", "A throughput sample needs at least 2 nodes with a pod each", {
        hint: "use --nodes 2 or more and --pods-per-node 1 or more",
      });
    }
    const seconds = opts.seconds ?? 3;
    const pod = await this.iperf(p2.ns, p1.ns, p2.ip, seconds);
    const node = await this.iperf(n2.ns, n1.ns, n2.underlayIp, seconds);
    return {
      podToPod: { from: p1.name, to: p2.name, bitsPerSecond: pod },
      nodeToNode: { from: n1.name, to: n2.name, bitsPerSecond: node },
      ratio: node > 0 ? pod / node : 0,
    };
  }

  /**
   * Suspends every running flanneld of the lab (SIGSTOP) and returns the function that continues them. The
   * kernel keeps what they programmed, so vxlan and host-gw traffic still flows: the benchmark measures the
   * data path with no flanneld running this way. `down()` also stops paused daemons.
   */
  pauseFlanneld(): () => void {
    const paused = (this.state?.processes ?? []).filter(
      (p) => p.role.startsWith("flanneld ") && pauseProcess(p),
    );
    return () => {
      for (const p of paused) resumeProcess(p);
    };
  }

  /** Recorded daemons (etcd, flanneld) that are no longer running, e.g. a flanneld that died after its lease. */
  exitedProcesses(): ProcessRecord[] {
    return (this.state?.processes ?? []).filter((p) => !isAlive(p));
  }

  /**
   * Removes everything recorded: processes (by PID + start time), anything else still running inside the
   * lab's namespaces, the namespaces, the files. Safe to call twice and concurrently (one run).
   */
  down(): Promise<DownResult> {
    this.downing ??= this.doDown().finally(() => {
      this.downing = undefined;
    });
    return this.downing;
  }

  // ---- internals ----------------------------------------------------------------------------------

  private readonly podIps = new Map<string, { v4?: string; v6?: string }>();

  private save(): void {
    if (this.state) writeState(this.state);
  }

  private recordPath(path: string): void {
    const s = this.mustState();
    if (!s.paths.includes(path)) s.paths.push(path);
    this.save();
  }

  private recordProcess(rec: ProcessRecord): void {
    this.mustState().processes.push(rec);
    this.save();
  }

  private mustState(): LabState {
    if (!this.state) throw new FlannelError("LAB_STATE", "The lab has no state: call up() first");
    return this.state;
  }

  private createNamespace(name: string): void {
    const s = this.mustState();
    if (namespaceInode(name) !== undefined) {
      throw new FlannelError("LAB_EXISTS", `Network namespace ${name} already exists`, {
        hint: `another lab uses it; remove that lab or delete it with \`ip netns delete ${name}\` if it is stale`,
      });
    }
    const rec: { name: string; inode?: number } = { name };
    s.namespaces.push(rec);
    this.save(); // write-ahead: a crash inside `ip netns add` still leaves a record
    exec("ip", ["netns", "add", name]);
    const inode = namespaceInode(name);
    if (inode !== undefined) rec.inode = inode;
    this.save();
    exec("ip", ["link", "set", "lo", "up"], { ns: name });
  }

  private createNode(plan: LabPlan, node: NodePlan): void {
    this.createNamespace(node.ns);
    for (const p of [node.dir, node.cniDataDir, node.ipamDataDir])
      mkdirSync(p, { recursive: true, mode: 0o755 });
    this.recordPath(node.dir);
    // The node end is created directly inside the node namespace as eth0: nothing appears in the root one.
    exec("ip", ["link", "add", node.underlayVeth, "type", "veth", "peer", "name", "eth0", "netns", node.ns], {
      ns: plan.underlayNs,
    });
    exec("ip", ["link", "set", node.underlayVeth, "master", plan.bridge, "up"], { ns: plan.underlayNs });
    exec("ip", ["addr", "add", node.underlayAddr, "dev", "eth0"], { ns: node.ns });
    if (node.underlayAddr6 !== undefined) {
      exec("ip", ["-6", "addr", "add", node.underlayAddr6, "dev", "eth0", "nodad"], { ns: node.ns });
      exec("sysctl", ["-q", "-w", "net.ipv6.conf.all.forwarding=1"], { ns: node.ns });
    }
    exec("ip", ["link", "set", "eth0", "up"], { ns: node.ns });
    exec("sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"], { ns: node.ns });
  }

  private async waitForSubnets(plan: LabPlan, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const pending = new Set(plan.nodes);
    for (;;) {
      signal?.throwIfAborted();
      for (const node of pending) {
        const env = readSubnetEnv(node.subnetFile);
        const leased = env.FLANNEL_SUBNET ?? env.FLANNEL_IPV6_SUBNET;
        if (leased !== undefined && env.FLANNEL_MTU !== undefined) pending.delete(node);
      }
      if (pending.size === 0) return;
      for (const node of pending) {
        const fl = this.state?.processes.find((p) => p.role === `flanneld ${node.name}`);
        if (fl && !isAlive(fl)) {
          throw new FlannelError(
            "LAB_FLANNELD",
            `flanneld on ${node.name} exited before writing ${node.subnetFile}`,
            {
              hint: `see its log ${node.logFile}`,
            },
          );
        }
      }
      if (Date.now() > deadline) {
        const names = [...pending].map((n) => n.name).join(", ");
        throw new FlannelError("LAB_FLANNELD", `No subnet lease after ${timeoutMs} ms on ${names}`, {
          hint: "see the flanneld logs of those nodes",
        });
      }
      await sleep(200, signal);
    }
  }

  private attachPod(
    node: NodePlan,
    podName: string,
    conflist: CniConflist,
    cniPath: readonly string[],
  ): void {
    const pod = node.pods.find((p) => p.name === podName);
    if (!pod) return;
    this.createNamespace(pod.ns);
    const env = {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: pod.containerId,
      CNI_NETNS: `/run/netns/${pod.ns}`,
      CNI_IFNAME: pod.ifName,
      CNI_PATH: cniPath.join(":"),
    };
    // A minimal CNI runtime for a conflist (CNI spec "Network configuration lists"): each plugin gets
    // `name` and `cniVersion` from the list and the previous plugin's result as `prevResult`.
    let prev: unknown;
    for (const plugin of conflist.plugins) {
      const type = String(plugin.type);
      const bin = cniPath.map((d) => join(d, type)).find((p) => existsSync(p));
      if (!bin) {
        throw new FlannelError("LAB_CNI", `CNI plugin ${type} not found in ${cniPath.join(":")}`, {
          hint: type === "flannel" ? "build it with `npm run build`" : "install containernetworking-plugins",
        });
      }
      const conf: Record<string, unknown> = {
        cniVersion: conflist.cniVersion,
        name: conflist.name,
        ...plugin,
      };
      if (prev !== undefined) conf.prevResult = prev;
      const res = tryExec(bin, [], { ns: node.ns, env, input: JSON.stringify(conf) });
      if (res.code !== 0) {
        throw new FlannelError(
          "LAB_CNI",
          `CNI ADD of ${pod.name} on ${node.name} failed in ${type} (exit ${res.code}): ${(res.stdout + res.stderr).trim()}`,
        );
      }
      try {
        prev = JSON.parse(res.stdout);
      } catch {
        throw new FlannelError(
          "LAB_CNI",
          `CNI plugin ${type} printed no JSON result for ${pod.name}: ${res.stdout.trim()}`,
        );
      }
    }
    const plan = this.layout;
    const ips: { v4?: string; v6?: string } = {};
    for (const [family, want] of [
      [4, plan.network !== null],
      [6, plan.ipv6Network !== null],
    ] as const) {
      const ip = firstIp(prev, family);
      if (want && ip === undefined) {
        throw new FlannelError(
          "LAB_CNI",
          `CNI ADD of ${pod.name} returned no IPv${family} address: ${JSON.stringify(prev)}`,
        );
      }
      if (ip !== undefined) ips[family === 4 ? "v4" : "v6"] = ip;
    }
    this.podIps.set(pod.ns, ips);
  }

  private async iperf(
    serverNs: string,
    clientNs: string,
    serverIp: string,
    seconds: number,
  ): Promise<number> {
    const logFile = join(this.stateDir, "iperf3-server.log");
    this.recordPath(logFile);
    const server = startDetached(["iperf3", "-s", "-B", serverIp], {
      role: "iperf3 server",
      ns: serverNs,
      logFile,
    });
    this.recordProcess(server);
    try {
      // The server needs a moment to listen; "connection refused" until then.
      const deadline = Date.now() + 15_000;
      for (;;) {
        const res = await tryExecAsync("iperf3", ["-c", serverIp, "-t", String(seconds), "-J"], {
          ns: clientNs,
          timeoutMs: (seconds + 30) * 1000,
        });
        // iperf3 3.12 with -J exits 0 even when it could not connect; the JSON's `error` says so.
        if (res.code === 0 && iperfError(res.stdout) === undefined) return bitsPerSecond(res.stdout);
        if (Date.now() > deadline || !isAlive(server)) {
          throw new FlannelError(
            "LAB_THROUGHPUT",
            `iperf3 from ${clientNs} to ${serverIp} failed: ${iperfError(res.stdout) ?? res.stderr.trim()}`,
          );
        }
        await sleep(200);
      }
    } finally {
      await stopProcess(server, 2_000);
      const s = this.mustState();
      s.processes = s.processes.filter((p) => p !== server);
      this.save();
    }
  }

  private explainFailure(err: unknown): unknown {
    if (!(err instanceof FlannelError) || err.code !== "LAB_FLANNELD" || !this.plan) return err;
    const nodes = this.plan.nodes.filter((n) => new RegExp(`\\b${n.name}\\b`).test(err.message));
    const tails = nodes.map(
      (n) => `--- the end of ${n.name}'s flanneld log (${n.logFile}):\n${tailFile(n.logFile) || "(empty)"}`,
    );
    return new FlannelError(err.code, [err.message, ...tails].join("\n"), {
      cause: err,
      ...(err.hint === undefined ? {} : { hint: err.hint }),
    });
  }

  private async doDown(): Promise<DownResult> {
    const s = this.state ?? readState(this.stateDir);
    const result: DownResult = { processesStopped: 0, namespacesDeleted: 0, problems: [] };
    if (!s) return result;
    // Stop daemons before their namespaces go: a namespace outlives `ip netns delete` while a process is in it.
    const stopped = await Promise.all([...s.processes].reverse().map((p) => stopProcess(p)));
    result.processesStopped = stopped.filter((r) => r === "stopped").length;
    const owned = [...s.namespaces].reverse().filter((ns) => {
      const inode = namespaceInode(ns.name);
      if (inode === undefined) return false;
      if (ns.inode !== undefined && ns.inode !== inode) {
        result.problems.push(`Left ${ns.name} alone: it is not the namespace this lab created`);
        return false;
      }
      return true;
    });
    // Anything else still running in our namespaces was started by us (iperf3, ping): end it by PID.
    for (const ns of owned) {
      const pids = tryExec("ip", ["netns", "pids", ns.name])
        .stdout.split("\n")
        .filter((l) => /^\d+$/.test(l));
      for (const pid of pids) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    for (const ns of owned) {
      const res = tryExec("ip", ["netns", "delete", ns.name]);
      if (res.code === 0) result.namespacesDeleted++;
      else result.problems.push(`Cannot delete namespace ${ns.name}: ${res.stderr.trim()}`);
    }
    for (const p of [...s.paths].reverse()) {
      try {
        rmSync(p, { recursive: true, force: true });
      } catch (err) {
        result.problems.push(`Cannot remove ${p}: ${errorMessage(err)}`);
      }
    }
    if (result.problems.length === 0) {
      rmSync(statePath(s.stateDir), { force: true });
      rmSync(`${statePath(s.stateDir)}.tmp`, { force: true });
      if (s.ownsStateDir) {
        try {
          rmdirSync(s.stateDir);
        } catch {
          // not empty: something we did not make lives there; leave it
        }
      }
    }
    this.state = undefined;
    this.podIps.clear();
    return result;
  }
}

function requireBuilt(root: string, file: string): void {
  if (!existsSync(join(root, "dist", file))) {
    throw new FlannelError("LAB_BUILD", `${join(root, "dist", file)} does not exist`, {
      hint: "build the programs first with `npm run build`",
    });
  }
}

/** KEY=VALUE lines of a subnet.env; {} when the file does not exist (yet). */
export function readSubnetEnv(path: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return {};
  }
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/** The first IPv4 address (without prefix length) of a CNI result (0.3.x/0.4.0/1.x `ips`). */
export function firstIpv4(result: unknown): string | undefined {
  return firstIp(result, 4);
}

/** The first address of one family (without prefix length) of a CNI result. */
export function firstIp(result: unknown, family: 4 | 6): string | undefined {
  const ips = (result as { ips?: { address?: unknown; version?: unknown }[] } | undefined)?.ips;
  for (const ip of ips ?? []) {
    if (typeof ip.address === "string" && ip.address.includes(":") === (family === 6)) {
      return ip.address.split("/")[0];
    }
  }
  return undefined;
}

/** Received bits per second from `iperf3 -J` output. */
export function bitsPerSecond(json: string): number {
  const r = JSON.parse(json) as { end?: { sum_received?: { bits_per_second?: number } } };
  const bps = r.end?.sum_received?.bits_per_second;
  if (typeof bps !== "number") {
    throw new FlannelError("LAB_THROUGHPUT", `iperf3 reported no received rate: ${json.slice(0, 2000)}`);
  }
  return bps;
}

function iperfError(json: string): string | undefined {
  try {
    return (JSON.parse(json) as { error?: string }).error;
  } catch {
    return undefined;
  }
}
