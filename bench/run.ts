// flannel-ts benchmarks: one command builds its own namespace clusters, prints a table and writes
// bench/results/<date>.json (with the machine, the date and the commit) and a convergence plot (SVG).
//
//   node --import tsx bench/run.ts [--quick] [--only control|memory|cni|datapath] [--cpu-prof DIR]
//                                  [--leases 1000,10000] [--scenarios cold,streamed,...] [--repeat N]
//
// Needs root (network namespaces), `npm run build` (bin/flanneld, bin/flannel), etcd, iperf3 and the CNI
// reference plugins. Every namespace it makes is prefixed fts-p and deleted at the end, also on failure; on
// Ctrl-C or SIGTERM it stops the processes it started, deletes its namespaces and directories, and exits.
// Benchmarks print figures and, under them, which of issue #6's targets this run meets (bench/targets.ts);
// they never fail on a target, and docs/performance.md judges over several runs.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { cpus, freemem, hostname, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import { runCni, type CniResult } from "./cni.ts";
import {
  ControlCluster,
  runControl,
  runMemory,
  runStartup,
  type MemoryResult,
  type Scenario,
  groupScenarios,
} from "./control.ts";
import { runDatapath, type DatapathResult } from "./datapath.ts";
import { convergenceSvg } from "./svg.ts";
import { formatVerdicts, targetVerdicts, type TargetVerdict } from "./targets.ts";
import { BENCH_DIR, fmtMb, fmtMs, handleInterrupts, interrupted, median, REPO } from "./util.ts";

type Section = "control" | "memory" | "cni" | "datapath";
const SECTIONS: readonly Section[] = ["control", "memory", "cni", "datapath"];

interface Results {
  date: string;
  commit: string;
  machine: Record<string, unknown>;
  options: { quick: boolean; only: Section[] };
  startupMs?: number[];
  control?: Scenario[];
  memory?: MemoryResult;
  cni?: CniResult;
  datapath?: DatapathResult[];
  /** The targets of issue #6 against this run (never a failure of the run). */
  targets?: TargetVerdict[];
}

const SCENARIOS: readonly Scenario["name"][] = [
  "cold",
  "batched-removal",
  "batched",
  "streamed-removal",
  "streamed",
];

interface Options {
  quick: boolean;
  only: Section[];
  cpuProf?: string;
  /** Control-plane lease counts (vxlan) instead of the plan; for profiling one size. */
  leases?: number[];
  scenarios?: Scenario["name"][];
  /** Runs of each control-plane size; the table shows medians. Default: 3 for 1000 leases (vxlan), else 1. */
  repeat?: number;
}

function parseArgs(argv: string[]): Options {
  let quick = false;
  const only: Section[] = [];
  let cpuProf: string | undefined;
  let leases: number[] | undefined;
  let scenarios: Scenario["name"][] | undefined;
  let repeat: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--quick") quick = true;
    else if (a === "--only" || a.startsWith("--only=")) {
      const v = a.includes("=") ? a.slice(7) : argv[++i];
      for (const s of (v ?? "").split(",")) {
        if (!SECTIONS.includes(s as Section)) {
          throw new Error(`Unknown section ${JSON.stringify(s)}: use one of ${SECTIONS.join(", ")}`);
        }
        only.push(s as Section);
      }
    } else if (a === "--cpu-prof") cpuProf = argv[++i];
    else if (a === "--leases") {
      const v = argv[++i] ?? "";
      leases = v.split(",").map(Number);
      if (leases.some((n) => !Number.isInteger(n) || n < 1))
        throw new Error(`Invalid --leases ${JSON.stringify(v)}: use positive integers, e.g. 1000,10000`);
    } else if (a === "--scenarios") {
      const v = argv[++i] ?? "";
      scenarios = v.split(",") as Scenario["name"][];
      const bad = scenarios.find((s) => !SCENARIOS.includes(s));
      if (bad !== undefined)
        throw new Error(`Unknown scenario ${JSON.stringify(bad)}: use one of ${SCENARIOS.join(", ")}`);
    } else if (a === "--repeat") {
      const v = argv[++i] ?? "";
      repeat = Number(v);
      if (!Number.isInteger(repeat) || repeat < 1)
        throw new Error(`Invalid --repeat ${JSON.stringify(v)}: use a positive integer, e.g. 3`);
    } else
      throw new Error(
        `Unknown argument ${JSON.stringify(a)}: use --quick, --only SECTION, --cpu-prof DIR, --leases N,..., --scenarios S,..., --repeat N`,
      );
  }
  return {
    quick,
    only: only.length > 0 ? only : [...SECTIONS],
    ...(cpuProf ? { cpuProf } : {}),
    ...(leases ? { leases } : {}),
    ...(scenarios ? { scenarios } : {}),
    ...(repeat !== undefined ? { repeat } : {}),
  };
}

function commit(): string {
  try {
    const head = execFileSync("git", ["rev-parse", "HEAD"], { cwd: REPO, encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], {
      cwd: REPO,
      encoding: "utf8",
    }).trim();
    return dirty === "" ? head : `${head}+dirty`;
  } catch {
    return "unknown";
  }
}

function machine(): Record<string, unknown> {
  return {
    hostname: hostname(),
    cpu: cpus()[0]?.model ?? "unknown",
    cpus: cpus().length,
    memoryBytes: totalmem(),
    freeMemoryBytes: freemem(),
    kernel: release(),
    node: process.version,
    loadavgAtStart: loadavg(),
  };
}

const log = (s: string): void => void process.stderr.write(`${s}\n`);

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error("bench/run.ts needs root (network namespaces)");
  handleInterrupts(log);
  for (const f of ["flanneld.cjs", "flanneld.js", "flannel.js"]) {
    if (!existsSync(join(REPO, "dist", f)))
      throw new Error(`dist/${f} is missing: run \`npm run build\` first`);
  }
  const res: Results = {
    date: new Date().toISOString(),
    commit: commit(),
    machine: machine(),
    options: { quick: opts.quick, only: opts.only },
  };
  const has = (s: Section): boolean => opts.only.includes(s);

  if (has("control") || has("memory")) {
    const cluster = await ControlCluster.create("vxlan");
    if (opts.cpuProf) {
      mkdirSync(opts.cpuProf, { recursive: true });
      cluster.cpuProfDir = opts.cpuProf;
    }
    try {
      if (has("control")) {
        if (opts.leases === undefined) {
          log("control: daemon start → subnet.env");
          res.startupMs = await runStartup(cluster, opts.quick ? 2 : 5, "vxlan");
        }
        res.control = [];
        // [leases, backend, runs]: the sizes with targets (1000 leases, vxlan) run three times, as single runs
        // on this shared machine moved by up to 1.5× between runs.
        type Step = [leases: number, backend: string, runs: number];
        const defaults: Step[] = opts.quick
          ? [
              [100, "vxlan", 1],
              [1000, "vxlan", 3],
            ]
          : [
              [100, "vxlan", 1],
              [1000, "vxlan", 3],
              [1000, "host-gw", 1],
              [3000, "vxlan", 1],
              [10_000, "vxlan", 1],
            ];
        const plan: Step[] = opts.leases
          ? opts.leases.map((n) => [n, "vxlan", opts.repeat ?? 1])
          : defaults.map(([n, backend, runs]) => [n, backend, opts.repeat ?? runs]);
        for (const [n, backend, runs] of plan) {
          for (let round = 1; round <= runs; round++) {
            log(`control: ${n} leases, ${backend}${runs > 1 ? ` (run ${round} of ${runs})` : ""}`);
            await runControl(
              cluster,
              n,
              backend,
              (s) => {
                if (runs > 1) s.round = round;
                res.control?.push(s);
                log(
                  `  ${s.name}: ${fmtMs(s.totalMs)}${s.timedOut ? " (timed out)" : ""}, cpu ${fmtMs(s.cpuMs)}`,
                );
              },
              opts.scenarios ? { scenarios: opts.scenarios } : {},
            );
          }
        }
      }
      if (has("memory")) {
        log("memory: RSS idle / 1000 / 10,000 leases");
        res.memory = await runMemory(cluster, "vxlan", opts.quick);
      }
    } finally {
      await cluster.destroy();
    }
  }
  if (has("cni")) {
    const pods = opts.quick ? 30 : 100;
    log(`cni: ADD/DEL of ${pods} pods, ours and bridge alone`);
    res.cni = await runCni(pods);
  }
  if (has("datapath")) {
    res.datapath = [];
    for (const backend of ["vxlan", "host-gw", "udp"]) {
      log(`datapath: ${backend}`);
      res.datapath.push(await runDatapath(backend, opts.quick ? 3 : 10));
    }
  }

  res.targets = targetVerdicts(res);
  const dir = join(BENCH_DIR, "results");
  mkdirSync(dir, { recursive: true });
  const stamp = res.date.replace(/[:.]/g, "-");
  const jsonFile = join(dir, `${stamp}.json`);
  writeFileSync(jsonFile, `${JSON.stringify(res, null, 2)}\n`);
  let svgFile: string | undefined;
  if (res.control && res.control.length > 0) {
    svgFile = join(dir, `${stamp}-convergence.svg`);
    writeFileSync(svgFile, convergenceSvg(res.control, res.date, res.commit));
  }
  process.stdout.write(`${formatTable(res)}\n${formatVerdicts(res.targets)}\n`);
  log(`wrote ${jsonFile}${svgFile ? ` and ${svgFile}` : ""}`);
}

/** The results as a Markdown table (what docs/performance.md holds). */
export function formatTable(r: Results): string {
  const rows: string[][] = [];
  const mach = r.machine;
  const head = `${String(mach.cpus)}× ${String(mach.cpu)}, ${(Number(mach.memoryBytes) / 2 ** 30).toFixed(0)} GB, Linux ${String(mach.kernel)}, Node ${String(mach.node)}, load ${(mach.loadavgAtStart as number[]).map((x) => x.toFixed(1)).join(" ")}`;
  if (r.startupMs)
    rows.push(["daemon start → subnet.env written (median)", fmtMs(median(r.startupMs)), "", ""]);
  for (const { median: s, runs } of groupScenarios(r.control ?? [])) {
    // Repeated runs: the median, then every run in the order they ran.
    const each = (f: (x: Scenario) => number | undefined): string =>
      runs.length > 1 ? ` (${runs.map((x) => fmtMs(f(x) ?? NaN)).join(", ")})` : "";
    const label = {
      cold: "cold start → all routes",
      batched: "batched add (100/txn) → all routes",
      "batched-removal": "batched removal (100/txn) → no routes",
      streamed: "streamed add (single puts) → all routes",
      "streamed-removal": "streamed removal → no routes",
    }[s.name];
    rows.push([
      `${label}, ${s.leases} leases, ${s.backend}${runs.length > 1 ? `, median of ${runs.length}` : ""}`,
      `${fmtMs(s.totalMs)}${s.timedOut ? " (timed out)" : ""}${each((x) => x.totalMs)}`,
      [
        s.afterLastWriteMs === undefined
          ? ""
          : `${fmtMs(s.afterLastWriteMs)}${each((x) => x.afterLastWriteMs)}`,
        s.writerAloneMs === undefined ? "" : `writer alone ${fmtMs(s.writerAloneMs)}`,
      ]
        .filter((x) => x !== "")
        .join("; "),
      [
        `${fmtMs(s.cpuMs)}${each((x) => x.cpuMs)}${s.sysMs === undefined ? "" : `; sys ${fmtMs(s.sysMs)}`}`,
        s.probeCpuMs === undefined ? "" : `probe ${fmtMs(s.probeCpuMs)}`,
        s.writerCpuMs === undefined ? "" : `writer ${fmtMs(s.writerCpuMs)}`,
      ]
        .filter((x) => x !== "")
        .join("; "),
    ]);
  }
  if (r.memory) {
    const m = r.memory;
    const beside = (at3s: number | undefined, b: number | undefined, anon: number | undefined): string =>
      [
        at3s === undefined ? "" : `at 3 s ${fmtMb(at3s)}`,
        b === undefined ? "" : `peak ${fmtMb(b)}`,
        anon === undefined ? "" : `anon ${fmtMb(anon)}`,
      ]
        .filter((x) => x !== "")
        .join(", ");
    // flanneld's CPU over the 11 s after each figure, with no lease changing (one periodic full pass).
    const rest = (ms: number | undefined): string => (ms === undefined ? "" : `${fmtMs(ms)} in 11 s at rest`);
    rows.push([
      "flanneld RSS idle (median of 11 s at rest)",
      fmtMb(m.idleBytes),
      beside(m.idleAt3sBytes, m.idlePeakBytes, m.idleAnonBytes),
      rest(m.idleRestCpuMs),
    ]);
    rows.push([
      "flanneld RSS at 1000 leases (median of 11 s at rest)",
      fmtMb(m.at1000Bytes),
      beside(m.at1000At3sBytes, m.at1000PeakBytes, m.at1000AnonBytes),
      rest(m.at1000RestCpuMs),
    ]);
    if (m.at10000Bytes !== undefined)
      rows.push([
        "flanneld RSS at 10,000 leases (median of 11 s at rest)",
        fmtMb(m.at10000Bytes),
        beside(m.at10000At3sBytes, m.at10000PeakBytes, m.at10000AnonBytes),
        rest(m.at10000RestCpuMs),
      ]);
    if (m.bytesPerLease !== undefined) {
      rows.push([
        "RSS growth per lease (1000 → 10,000), of the medians",
        `${(m.bytesPerLease / 1024).toFixed(2)} KB`,
        m.bytesPerLeaseAt3s === undefined ? "" : `at 3 s ${(m.bytesPerLeaseAt3s / 1024).toFixed(2)} KB`,
        "",
      ]);
    }
  }
  if (r.cni) {
    const c = r.cni;
    const f = (s: { medianMs: number; p99Ms: number }): string => `${fmtMs(s.medianMs)} / ${fmtMs(s.p99Ms)}`;
    rows.push([
      `CNI ADD median / p99 (${c.pods} pods): flannel`,
      f(c.flannelAdd),
      `bridge alone ${f(c.bridgeAdd)}`,
      "",
    ]);
    rows.push([
      `CNI DEL median / p99 (${c.pods} pods): flannel`,
      f(c.flannelDel),
      `bridge alone ${f(c.bridgeDel)}`,
      "",
    ]);
    rows.push([
      "CNI ADD overhead over bridge (medians); `node -e 0` in the same run",
      fmtMs(c.addOverheadMs),
      `node -e 0 ${f(c.nodeStartup)}`,
      "",
    ]);
  }
  for (const d of r.datapath ?? []) {
    const g = (bps: number): string => `${(bps / 1e9).toFixed(2)} Gbit/s`;
    rows.push([
      `pod→pod TCP, ${d.backend}`,
      d.error !== undefined ? `failed: ${d.error.split("\n")[0] ?? ""}` : g(d.podToPodBps),
      d.error !== undefined ? "" : `node→node ${g(d.nodeToNodeBps)}, ratio ${d.ratio.toFixed(2)}`,
      "",
    ]);
    const p = d.flanneldPaused;
    if (p !== undefined) {
      rows.push([
        `pod→pod TCP, ${d.backend}, every flanneld suspended (SIGSTOP)`,
        g(p.podToPodBps),
        `node→node ${g(p.nodeToNodeBps)}, ratio ${p.ratio.toFixed(2)}; running / suspended ${(d.ratio / p.ratio).toFixed(2)}`,
        "",
      ]);
    }
  }
  const lines = [
    `Machine: ${head}. Date ${r.date}, commit ${r.commit}.`,
    "",
    "| measurement | result | after last write / beside / peak | flanneld CPU; the probe's and writer's meanwhile |",
    "|---|---|---|---|",
    ...rows.map((c) => `| ${c.join(" | ")} |`),
  ];
  return lines.join("\n");
}

main().catch((err: unknown) => {
  if (interrupted()) return; // the interrupt handler is tearing the run down and exits
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
