// Running one command, optionally inside a network namespace, for the lab's plumbing. Node cannot enter a
// namespace itself (setns moves one thread only), so every namespaced command goes through `ip netns exec`,
// which enters the namespace and then execs the command (the PID stays the same — the lab relies on that
// to record the PIDs of flanneld and etcd).

import { spawn, spawnSync } from "node:child_process";
import { FlannelError } from "../../errors.ts";

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Network namespace to run in (by `ip netns` name); default: the current one. */
  ns?: string;
  /** Text written to stdin. */
  input?: string;
  /** Extra environment variables (added to this process's environment). */
  env?: Record<string, string>;
  /** Kill the command after this long; default 60 s. */
  timeoutMs?: number;
}

/** argv for running `file args` in `ns` (or directly when no namespace is given). */
export function nsArgv(ns: string | undefined, file: string, args: readonly string[]): [string, string[]] {
  return ns === undefined ? [file, [...args]] : ["ip", ["netns", "exec", ns, file, ...args]];
}

/** Runs a command to completion; never throws for a non-zero exit. */
export function tryExec(file: string, args: readonly string[], opts: ExecOptions = {}): ExecResult {
  const [f, a] = nsArgv(opts.ns, file, args);
  const res = spawnSync(f, a, {
    encoding: "utf8",
    input: opts.input ?? "",
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
    timeout: opts.timeoutMs ?? 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const stderr = (res.stderr ?? "") + (res.error ? `${res.stderr ? "\n" : ""}${res.error.message}` : "");
  return { code: res.status ?? 1, stdout: res.stdout ?? "", stderr };
}

/** Runs a command to completion; throws a FlannelError (code `LAB_COMMAND`) with its stderr when it fails. */
export function exec(file: string, args: readonly string[], opts: ExecOptions = {}): string {
  const res = tryExec(file, args, opts);
  if (res.code !== 0) {
    const where = opts.ns === undefined ? "" : `[${opts.ns}] `;
    throw new FlannelError(
      "LAB_COMMAND",
      `${where}${file} ${args.join(" ")} failed with exit code ${res.code}: ${res.stderr.trim() || res.stdout.trim()}`,
    );
  }
  return res.stdout;
}

/** Like tryExec, but asynchronous, so several commands (pings) can run at once. */
export function tryExecAsync(
  file: string,
  args: readonly string[],
  opts: ExecOptions = {},
): Promise<ExecResult> {
  const [f, a] = nsArgv(opts.ns, file, args);
  return new Promise((resolve) => {
    const child = spawn(f, a, {
      stdio: ["pipe", "pipe", "pipe"],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      timeout: opts.timeoutMs ?? 60_000,
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", (err) => resolve({ code: 127, stdout, stderr: stderr + err.message }));
    child.on("close", (code, sig) => resolve({ code: code ?? (sig ? 128 : 1), stdout, stderr }));
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}
