// Network namespaces for tests. The safety rule: every network change a test makes happens inside a
// namespace the test created here; the namespace is deleted afterwards (which also deletes its devices).
// Node cannot move itself into a namespace (setns moves one thread only), so code under test runs in a
// child process: `ip netns exec <ns> node --import tsx <script>`.

import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import type { TestContext } from "node:test";

let counter = 0;

/** Skips the test (with the reason) unless running as root with iproute2 available. */
export function requireRoot(t: TestContext): boolean {
  if (process.getuid?.() !== 0) {
    t.skip("needs root (network namespaces)");
    return false;
  }
  return true;
}

/** A name unique to this process: `<prefix>-<pid>-<n>`. Keep prefixes short (link names max 15 chars). */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

export class Netns {
  private constructor(readonly name: string) {}

  /** Creates a namespace with `lo` up. */
  static create(prefix = "fts"): Netns {
    const name = uniqueName(prefix);
    execFileSync("ip", ["netns", "add", name]);
    const ns = new Netns(name);
    ns.run("ip", ["link", "set", "lo", "up"]);
    return ns;
  }

  /** Runs a command inside the namespace; throws with its stderr when it fails. Returns stdout. */
  run(file: string, args: readonly string[], opts: { input?: string } = {}): string {
    const res = spawnSync("ip", ["netns", "exec", this.name, file, ...args], {
      encoding: "utf8",
      input: opts.input ?? "",
    });
    if (res.status !== 0) {
      throw new Error(`[${this.name}] ${file} ${args.join(" ")} failed (${res.status}): ${res.stderr}`);
    }
    return res.stdout;
  }

  /** Like run, but returns the result instead of throwing. */
  tryRun(file: string, args: readonly string[]): { code: number; stdout: string; stderr: string } {
    const res = spawnSync("ip", ["netns", "exec", this.name, file, ...args], { encoding: "utf8" });
    return { code: res.status ?? 1, stdout: res.stdout, stderr: res.stderr };
  }

  /** `ip -json <args>` inside the namespace, parsed. */
  ipJson<T = unknown>(args: readonly string[]): T {
    const out = this.run("ip", ["-json", ...args]);
    return (out.trim() === "" ? [] : JSON.parse(out)) as T;
  }

  /** Runs a TypeScript file inside the namespace with node + tsx; resolves with its stdout. */
  runTs(file: string, args: readonly string[] = [], env: NodeJS.ProcessEnv = {}): string {
    return this.run("env", [
      ...Object.entries(env).map(([k, v]) => `${k}=${v ?? ""}`),
      process.execPath,
      "--import",
      "tsx",
      file,
      ...args,
    ]);
  }

  /** Starts a long-running process inside the namespace. The caller kills it (by this PID) when done. */
  spawn(file: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
    return spawn("ip", ["netns", "exec", this.name, file, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...opts.env },
    });
  }

  /** Deletes the namespace (and with it every device inside it). Safe to call twice. */
  delete(): void {
    spawnSync("ip", ["netns", "delete", this.name]);
  }
}

/**
 * Connects two namespaces with a veth pair and assigns addresses, e.g.
 * `link(a, "eth0", "10.0.0.1/24", b, "eth0", "10.0.0.2/24")`.
 */
export function vethPair(
  a: Netns,
  aName: string,
  aAddr: string | null,
  b: Netns,
  bName: string,
  bAddr: string | null,
): void {
  const tmpA = uniqueName("va").slice(0, 15);
  const tmpB = uniqueName("vb").slice(0, 15);
  // Created inside `a` so that nothing ever appears in the root namespace.
  a.run("ip", ["link", "add", tmpA, "type", "veth", "peer", "name", tmpB]);
  a.run("ip", ["link", "set", tmpB, "netns", b.name]);
  a.run("ip", ["link", "set", tmpA, "name", aName]);
  b.run("ip", ["link", "set", tmpB, "name", bName]);
  if (aAddr) a.run("ip", ["addr", "add", aAddr, "dev", aName]);
  if (bAddr) b.run("ip", ["addr", "add", bAddr, "dev", bName]);
  a.run("ip", ["link", "set", aName, "up"]);
  b.run("ip", ["link", "set", bName, "up"]);
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes; returns the value or throws. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
