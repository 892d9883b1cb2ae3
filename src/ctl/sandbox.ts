// `flannelctl sandbox`: a whole flannel cluster from network namespaces on this machine (the lab in
// ./lab/), shown as progress lines, a topology picture, the pod-to-pod connectivity matrix and a
// throughput sample. The renderers are pure (text in, text out, no colour needed to read them); the
// command itself takes its output streams and its interrupt hook from the CLI, which owns the process.

import { join } from "node:path";
import { FlannelError, errorMessage } from "../errors.ts";
import { FlagParseError, FlagSet } from "../cli/flags.ts";
import { Lab, repoRoot, type LabStep, type MatrixResult, type ThroughputResult } from "./lab/lab.ts";
import type { LabTopology } from "./lab/topology.ts";

export const SANDBOX_PREFIX = "flsb";

export interface CommandIo {
  out(text: string): void;
  err(text: string): void;
  /** Registers a handler for SIGINT/SIGTERM; returns a function that removes it. */
  onInterrupt(handler: () => void): () => void;
}

export const SANDBOX_USAGE = `Usage: flannelctl sandbox [--nodes N] [--pods-per-node K] [--backend B] [--keep] [--state-dir D]
       flannelctl sandbox down [--state-dir D]

Builds a flannel cluster on this machine from network namespaces (needs root): an underlay bridge, etcd,
flanneld in every node and K pods per node attached through the flannel CNI plugin. Shows the topology,
pings every ordered pod pair and samples throughput (iperf3 pod to pod across nodes, next to node to node).
Everything is removed afterwards, also after Ctrl-C or a failure, unless --keep is given.

Options:
`;

interface SandboxFlags {
  nodes: number;
  podsPerNode: number;
  backend: string;
  network: string;
  keep: boolean;
  stateDir: string;
  throughputSeconds: number;
}

function sandboxFlags(): { fs: FlagSet; read: () => SandboxFlags } {
  const fs = new FlagSet("sandbox");
  const nodes = fs.int("nodes", 3, "number of nodes");
  const pods = fs.int("pods-per-node", 2, "pods per node");
  const backend = fs.string("backend", "vxlan", "flannel backend type (vxlan, host-gw, udp, ...)");
  const network = fs.string("network", "10.244.0.0/16", "pod network (net-conf.json Network)");
  const keep = fs.bool(
    "keep",
    false,
    "leave the cluster running for exploration (remove it with 'flannelctl sandbox down')",
  );
  const stateDir = fs.string(
    "state-dir",
    "",
    "where logs, subnet files and the state file live (default <repo>/.sandbox)",
  );
  const seconds = fs.int(
    "throughput-seconds",
    3,
    "length of each iperf3 run, 0 to skip the throughput sample",
  );
  return {
    fs,
    read: () => ({
      nodes: nodes.value,
      podsPerNode: pods.value,
      backend: backend.value,
      network: network.value,
      keep: keep.value,
      stateDir: stateDir.value || join(repoRoot(), ".sandbox"),
      throughputSeconds: seconds.value,
    }),
  };
}

/** Runs `flannelctl sandbox …`; resolves with the exit code. */
export async function sandboxCommand(args: readonly string[], io: CommandIo): Promise<number> {
  const { fs, read } = sandboxFlags();
  let rest: string[];
  try {
    fs.parse(args);
    rest = fs.args();
    // Go's flag parsing stops at the first non-flag: flags may also follow `down`.
    if (rest[0] === "down") {
      fs.parse(rest.slice(1));
      rest = ["down", ...fs.args()];
    }
  } catch (err) {
    if (err instanceof FlagParseError && err.help) {
      io.out(SANDBOX_USAGE + fs.printDefaults());
      return 0;
    }
    io.err(`${errorMessage(err)}\n\n${SANDBOX_USAGE}${fs.printDefaults()}`);
    return 2;
  }
  if (rest.length > 0 && !(rest.length === 1 && rest[0] === "down")) {
    io.err(`Unknown sandbox argument ${JSON.stringify(rest.join(" "))}: the only subcommand is \`down\`\n`);
    return 2;
  }
  const flags = read();
  return rest[0] === "down" ? sandboxDown(flags.stateDir, io) : sandboxUp(flags, io);
}

async function sandboxDown(stateDir: string, io: CommandIo): Promise<number> {
  let lab: Lab | undefined;
  try {
    lab = Lab.attach(stateDir);
  } catch (err) {
    io.err(renderError(err));
    return 1;
  }
  if (!lab) {
    io.out(`No sandbox is recorded in ${stateDir}: nothing to remove\n`);
    return 0;
  }
  const res = await lab.down();
  io.out(
    `Removed the sandbox: ${res.processesStopped} processes stopped, ${res.namespacesDeleted} namespaces deleted\n`,
  );
  for (const p of res.problems) io.err(`warning: ${p}\n`);
  return res.problems.length === 0 ? 0 : 1;
}

async function sandboxUp(flags: SandboxFlags, io: CommandIo): Promise<number> {
  const lab = Lab.create(flags.stateDir);
  const controller = new AbortController();
  let interrupted = false;
  let upDone = false;
  const off = io.onInterrupt(() => {
    if (interrupted) return;
    interrupted = true;
    io.err("\nInterrupted: removing the sandbox ...\n");
    controller.abort(new FlannelError("LAB_INTERRUPTED", "Interrupted"));
    // While up() runs it cleans up itself when it sees the abort; afterwards nobody else would.
    if (upDone) void lab.down();
  });
  try {
    const topo = await lab.up(
      {
        prefix: SANDBOX_PREFIX,
        nodes: flags.nodes,
        podsPerNode: flags.podsPerNode,
        backend: flags.backend,
        network: flags.network,
        stateDir: flags.stateDir,
        signal: controller.signal,
      },
      (s) => io.out(renderStep(s)),
    );
    upDone = true;
    io.out(`\n${renderTopology(topo)}\n`);
    for (const p of lab.exitedProcesses()) {
      io.err(`warning: ${p.role} (PID ${p.pid}) has exited; see ${p.logFile ?? "its log"}\n`);
    }
    let allOk = true;
    if (topo.nodes.some((n) => n.pods.length > 0)) {
      io.out("Pinging every ordered pod pair ...\n");
      const m = await lab.connectivityMatrix();
      io.out(`${renderMatrix(m)}\n`);
      allOk = m.allOk;
    }
    const canMeasure = topo.nodes.length >= 2 && flags.podsPerNode > 0 && flags.throughputSeconds > 0;
    if (canMeasure && !interrupted) {
      io.out(`Measuring throughput (iperf3 TCP, ${flags.throughputSeconds} s each) ...\n`);
      try {
        const tp = await lab.throughput({ seconds: flags.throughputSeconds });
        io.out(`${renderThroughput(tp, topo.backend)}\n`);
      } catch (err) {
        io.err(`Throughput sample failed: ${errorMessage(err)}\n`);
      }
    }
    if (flags.keep && !interrupted) {
      io.out(`${renderKeep(topo)}\n`);
    } else {
      const res = await lab.down();
      io.out(
        `Removed the sandbox (${res.namespacesDeleted} namespaces, ${res.processesStopped} processes)\n`,
      );
      for (const p of res.problems) io.err(`warning: ${p}\n`);
    }
    return allOk && !interrupted ? 0 : 1;
  } catch (err) {
    io.err(renderError(err));
    await lab.down(); // up() already cleaned up after itself; this covers the steps after it
    return 1;
  } finally {
    off();
  }
}

/** One progress line: `==> title` when a step starts, `    ok  title (1.2 s): detail` when it is done. */
export function renderStep(s: LabStep): string {
  if (s.phase === "start") return `==> ${s.title} ...\n`;
  const time = s.elapsedMs === undefined ? "" : ` (${(s.elapsedMs / 1000).toFixed(1)} s)`;
  return `    done${time}${s.detail ? `: ${s.detail}` : ""}\n`;
}

/** The cluster as a tree: underlay, etcd, each node with its lease and its pods. */
export function renderTopology(t: LabTopology): string {
  const lines: string[] = [];
  lines.push(`Cluster: ${t.nodes.length} nodes, backend ${t.backend}, pod network ${t.network}`);
  lines.push(`underlay ${t.underlayCidr}  [${t.underlayNs}]  bridge ${t.bridge}, etcd ${t.etcdEndpoint}`);
  t.nodes.forEach((n, i) => {
    const lastNode = i === t.nodes.length - 1;
    const lease = n.subnet === undefined ? "no lease" : `subnet ${n.subnet}`;
    const mtu = n.mtu === undefined ? "" : `  mtu ${n.mtu}`;
    lines.push(`${lastNode ? "└──" : "├──"} ${n.name}  eth0 ${n.underlayIp}  ${lease}${mtu}  [${n.ns}]`);
    n.pods.forEach((p, j) => {
      const stem = lastNode ? "    " : "│   ";
      const branch = j === n.pods.length - 1 ? "└──" : "├──";
      lines.push(`${stem}${branch} ${p.name}  ${p.ip ?? "no IP"}  [${p.ns}]`);
    });
  });
  return `${lines.join("\n")}\n`;
}

/** Rows ping columns; ✔ reached, ✘ not. Pods are numbered so that wide clusters stay readable. */
export function renderMatrix(m: MatrixResult): string {
  const n = m.pods.length;
  const w = Math.max(2, String(n).length + 1);
  const nameW = Math.max(...m.pods.map((p, i) => `${i + 1} ${p.name}`.length), 4);
  const lines: string[] = [];
  lines.push("Connectivity (row pings column):");
  lines.push(`${" ".repeat(nameW + 2)}${m.pods.map((_, i) => String(i + 1).padStart(w)).join("")}`);
  m.pods.forEach((p, i) => {
    const label = `${i + 1} ${p.name}`.padEnd(nameW);
    const row = m.pods.map((_, j) => (m.ok[i]?.[j] ? "✔" : "✘").padStart(w)).join("");
    lines.push(`  ${label}${row}`);
  });
  const total = n * n;
  const good = total - m.failures.length;
  lines.push(m.allOk ? `All ${total} pairs ok` : `${good}/${total} pairs ok, ${m.failures.length} FAILED:`);
  for (const f of m.failures) lines.push(`  FAIL ${f.from} -> ${f.to}`);
  return `${lines.join("\n")}\n`;
}

/** e.g. 9.41 Gbit/s */
export function formatRate(bps: number): string {
  if (bps >= 1e9) return `${(bps / 1e9).toFixed(2)} Gbit/s`;
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)} Mbit/s`;
  return `${(bps / 1e3).toFixed(0)} kbit/s`;
}

export function renderThroughput(tp: ThroughputResult, backend: string): string {
  const a = `pod to pod    ${tp.podToPod.from} -> ${tp.podToPod.to}`;
  const b = `node to node  ${tp.nodeToNode.from} -> ${tp.nodeToNode.to} (underlay)`;
  const w = Math.max(a.length, b.length) + 2;
  return [
    "Throughput (iperf3 TCP):",
    `  ${a.padEnd(w)}${formatRate(tp.podToPod.bitsPerSecond)}  (${backend})`,
    `  ${b.padEnd(w)}${formatRate(tp.nodeToNode.bitsPerSecond)}`,
    `  ratio pod/node ${tp.ratio.toFixed(2)}`,
    "",
  ].join("\n");
}

export function renderKeep(t: LabTopology): string {
  const n1 = t.nodes[0];
  const p1 = n1?.pods[0];
  const lines = ["The sandbox keeps running. To explore it:"];
  if (p1) lines.push(`  enter a pod:        ip netns exec ${p1.ns} bash`);
  if (n1) {
    lines.push(`  enter a node:       ip netns exec ${n1.ns} bash`);
    lines.push(`  a node's routes:    ip netns exec ${n1.ns} ip route`);
    if (n1.flanneldLog !== undefined) lines.push(`  a flanneld log:     less ${n1.flanneldLog}`);
    lines.push(
      `  the leases:         ip netns exec ${t.underlayNs} env ETCDCTL_API=3 etcdctl --endpoints=${t.etcdEndpoint} get --prefix /coreos.com/network/subnets`,
    );
  }
  lines.push(
    `  remove it:          flannelctl sandbox down${t.stateDir ? ` --state-dir ${t.stateDir}` : ""}`,
  );
  return `${lines.join("\n")}\n`;
}

export function renderError(err: unknown): string {
  const hint = err instanceof FlannelError && err.hint !== undefined ? `\nhint: ${err.hint}` : "";
  return `Error: ${errorMessage(err)}${hint}\n`;
}
