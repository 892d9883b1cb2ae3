// Small pieces every benchmark section uses: child agents inside namespaces, /proc readings, statistics.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const REPO = dirname(BENCH_DIR);
export const nowMs = (): number => performance.timeOrigin + performance.now();

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on every Linux we run on). */
const CLK_TCK = 100;

/** utime + stime of a process in milliseconds (10 ms resolution); undefined when it is gone. */
export function cpuMs(pid: number): number | undefined {
  const c = cpuParts(pid);
  return c === undefined ? undefined : c.user + c.sys;
}

/** utime and stime (time in the kernel: netlink writes, reads, forks) in milliseconds; all threads. */
export function cpuParts(pid: number): { user: number; sys: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { user: (Number(f[11]) * 1000) / CLK_TCK, sys: (Number(f[12]) * 1000) / CLK_TCK };
  } catch {
    return undefined;
  }
}

/** VmRSS of a process in bytes; undefined when it is gone. */
export function rssBytes(pid: number): number | undefined {
  return rssParts(pid)?.rss;
}

/**
 * VmRSS and its two parts that matter here: RssAnon (heap, stacks — what the process itself allocated) and
 * RssFile (mapped pages of files, mostly the `node` binary, shared with every other Node process).
 */
export function rssParts(pid: number): { rss: number; anon: number; file: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string): number =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN) * 1024;
    return { rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------------------------------ interruption

/** What to undo if the bench is interrupted: each section registers its namespaces, directories and lab. */
const undoOnInterrupt = new Set<() => void | Promise<void>>();

/** Registers `undo` to run on SIGINT/SIGTERM; the returned function unregisters it (call it once done). */
export function onInterrupt(undo: () => void | Promise<void>): () => void {
  undoOnInterrupt.add(undo);
  return () => void undoOnInterrupt.delete(undo);
}

/** PIDs of `root`'s descendants (children, their children, …), from /proc. */
export function descendantsOf(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (pid: number): void => {
    for (const c of children.get(pid) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(root);
  return out;
}

function signalDescendants(sig: NodeJS.Signals): void {
  for (const pid of descendantsOf(process.pid)) {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

let stopping = false;

/** True once SIGINT/SIGTERM has been received: the errors of the run being torn down are then expected. */
export function interrupted(): boolean {
  return stopping;
}

/**
 * On SIGINT (Ctrl-C) or SIGTERM: stops the processes the bench started (its own descendants, by PID), runs
 * every registered undo (namespaces, directories, the lab), then exits 130/143. Without it an interrupted run
 * left etcd running and its namespaces behind.
 */
export function handleInterrupts(log: (s: string) => void): void {
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    log(`bench: ${sig}: stopping its processes, deleting its namespaces`);
    void (async (): Promise<void> => {
      const deadline = Date.now() + 20_000;
      // The section that was running goes on until its next step fails and may make more before it does:
      // repeat until nothing is left to undo.
      do {
        signalDescendants("SIGTERM");
        const undos = [...undoOnInterrupt].reverse();
        undoOnInterrupt.clear();
        const all = Promise.allSettled(undos.map((u) => Promise.resolve().then(u)));
        await Promise.race([all, sleepMs(Math.max(0, deadline - Date.now()))]);
        await sleepMs(200);
      } while (undoOnInterrupt.size > 0 && Date.now() < deadline);
      signalDescendants("SIGKILL");
      process.exit(sig === "SIGINT" ? 130 : 143);
    })();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}

/** A bench/agent.ts child running inside a namespace; `call` sends one command and awaits its answer. */
export class Agent {
  private readonly child: ChildProcess;
  private readonly pending: ((v: Record<string, unknown>) => void)[] = [];
  private stderr = "";
  private exited = false;

  constructor(ns: string, role: "writer" | "probe") {
    this.child = spawn(
      "ip",
      ["netns", "exec", ns, process.execPath, "--import", "tsx", join(BENCH_DIR, "agent.ts"), role],
      { stdio: ["pipe", "pipe", "pipe"], cwd: REPO },
    );
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      this.pending.shift()?.(JSON.parse(line) as Record<string, unknown>);
    });
    this.child.stderr?.on("data", (b: Buffer) => (this.stderr = (this.stderr + b.toString()).slice(-4000)));
    // A command written to an agent that has just died fails with EPIPE; its exit answers the pending call.
    this.child.stdin?.on("error", () => undefined);
    this.child.on("exit", () => {
      this.exited = true;
      for (const p of this.pending.splice(0)) p({ error: `agent exited: ${this.stderr}` });
    });
  }

  async call(cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.exited) throw new Error(`agent exited: ${this.stderr}`);
    const res = await new Promise<Record<string, unknown>>((resolve) => {
      this.pending.push(resolve);
      this.child.stdin?.write(`${JSON.stringify(cmd)}\n`);
    });
    if (res.error !== undefined) throw new Error(`agent ${String(cmd.cmd)}: ${String(res.error)}`);
    return res;
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((r) => this.child.once("exit", () => r()));
    this.child.stdin?.end();
    const timer = setTimeout(() => {
      if (this.child.pid !== undefined && !this.exited) process.kill(this.child.pid, "SIGKILL");
    }, 5000);
    await done;
    clearTimeout(timer);
  }
}

export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const idx = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[idx] as number;
}

export const median = (v: readonly number[]): number => quantile(v, 0.5);

export function fmtMs(ms: number | undefined): string {
  if (ms === undefined || Number.isNaN(ms)) return "–";
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(1)} ms`;
}

export function fmtMb(bytes: number | undefined): string {
  return bytes === undefined ? "–" : `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

export const sleepMs = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Runs the bench file `script` again inside the network namespace `ns`, with tsx, `--inner` and `args`, so that
 * what it starts runs there as on a node; its output goes to ours.
 */
export function runInside(ns: string, script: string, args: readonly string[]): void {
  execFileSync("ip", ["netns", "exec", ns, process.execPath, "--import", "tsx", script, "--inner", ...args], {
    stdio: "inherit",
  });
}
