// Long-running processes of the lab (etcd, flanneld, iperf3 servers): started detached so that they outlive
// the CLI with `--keep`, output appended to a log file, and identified by PID *and* start time. A PID alone
// is not an identity: after a reboot or a long pause the number may belong to some other program, and the
// lab must never kill that. The start time (field 22 of /proc/<pid>/stat, clock ticks since boot) together
// with the PID is unique for the life of the machine.

import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { FlannelError } from "../../errors.ts";
import { sleep } from "../../util/sleep.ts";
import { nsArgv } from "./exec.ts";

export interface ProcessRecord {
  /** What it is, e.g. `etcd` or `flanneld node1`. */
  role: string;
  pid: number;
  /** Start time from /proc/<pid>/stat (clock ticks since boot), as a decimal string. */
  startTime: string;
  ns?: string;
  logFile?: string;
}

interface ProcStat {
  state: string;
  startTime: string;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself contain spaces and ')'.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = rest[0];
  const startTime = rest[19]; // field 22 overall; `rest` starts at field 3
  if (state === undefined || startTime === undefined) return undefined;
  return { state, startTime };
}

/** The state letter of `pid` from /proc (R, S, T for stopped, Z, …), or undefined when no such process exists. */
export function processState(pid: number): string | undefined {
  return readStat(pid)?.state;
}

/** The start time of `pid`, or undefined when no such process exists. */
export function processStartTime(pid: number): string | undefined {
  return readStat(pid)?.startTime;
}

/** True while the recorded process is the same one and has not exited (a zombie counts as exited). */
export function isAlive(rec: Pick<ProcessRecord, "pid" | "startTime">): boolean {
  const st = readStat(rec.pid);
  return st !== undefined && st.startTime === rec.startTime && st.state !== "Z" && st.state !== "X";
}

export interface StartOptions {
  role: string;
  ns?: string;
  /** stdout and stderr are appended here. */
  logFile: string;
  env?: Record<string, string>;
}

/** Starts `cmd` detached (own process group, not tied to this process's lifetime) and records it. */
export function startDetached(cmd: readonly string[], opts: StartOptions): ProcessRecord {
  const [file, ...args] = cmd;
  if (file === undefined) throw new FlannelError("LAB_START", `Cannot start ${opts.role}: empty command`);
  const [f, a] = nsArgv(opts.ns, file, args);
  const fd = openSync(opts.logFile, "a");
  try {
    const child = spawn(f, a, {
      detached: true,
      stdio: ["ignore", fd, fd],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
    });
    child.on("error", () => {}); // surfaces below as a missing PID or as a dead process
    child.unref();
    const pid = child.pid;
    const startTime = pid === undefined ? undefined : processStartTime(pid);
    if (pid === undefined || startTime === undefined) {
      throw new FlannelError("LAB_START", `Cannot start ${opts.role}: ${f} ${a.join(" ")} did not start`, {
        hint: `check that ${file} exists and is executable`,
      });
    }
    const rec: ProcessRecord = { role: opts.role, pid, startTime, logFile: opts.logFile };
    if (opts.ns !== undefined) rec.ns = opts.ns;
    return rec;
  } finally {
    closeSync(fd);
  }
}

function signalIfAlive(rec: Pick<ProcessRecord, "pid" | "startTime">, sig: NodeJS.Signals): boolean {
  try {
    if (!isAlive(rec)) return false;
    process.kill(rec.pid, sig);
    return true;
  } catch {
    return false; // ESRCH: exited between the check and the kill
  }
}

/** Suspends a recorded process (SIGSTOP); false when it is gone or the PID is now someone else's. */
export function pauseProcess(rec: Pick<ProcessRecord, "pid" | "startTime">): boolean {
  return signalIfAlive(rec, "SIGSTOP");
}

/** Continues a process suspended by `pauseProcess` (SIGCONT). */
export function resumeProcess(rec: Pick<ProcessRecord, "pid" | "startTime">): void {
  signalIfAlive(rec, "SIGCONT");
}

/**
 * Stops a recorded process: SIGTERM, then SIGKILL after `graceMs`. Does nothing when the PID is gone or now
 * belongs to a different process (start time differs). Resolves once it has exited.
 */
export async function stopProcess(rec: ProcessRecord, graceMs = 10_000): Promise<"stopped" | "absent"> {
  if (!isAlive(rec)) return "absent";
  signalIfAlive(rec, "SIGTERM");
  // A paused process (pauseProcess) gets the SIGTERM only once it runs again.
  signalIfAlive(rec, "SIGCONT");
  const deadline = Date.now() + graceMs;
  while (isAlive(rec)) {
    if (Date.now() > deadline) {
      signalIfAlive(rec, "SIGKILL");
      if (Date.now() > deadline + 5_000) break;
    }
    await sleep(50);
  }
  return "stopped";
}

/** The last `maxLines` lines of a log file ("" when it cannot be read). */
export function tailFile(path: string, maxLines = 20): string {
  try {
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    return lines.slice(-maxLines).join("\n");
  } catch {
    return "";
  }
}
