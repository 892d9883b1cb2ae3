// What a container runtime does with CNI plugins, reduced to what the CNI tests need: run one plugin
// binary inside the "node" namespace with CNI_* variables and a netconf on stdin, and run a conflist
// (inject `name`/`cniVersion`, `runtimeConfig` for declared capabilities, chain `prevResult`; DEL in
// reverse order). Also builds the plugin bundle exactly as scripts/build.mjs does, into a temp dir.

import { spawn, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { build, type BuildOptions } from "esbuild";
import type { Netns } from "../helpers/netns.ts";

export const REPO = resolve(import.meta.dirname, "../..");
export const CNI_BIN_DIR = "/usr/lib/cni";

/** How the flannel plugin is started: the built bundle through bin/flannel, or the sources through tsx. */
export type PluginLauncher = { kind: "bundle"; binFlannel: string } | { kind: "tsx" };

/**
 * Builds src/cni/main.ts with the options of scripts/build.mjs into `<dir>/dist/flannel.js` and
 * `<dir>/dist/flannel.cjs` (the one bin/flannel runs) and copies bin/flannel next to them, so the real
 * launcher runs the real bundle without touching the shared dist/.
 */
export async function buildPluginBundle(dir: string): Promise<PluginLauncher> {
  mkdirSync(join(dir, "bin"), { recursive: true });
  const common: BuildOptions = {
    entryPoints: [join(REPO, "src/cni/main.ts")],
    bundle: true,
    platform: "node",
    target: "node20",
    external: ["koffi"],
    logLevel: "warning",
  };
  await build({
    ...common,
    outfile: join(dir, "dist/flannel.js"),
    format: "esm",
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
  });
  await build({ ...common, outfile: join(dir, "dist/flannel.cjs"), format: "cjs" });
  const binFlannel = join(dir, "bin/flannel");
  copyFileSync(join(REPO, "bin/flannel"), binFlannel);
  chmodSync(binFlannel, 0o755);
  return { kind: "bundle", binFlannel };
}

export interface PluginRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed (result or error object); undefined when empty. */
  json: Record<string, unknown> | undefined;
}

export interface Invocation {
  command: string;
  containerId: string;
  netnsPath: string;
  ifName?: string;
  cniPath?: string;
  conf: string;
}

/** Runs the flannel plugin inside `node` (as a runtime on that node would). */
export function runFlannel(node: Netns, launcher: PluginLauncher, inv: Invocation): PluginRun {
  const argv =
    launcher.kind === "bundle"
      ? [launcher.binFlannel]
      : [process.execPath, "--import", "tsx", join(REPO, "src/cni/main.ts")];
  return runBinary(node, argv, inv);
}

function pluginEnv(inv: Invocation): NodeJS.ProcessEnv {
  return {
    // the launcher's shebang finds node on PATH; bridge/portmap find iptables on it
    PATH: `${dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    CNI_COMMAND: inv.command,
    CNI_CONTAINERID: inv.containerId,
    CNI_NETNS: inv.netnsPath,
    CNI_IFNAME: inv.ifName ?? "eth0",
    CNI_PATH: inv.cniPath ?? CNI_BIN_DIR,
  };
}

/** Like runFlannel, without blocking (for running invocations side by side). */
export function runFlannelAsync(node: Netns, launcher: PluginLauncher, inv: Invocation): Promise<PluginRun> {
  const argv =
    launcher.kind === "bundle"
      ? [launcher.binFlannel]
      : [process.execPath, "--import", "tsx", join(REPO, "src/cni/main.ts")];
  return new Promise((resolve, reject) => {
    const child = spawn("ip", ["netns", "exec", node.name, ...argv], { cwd: REPO, env: pluginEnv(inv) });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString("utf8")));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => resolve(toRun(code ?? -1, stdout, stderr)));
    child.stdin.end(inv.conf);
  });
}

/** Runs any CNI plugin binary inside `node`. */
export function runBinary(node: Netns, argv: readonly string[], inv: Invocation): PluginRun {
  const res = spawnSync("ip", ["netns", "exec", node.name, ...argv], {
    cwd: REPO,
    encoding: "utf8",
    input: inv.conf,
    env: pluginEnv(inv),
  });
  return toRun(res.status ?? -1, res.stdout ?? "", res.stderr ?? "");
}

function toRun(code: number, stdout: string, stderr: string): PluginRun {
  let json: Record<string, unknown> | undefined;
  if (stdout.trim() !== "") {
    try {
      json = JSON.parse(stdout) as Record<string, unknown>;
    } catch {
      json = undefined;
    }
  }
  return { code, stdout, stderr, json };
}

export interface ConfList {
  name: string;
  cniVersion: string;
  plugins: Record<string, unknown>[];
}

/**
 * ADD or DEL through a conflist, as libcni does: each plugin's conf gets the list's name and cniVersion,
 * `runtimeConfig` for the capabilities it declares, and (ADD) the previous plugin's result as prevResult.
 * `flannel` is run with `launcher`; every other type from /usr/lib/cni. Stops at the first failure.
 */
export function runConfList(
  node: Netns,
  launcher: PluginLauncher,
  list: ConfList,
  command: "ADD" | "DEL",
  opts: {
    containerId: string;
    netnsPath: string;
    runtimeConfig: Record<string, unknown>;
    prevResult?: unknown;
  },
): PluginRun & { result: unknown } {
  const plugins = command === "ADD" ? list.plugins : [...list.plugins].reverse();
  let prevResult: unknown = command === "DEL" ? opts.prevResult : undefined;
  let last: PluginRun = { code: 0, stdout: "", stderr: "", json: undefined };
  for (const p of plugins) {
    const conf: Record<string, unknown> = { ...p, name: list.name, cniVersion: list.cniVersion };
    const caps = (p["capabilities"] ?? {}) as Record<string, boolean>;
    const rc: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(opts.runtimeConfig)) if (caps[k] === true) rc[k] = v;
    if (Object.keys(rc).length > 0) conf["runtimeConfig"] = rc;
    if (prevResult !== undefined) conf["prevResult"] = prevResult;
    const inv = {
      command,
      containerId: opts.containerId,
      netnsPath: opts.netnsPath,
      conf: JSON.stringify(conf),
    };
    last =
      p["type"] === "flannel"
        ? runFlannel(node, launcher, inv)
        : runBinary(node, [join(CNI_BIN_DIR, String(p["type"]))], inv);
    if (last.code !== 0) return { ...last, result: prevResult };
    if (command === "ADD") prevResult = last.json;
  }
  return { ...last, result: prevResult };
}
