// Runs delegate plugins the way the CNI library's `invoke` package does: look the binary up in CNI_PATH,
// run it with the caller's environment (CNI_COMMAND set to the delegated command) and the conf on stdin,
// return its stdout, or turn its failure into the CNI error it printed.

import { statSync } from "node:fs";
import { join } from "node:path";
import { CniCode, CniError } from "./cni-error.ts";
import { isJsonObject } from "./go-json.ts";
import type { DelegateExecutor } from "./plugin.ts";
import { spawnPlugin } from "./spawn.ts";

/** Finds a plugin binary in a colon-separated CNI_PATH; throws naming the plugin and the path searched. */
export function findInPath(plugin: string, cniPath: string): string {
  if (plugin === "") throw new Error("no plugin name provided");
  if (plugin.includes("/")) throw new Error(`invalid plugin name: ${plugin}`);
  const dirs = cniPath === "" ? [] : cniPath.split(":");
  for (const dir of dirs) {
    const full = join(dir, plugin);
    try {
      if (statSync(full).isFile()) return full;
    } catch {
      // not in this directory; try the next one
    }
  }
  throw new Error(
    `failed to find plugin ${JSON.stringify(plugin)} in path [${dirs.join(" ")}]: ` +
      `install it into one of these directories or add its directory to CNI_PATH`,
  );
}

export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** How often a plugin binary that is being replaced ("text file busy") is retried, one second apart. */
const TEXT_FILE_BUSY_RETRIES = 5;

/**
 * Runs a plugin binary with `stdin` and `env`. Resolves with its output when it exits 0; otherwise
 * rejects with the CNI error it printed on stdout (or one built from its stderr).
 */
export async function execPlugin(
  path: string,
  stdin: string,
  env: Record<string, string>,
): Promise<ExecResult> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await runOnce(path, stdin, env);
    } catch (err) {
      const busy = (err as NodeJS.ErrnoException).code === "ETXTBSY";
      if (!busy || attempt >= TEXT_FILE_BUSY_RETRIES) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/**
 * One run, synchronously: the plugin has nothing else to do meanwhile, and a synchronous spawn costs less
 * than spawn with stream objects for the child's pipes (~8 ms less CPU per plugin run on the bench machine).
 */
async function runOnce(path: string, stdin: string, env: Record<string, string>): Promise<ExecResult> {
  const res = await spawnPlugin(path, stdin, env);
  const err = res.error;
  // EPIPE: the plugin exited without reading its stdin; its exit status tells what happened.
  if (err !== undefined && err.code !== "EPIPE") {
    if (err.code === "ETXTBSY") throw err;
    // spawn's wording ("spawn <path> <code>"), which spawnSync words as "spawnSync <path> <code>"
    const why = err.message.replace(/^spawnSync /, "spawn ");
    throw new CniError(0, `netplugin failed with no error message: cannot execute ${path}: ${why}`);
  }
  const stdout = res.stdout.toString("utf8");
  const stderr = res.stderr.toString("utf8");
  if (res.status === 0) return { stdout, stderr };
  const status = res.signal === null ? `exit status ${String(res.status)}` : `signal ${res.signal}`;
  throw pluginError(path, stdout, stderr, status);
}

/** The CNI library's `pluginErr`: the error JSON the plugin printed, else its stderr. */
function pluginError(path: string, stdout: string, stderr: string, status: string): CniError {
  if (stdout.trim() === "") {
    if (stderr.trim() === "")
      return new CniError(0, `netplugin ${path} failed with no error message: ${status}`);
    return new CniError(0, `netplugin ${path} failed: ${JSON.stringify(stderr)}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return new CniError(
      0,
      `netplugin ${path} failed but error parsing its diagnostic message ${JSON.stringify(stdout)}: ${why}`,
    );
  }
  const e = isJsonObject(parsed) ? parsed : {};
  const code = typeof e["code"] === "number" ? e["code"] : 0;
  const msg = typeof e["msg"] === "string" ? e["msg"] : "";
  const details = typeof e["details"] === "string" ? e["details"] : "";
  return new CniError(code, msg, details);
}

/**
 * Where bin/flannel keeps the caller's NODE_EXTRA_CA_CERTS: Node would read and parse that CA bundle at
 * every start, and the plugin opens no TLS connection, so Node runs without it.
 */
export const SAVED_EXTRA_CA_CERTS = "FLANNEL_CNI_NODE_EXTRA_CA_CERTS";

/** The environment the runtime started the plugin with (bin/flannel's change undone), for delegates. */
export function callerEnvironment(
  env: Readonly<Record<string, string | undefined>>,
): Record<string, string | undefined> {
  const saved = env[SAVED_EXTRA_CA_CERTS];
  const out: Record<string, string | undefined> = { ...env };
  delete out[SAVED_EXTRA_CA_CERTS];
  if (saved !== undefined) out["NODE_EXTRA_CA_CERTS"] = saved;
  return out;
}

/** The real delegate executor: binaries from CNI_PATH, the plugin's own environment passed on. */
export class PathDelegateExecutor implements DelegateExecutor {
  constructor(
    private readonly env: Readonly<Record<string, string | undefined>>,
    private readonly stderr: (text: string) => void,
  ) {}

  async add(type: string, conf: string): Promise<string> {
    const { stdout } = await this.run("ADD", type, conf);
    try {
      JSON.parse(stdout);
    } catch {
      throw new CniError(
        CniCode.decodingFailure,
        `delegate plugin ${JSON.stringify(type)} returned a result that is not JSON: ${JSON.stringify(stdout.slice(0, 200))}`,
      );
    }
    return stdout;
  }

  async del(type: string, conf: string): Promise<void> {
    await this.run("DEL", type, conf);
  }

  private async run(command: "ADD" | "DEL", type: string, conf: string): Promise<ExecResult> {
    const path = findInPath(type, this.env["CNI_PATH"] ?? "");
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.env)) if (v !== undefined) env[k] = v;
    env["CNI_COMMAND"] = command;
    const res = await execPlugin(path, conf, env);
    // Informational only, as the CNI library does: pass on whatever the delegate logged.
    if (res.stderr !== "") this.stderr(res.stderr);
    return res;
  }
}

/** True when `netnsPath` is the network namespace this process runs in (same device and inode). */
export function isOwnNetns(netnsPath: string): boolean {
  try {
    const own = statSync("/proc/self/ns/net");
    const other = statSync(netnsPath);
    return own.dev === other.dev && own.ino === other.ino;
  } catch {
    return false; // unreadable: the delegate reports a bad CNI_NETNS better than we can
  }
}
