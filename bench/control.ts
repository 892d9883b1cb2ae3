// Control-plane benchmark: how fast one flanneld makes the kernel match N peer leases in etcd, what it costs
// in CPU time, and its resident memory.
//
// Design notes
// - Topology (namespaces prefixed fts-p): `ul` holds etcd (172.16.255.254:2379) and the writer agent;
//   each `node` namespace holds flanneld (eth0 = 172.16.0.1/16 on a veth into ul) and the probe agent.
//   A fresh node namespace is used for every cold start, because flanneld leaves its routes behind at exit.
// - Peers are written with the real lease JSON (src/subnet/etcd/keys.ts) and one etcd lease each, as real
//   nodes have; their public IPs are on the underlay /16, so host-gw routes are valid.
// - "Routes present" is counted by the probe from route notifications, confirmed by a netlink dump (see
//   agent.ts), so the measurement does not take CPU from flanneld by polling.
// - Scenarios per N: cold start (N leases already in etcd → N routes, from process spawn), removal in
//   transactions of 100, batched add (transactions of 100), streamed add (single puts, 16 in flight) and
//   streamed removal. Each reports the time until the kernel matched, the time after the last write was
//   acknowledged, and flanneld's CPU time during the scenario.

import { flanneldCommand } from "../src/cli/node-flags.ts";
import { spawn, type ChildProcess } from "node:child_process";
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Netns, vethPair } from "../test/helpers/netns.ts";
import { startEtcd, type EtcdServer } from "../test/helpers/etcd.ts";
import {
  Agent,
  cpuMs,
  cpuParts,
  median,
  nowMs,
  onInterrupt,
  REPO,
  rssBytes,
  rssParts,
  sleepMs,
} from "./util.ts";

export const ETCD_IP = "172.16.255.254";
export const NODE_ADDR = "172.16.0.1/16";
export const PREFIX = "/coreos.com/network";

/** Medians of repeated runs of one scenario (same name, lease count and backend). */
export interface ScenarioGroup {
  median: Scenario;
  runs: Scenario[];
}

/**
 * Groups repeated runs of each scenario in first-seen order; `median` holds each figure's median over the
 * runs (a run that timed out makes the group's median time out too).
 */
export function groupScenarios(list: readonly Scenario[]): ScenarioGroup[] {
  const groups = new Map<string, Scenario[]>();
  for (const s of list) {
    const k = `${s.name}|${s.leases}|${s.backend}`;
    const g = groups.get(k);
    if (g === undefined) groups.set(k, [s]);
    else g.push(s);
  }
  const med = (runs: Scenario[], f: (s: Scenario) => number | undefined): number | undefined => {
    const v = runs.map(f).filter((x): x is number => x !== undefined);
    return v.length === 0 ? undefined : median(v);
  };
  return [...groups.values()].map((runs) => {
    const first = runs[0] as Scenario;
    const m: Scenario = {
      ...first,
      totalMs: med(runs, (s) => s.totalMs) as number,
      cpuMs: med(runs, (s) => s.cpuMs) as number,
      rssBytes: med(runs, (s) => s.rssBytes) as number,
    };
    for (const key of ["afterLastWriteMs", "writerAloneMs", "sysMs", "probeCpuMs", "writerCpuMs"] as const) {
      const v = med(runs, (s) => s[key]);
      if (v === undefined) delete m[key];
      else m[key] = v;
    }
    delete m.round;
    if (runs.some((s) => s.timedOut === true)) m.timedOut = true;
    return { median: m, runs };
  });
}

export interface Scenario {
  name: "cold" | "batched" | "batched-removal" | "streamed" | "streamed-removal";
  /** Which repetition of the scenario this is (1-based), when the bench repeats it. */
  round?: number;
  leases: number;
  backend: string;
  /** From the first write (cold: flanneld spawn) until the kernel matched. */
  totalMs: number;
  /** From the last write's acknowledgement until the kernel matched (not for cold). */
  afterLastWriteMs?: number;
  /**
   * Batched scenarios: the writer's time for the same transactions with no flanneld running, measured in the
   * same run just before flanneld starts: what etcd and the writer take on their own, the floor of totalMs.
   */
  writerAloneMs?: number;
  /** flanneld utime+stime during the scenario. */
  cpuMs: number;
  /** The stime part of cpuMs: flanneld's time in the kernel (its netlink writes among it). */
  sysMs?: number;
  /**
   * What the instruments took meanwhile, on the same two cores: the probe (counting routes) from the first
   * write until it answered, and the writer for its writes (not for cold).
   */
  probeCpuMs?: number;
  writerCpuMs?: number;
  /** flanneld VmRSS at the end. */
  rssBytes: number;
  timedOut?: boolean;
}

/**
 * flanneld's environment: the bench's, without NODE_EXTRA_CA_CERTS. The image and a systemd unit start
 * flanneld without it, but machines of this kind set it, and Node reads and parses that CA bundle at every
 * start (~60 ms here), which would be counted in every cold start.
 */
function daemonEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

export class FlanneldNode {
  readonly ns: Netns;
  readonly probe: Agent;
  readonly dir: string;
  child: ChildProcess | undefined;
  spawnedAt = 0;
  /** The probe's CPU time (ms) when flanneld was spawned. */
  probeCpuAtStart = NaN;
  private readonly unregister: () => void;

  constructor(
    readonly cluster: ControlCluster,
    readonly index: number,
  ) {
    this.ns = Netns.create("fts-p");
    this.unregister = onInterrupt(() => this.destroy());
    // subnet.env lives where it does on a node, in memory (/run is a tmpfs on systemd hosts; here /run is on
    // disk, so /dev/shm stands in): its fsync then costs nothing, as in production, instead of ~25 ms of ext4.
    this.dir = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "fts-p-node-"));
    try {
      vethPair(this.ns, "eth0", NODE_ADDR, cluster.ul, `ve${index}`, null);
      cluster.ul.run("ip", ["link", "set", `ve${index}`, "master", "br0"]);
      this.probe = new Agent(this.ns.name, "probe");
    } catch (err) {
      this.ns.delete();
      rmSync(this.dir, { recursive: true, force: true });
      this.unregister();
      throw err;
    }
  }

  get subnetFile(): string {
    return join(this.dir, "subnet.env");
  }

  get pid(): number {
    const pid = this.child?.pid;
    if (pid === undefined) throw new Error("flanneld is not running");
    return pid;
  }

  /**
   * Starts flanneld once this node's probe answers (spawnedAt is the wall-clock spawn time). The probe is a
   * tsx process that takes ~1 s to start: spawning flanneld before it is up would time the probe's start-up
   * instead of flanneld's convergence whenever flanneld is the faster of the two.
   */
  async start(extraArgs: readonly string[] = []): Promise<void> {
    this.probeCpuAtStart = Number((await this.probe.call({ cmd: "count" })).cpuMs);
    const log = openSync(join(this.dir, "flanneld.log"), "a");
    this.spawnedAt = nowMs();
    this.child = spawn(
      "ip",
      [
        "netns",
        "exec",
        this.ns.name,
        // The command flanneld is deployed with, plus Node/V8 flags: `--cpu-prof` of bench/run.ts (each
        // flanneld writes a .cpuprofile there when it exits), then flags to compare (FTS_BENCH_NODE_FLAGS,
        // later ones win: e.g. "--max-semi-space-size=16" for V8's default).
        ...flanneldCommand(REPO, [
          ...(this.cluster.cpuProfDir === undefined
            ? []
            : ["--cpu-prof", `--cpu-prof-dir=${this.cluster.cpuProfDir}`]),
          ...(process.env.FTS_BENCH_NODE_FLAGS ?? "").split(" ").filter((f) => f !== ""),
        ]),
        `--etcd-endpoints=http://${ETCD_IP}:2379`,
        "--iface=eth0",
        `--subnet-file=${this.subnetFile}`,
        ...extraArgs,
      ],
      { stdio: ["ignore", log, log], env: daemonEnv() },
    );
    closeSync(log);
  }

  /** Milliseconds from spawn until subnet.env exists (polled every 2 ms). */
  async waitSubnetEnv(timeoutMs = 60_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(this.subnetFile)) {
      if (this.child?.exitCode != null) throw new Error(`flanneld exited: ${this.logTail()}`);
      if (Date.now() > deadline) throw new Error(`no subnet.env after ${timeoutMs} ms: ${this.logTail()}`);
      await sleepMs(2);
    }
    return statSync(this.subnetFile).mtimeMs - this.spawnedAt;
  }

  logTail(): string {
    try {
      return spawnTail(join(this.dir, "flanneld.log"));
    } catch {
      return "";
    }
  }

  async stop(): Promise<void> {
    const c = this.child;
    this.child = undefined;
    if (c?.pid !== undefined && c.exitCode === null) {
      const exited = new Promise<void>((r) => c.once("exit", () => r()));
      process.kill(c.pid, "SIGTERM");
      const t = setTimeout(() => c.pid !== undefined && process.kill(c.pid, "SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    }
  }

  async destroy(): Promise<void> {
    await this.stop();
    // FTS_BENCH_LOG_DIR keeps each flanneld's log (node<index>.log) for reading its timeline.
    const keep = process.env.FTS_BENCH_LOG_DIR;
    if (keep !== undefined && existsSync(join(this.dir, "flanneld.log"))) {
      mkdirSync(keep, { recursive: true });
      copyFileSync(join(this.dir, "flanneld.log"), join(keep, `node${this.index}.log`));
    }
    await this.probe.close().catch(() => undefined);
    this.ns.delete();
    rmSync(this.dir, { recursive: true, force: true });
    this.unregister();
  }
}

function spawnTail(file: string): string {
  return readFileSync(file, "utf8").split("\n").slice(-15).join("\n");
}

export class ControlCluster {
  readonly ul: Netns;
  etcd: EtcdServer | undefined;
  writer: Agent | undefined;
  private nodes = 0;
  /** Where flanneld writes CPU profiles (node --cpu-prof); undefined: no profiling. */
  cpuProfDir: string | undefined;

  private readonly unregister: () => void;

  private constructor() {
    this.ul = Netns.create("fts-p");
    this.unregister = onInterrupt(() => this.destroy());
  }

  static async create(backend: string): Promise<ControlCluster> {
    const c = new ControlCluster();
    try {
      c.ul.run("ip", ["link", "add", "br0", "type", "bridge"]);
      c.ul.run("ip", ["addr", "add", `${ETCD_IP}/16`, "dev", "br0"]);
      c.ul.run("ip", ["link", "set", "br0", "up"]);
      c.etcd = await startEtcd({
        netns: c.ul,
        host: ETCD_IP,
        // The default 2 GB backend quota is plenty; a larger txn limit is not needed for 100 ops.
        extraArgs: ["--quota-backend-bytes", String(4 * 1024 * 1024 * 1024)],
      });
      c.etcd.etcdctl([
        "put",
        `${PREFIX}/config`,
        JSON.stringify({ Network: "10.0.0.0/8", SubnetLen: 24, Backend: { Type: backend } }),
      ]);
      c.writer = new Agent(c.ul.name, "writer");
      await c.writer.call({ cmd: "init", endpoint: c.etcd.endpoint, prefix: PREFIX, backend });
    } catch (err) {
      await c.destroy();
      throw err;
    }
    return c;
  }

  w(): Agent {
    if (!this.writer) throw new Error("no writer");
    return this.writer;
  }

  async setBackend(backend: string): Promise<void> {
    this.etcd?.etcdctl([
      "put",
      `${PREFIX}/config`,
      JSON.stringify({ Network: "10.0.0.0/8", SubnetLen: 24, Backend: { Type: backend } }),
    ]);
    await this.w().call({ cmd: "backend", backend });
  }

  newNode(): FlanneldNode {
    this.nodes++;
    return new FlanneldNode(this, this.nodes);
  }

  async destroy(): Promise<void> {
    await this.writer?.call({ cmd: "close" }).catch(() => undefined);
    await this.writer?.close().catch(() => undefined);
    await this.etcd?.stop().catch(() => undefined);
    this.ul.delete();
    this.unregister();
  }
}

async function waitRoutes(node: FlanneldNode, target: number, timeoutMs: number) {
  // A flanneld that dies ends the wait at once (with its log), rather than after the timeout.
  let onExit: (() => void) | undefined;
  const died = new Promise<never>((_, reject) => {
    const child = node.child;
    if (child === undefined || child.exitCode !== null) {
      reject(new Error(`flanneld is not running: ${node.logTail()}`));
      return;
    }
    onExit = (): void => reject(new Error(`flanneld exited while waiting for routes: ${node.logTail()}`));
    child.once("exit", onExit);
  });
  let r: Record<string, unknown>;
  try {
    r = await Promise.race([node.probe.call({ cmd: "wait", target, timeoutMs }), died]);
  } finally {
    if (onExit !== undefined) node.child?.off("exit", onExit);
  }
  return {
    t: Number(r.t ?? nowMs()),
    timedOut: r.timeout === true,
    count: Number(r.count),
    probeCpuMs: Number(r.cpuMs),
  };
}

/**
 * Runs every scenario for `n` leases with `backend`; `onResult` gets each as it is measured.
 * Leaves etcd without peer leases.
 */
export async function runControl(
  cluster: ControlCluster,
  n: number,
  backend: string,
  onResult: (s: Scenario) => void,
  opts: { scenarios?: readonly Scenario["name"][]; timeoutMs?: number } = {},
): Promise<void> {
  const want = new Set(
    opts.scenarios ?? ["cold", "batched-removal", "batched", "streamed-removal", "streamed"],
  );
  // Bounded: a scenario that has not converged by then is reported as timed out and the rest skipped.
  const timeoutMs = opts.timeoutMs ?? Math.max(60_000, n * 12);
  const w = cluster.w();
  await cluster.setBackend(backend);
  await w.call({ cmd: "grant", n });
  // The batched writes alone, with no flanneld watching (their floor), then the seed for the cold start.
  const alone: Partial<Record<Scenario["name"], number>> = {};
  if (want.has("batched-removal") || want.has("batched")) {
    const span = (r: Record<string, unknown>): number => Number(r.tEnd) - Number(r.t0);
    alone.batched = span(await w.call({ cmd: "put", mode: "batch", from: 0, to: n }));
    alone["batched-removal"] = span(await w.call({ cmd: "delete", mode: "batch", from: 0, to: n }));
  }
  await w.call({ cmd: "put", mode: "batch", from: 0, to: n });
  const node = cluster.newNode();
  try {
    await node.start();
    const r0 = await waitRoutes(node, n, timeoutMs);
    const cold: Scenario = {
      name: "cold",
      leases: n,
      backend,
      totalMs: r0.t - node.spawnedAt,
      cpuMs: cpuMs(node.pid) ?? NaN,
      sysMs: cpuParts(node.pid)?.sys ?? NaN,
      rssBytes: rssBytes(node.pid) ?? NaN,
      probeCpuMs: r0.probeCpuMs - node.probeCpuAtStart,
    };
    if (r0.timedOut) cold.timedOut = true;
    if (want.has("cold")) onResult(cold);
    let gaveUp = r0.timedOut;

    const measure = async (
      name: Scenario["name"],
      cmd: Record<string, unknown>,
      target: number,
    ): Promise<void> => {
      if (gaveUp) return;
      await sleepMs(300); // let the previous pass and GC settle
      const cpu0 = cpuMs(node.pid) ?? NaN;
      const sys0 = cpuParts(node.pid)?.sys ?? NaN;
      const probeCpu0 = Number((await node.probe.call({ cmd: "cpu" })).cpuMs);
      const wait = waitRoutes(node, target, timeoutMs);
      wait.catch(() => undefined); // awaited below; a flanneld that dies meanwhile must not be "unhandled"
      const wr = await w.call(cmd);
      const r = await wait;
      const s: Scenario = {
        name,
        leases: n,
        backend,
        totalMs: r.t - Number(wr.t0),
        afterLastWriteMs: r.t - Number(wr.tEnd),
        ...(alone[name] === undefined ? {} : { writerAloneMs: alone[name] }),
        cpuMs: (cpuMs(node.pid) ?? NaN) - cpu0,
        sysMs: (cpuParts(node.pid)?.sys ?? NaN) - sys0,
        rssBytes: rssBytes(node.pid) ?? NaN,
        probeCpuMs: r.probeCpuMs - probeCpu0,
        writerCpuMs: Number(wr.cpuMs),
      };
      if (r.timedOut) s.timedOut = gaveUp = true;
      if (want.has(name)) onResult(s);
    };
    // Each removal/add pair leaves the n leases in place, so a pair nobody asked for can be skipped.
    if (want.has("batched-removal") || want.has("batched")) {
      await measure("batched-removal", { cmd: "delete", mode: "batch", from: 0, to: n }, 0);
      await measure("batched", { cmd: "put", mode: "batch", from: 0, to: n }, n);
    }
    if (want.has("streamed-removal") || want.has("streamed")) {
      await measure("streamed-removal", { cmd: "delete", mode: "stream", from: 0, to: n }, 0);
      await measure("streamed", { cmd: "put", mode: "stream", from: 0, to: n }, n);
    }
    await w.call({ cmd: "delete", mode: "batch", from: 0, to: n });
  } finally {
    await node.destroy();
  }
}

/** Daemon start → subnet.env written, with no peers; repeated `runs` times on fresh nodes. */
export async function runStartup(cluster: ControlCluster, runs: number, backend: string): Promise<number[]> {
  await cluster.setBackend(backend);
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const node = cluster.newNode();
    try {
      await node.start();
      out.push(await node.waitSubnetEnv());
    } finally {
      await node.destroy();
    }
  }
  return out;
}

export interface MemoryResult {
  backend: string;
  /**
   * RSS idle, at 1000 and at 10,000 leases: the median of the samples taken every 100 ms over
   * PEAK_WINDOW_MS at rest, starting 3 s after the routes converged. That window holds one periodic full
   * reconcile pass (every 10 s), so the figure does not depend on where the pass falls; a single sample
   * did (docs/performance.md, tenth round).
   */
  idleBytes: number;
  at1000Bytes: number;
  at10000Bytes?: number;
  /** The first of those samples, 3 s after convergence (the figure of earlier rounds). */
  idleAt3sBytes?: number;
  at1000At3sBytes?: number;
  at10000At3sBytes?: number;
  /** RssAnon, median of the same samples (the rest is RssFile: pages of the `node` binary and libraries). */
  idleAnonBytes?: number;
  at1000AnonBytes?: number;
  at10000AnonBytes?: number;
  /** (RSS at 10,000 − RSS at 1000) / 9000, of the medians. */
  bytesPerLease?: number;
  /** The same of the samples 3 s after convergence. */
  bytesPerLeaseAt3s?: number;
  /**
   * The highest of those samples: the window holds at least one periodic full reconcile pass, which dumps
   * the kernel's entries and so allocates per peer.
   */
  idlePeakBytes?: number;
  at1000PeakBytes?: number;
  at10000PeakBytes?: number;
  /**
   * flanneld's CPU time over PEAK_WINDOW_MS, with no lease changing: what it costs at rest, mostly the
   * periodic full reconcile pass (every 10 s) that the window holds.
   */
  idleRestCpuMs?: number;
  at1000RestCpuMs?: number;
  at10000RestCpuMs?: number;
}

const PEAK_WINDOW_MS = 11_000;

/**
 * RSS idle (no peers), at 1000 and (unless quick) at 10,000 peer leases: each sampled every 100 ms over
 * PEAK_WINDOW_MS at rest, from 3 s after the routes converged (median, first sample, peak).
 */
export async function runMemory(
  cluster: ControlCluster,
  backend: string,
  quick: boolean,
): Promise<MemoryResult> {
  const w = cluster.w();
  await cluster.setBackend(backend);
  const max = quick ? 1000 : 10_000;
  await w.call({ cmd: "grant", n: max });
  const node = cluster.newNode();
  interface AtRest {
    median: number;
    at3s: number;
    anon: number;
    peak: number;
    restCpu: number;
  }
  const settle = async (): Promise<AtRest> => {
    await sleepMs(3000);
    const cpu0 = cpuMs(node.pid) ?? NaN;
    const rss: number[] = [];
    const anon: number[] = [];
    for (const end = Date.now() + PEAK_WINDOW_MS; ;) {
      const parts = rssParts(node.pid);
      rss.push(parts?.rss ?? NaN);
      anon.push(parts?.anon ?? NaN);
      if (Date.now() >= end) break;
      await sleepMs(100);
    }
    return {
      median: median(rss),
      at3s: rss[0] ?? NaN,
      anon: median(anon),
      peak: Math.max(...rss),
      restCpu: (cpuMs(node.pid) ?? NaN) - cpu0,
    };
  };
  try {
    await node.start();
    await node.waitSubnetEnv();
    const idle = await settle();
    await w.call({ cmd: "put", mode: "batch", from: 0, to: 1000 });
    await waitRoutes(node, 1000, 120_000);
    const at1000 = await settle();
    const res: MemoryResult = {
      backend,
      idleBytes: idle.median,
      at1000Bytes: at1000.median,
      idleAt3sBytes: idle.at3s,
      at1000At3sBytes: at1000.at3s,
      idlePeakBytes: idle.peak,
      at1000PeakBytes: at1000.peak,
      idleAnonBytes: idle.anon,
      at1000AnonBytes: at1000.anon,
      idleRestCpuMs: idle.restCpu,
      at1000RestCpuMs: at1000.restCpu,
    };
    if (!quick) {
      await w.call({ cmd: "put", mode: "batch", from: 1000, to: max });
      await waitRoutes(node, max, 600_000);
      const at10000 = await settle();
      res.at10000Bytes = at10000.median;
      res.at10000At3sBytes = at10000.at3s;
      res.at10000PeakBytes = at10000.peak;
      res.at10000AnonBytes = at10000.anon;
      res.at10000RestCpuMs = at10000.restCpu;
      res.bytesPerLease = (at10000.median - at1000.median) / (max - 1000);
      res.bytesPerLeaseAt3s = (at10000.at3s - at1000.at3s) / (max - 1000);
    }
    await w.call({ cmd: "delete", mode: "batch", from: 0, to: max });
    return res;
  } finally {
    await node.destroy();
  }
}
