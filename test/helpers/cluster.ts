// Helpers shared by the namespace-cluster tests (test/cluster/*): commands inside a namespace, iproute2 JSON,
// process exits, and the connectivity matrix once a cluster has settled.

import { spawnSync, type ChildProcess } from "node:child_process";
import type { Lab, MatrixResult } from "../../src/ctl/lab/lab.ts";
import { waitFor } from "./netns.ts";

/** Runs `file args…` inside namespace `ns`; never throws. `out` is stdout and stderr together. */
export function nsRun(
  ns: string,
  file: string,
  args: readonly string[],
  input?: string,
): { code: number; out: string; stdout: string } {
  const r = spawnSync("ip", ["netns", "exec", ns, file, ...args], {
    encoding: "utf8",
    timeout: 30_000,
    ...(input === undefined ? {} : { input }),
  });
  return { code: r.status ?? 1, out: `${r.stdout}${r.stderr}`, stdout: r.stdout };
}

/** `ip -json <args>` inside `ns`, parsed ([] for empty output). */
export function ipJson<T>(ns: string, args: readonly string[]): T {
  const out = nsRun(ns, "ip", ["-json", ...args]).stdout.trim();
  return (out === "" ? [] : JSON.parse(out)) as T;
}

/** `bridge -json fdb show dev <dev>` inside `ns`. */
export function bridgeFdb(ns: string, dev: string): { mac: string; dst?: string }[] {
  const out = nsRun(ns, "bridge", ["-json", "fdb", "show", "dev", dev]).stdout.trim();
  return (out === "" ? [] : JSON.parse(out)) as { mac: string; dst?: string }[];
}

/** Resolves once `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

/** Resolves once no process has `pid` (for processes this test did not spawn itself, e.g. the lab's). */
export async function waitPidGone(pid: number): Promise<void> {
  await waitFor(
    () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    },
    10_000,
    `process ${pid} to exit`,
  );
}

/**
 * The connectivity matrix once it is all green, or the last one after 30 s. `up()` returns when every node
 * has its lease; peers' routes, neighbours and FDB entries (and IPv6 DAD on the bridges) may still be settling
 * on a loaded machine, so the first probe is not the verdict.
 */
export async function settledMatrix(lab: Lab): Promise<MatrixResult> {
  let m = await lab.connectivityMatrix();
  const deadline = Date.now() + 30_000;
  while (!m.allOk && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 500));
    m = await lab.connectivityMatrix();
  }
  return m;
}
