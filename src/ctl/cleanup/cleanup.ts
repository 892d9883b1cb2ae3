// `flannelctl cleanup`: removes what flannel left on a node — its devices (flannel.N, flannel-v6.N,
// flannel0, flannel-wg*, cni0), its iptables chains and the rules jumping to them (both families), its
// nftables tables, host-gw/blackhole routes into the pod network, subnet.env and the CNI data dirs — so a
// node can be re-installed without the stale-state failures of spec §11 (`cni0 already has an IP address
// different from …`, a second network's address on flannel.1). `--dry-run` prints the plan only.
//
// Design notes
// - `planCleanup` is pure over the collected state and returns one action per thing to remove, each with
//   the command an operator would type; the executor runs them in a safe order (jump rules before their
//   chains, routes before devices) and goes on after a failure, reporting every error at the end.
// - Deletions succeed when the thing is already gone (a second run is a no-op that plans nothing).
// - flanneld must be stopped first: a running flanneld re-creates what is removed here.

import { existsSync, rmSync } from "node:fs";
import { errorMessage } from "../../errors.ts";
import { FlagParseError, FlagSet } from "../../cli/flags.ts";
import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import { ExecCommandRunner, type CommandRunner } from "../../kernel/command.ts";
import type { Kernel } from "../../kernel/ports.ts";
import { splitRuleLine } from "../../traffic/rules.ts";
import type { CommandIo } from "../sandbox.ts";
import { collectKernelFacts, readSubnetEnvFact, type KernelFacts } from "../doctor/collect.ts";

export type CleanupAction =
  | { kind: "iptables"; tool: "iptables" | "ip6tables"; args: string[]; text: string }
  | { kind: "nft"; args: string[]; text: string }
  | { kind: "route"; dst: string; gw?: string; dev?: string; type?: string; text: string }
  | { kind: "device"; name: string; text: string }
  | { kind: "file"; path: string; text: string };

export interface CleanupState extends KernelFacts {
  /** `iptables -S` / `iptables -t nat -S` (and ip6tables) output, when the tool works. */
  iptables: { tool: "iptables" | "ip6tables"; table: "filter" | "nat"; lines: string[] }[];
  /** `nft list tables` lines without the `table ` word, e.g. "ip flannel-ipv4". */
  nftTables: string[];
  /** Pod network from subnet.env, for host-gw and blackhole routes. */
  network?: string;
  /** Files and directories that exist and are flannel's. */
  paths: string[];
}

/** Device names flannel creates (any backend) plus the bridge the CNI plugin's delegate creates. */
export function isFlannelDevice(name: string): boolean {
  return /^flannel(\.\d+|-v6\.\d+|\d+|-wg|-wg-v6|\.ipip)$/.test(name) || name === "cni0";
}

const FLANNEL_CHAIN = /^FLANNEL-/;
const FLANNEL_COMMENT = /flanneld (masq|forward)/;

export function planCleanup(s: CleanupState): CleanupAction[] {
  const actions: CleanupAction[] = [];
  // 1. iptables: rules in other chains that jump to a FLANNEL-* chain or carry flannel's comment, then the
  //    chains themselves (flush, delete).
  for (const { tool, table, lines } of s.iptables) {
    const chains: string[] = [];
    for (const line of lines) {
      const t = splitRuleLine(line);
      if (t[0] === "-N" && t[1] !== undefined && FLANNEL_CHAIN.test(t[1])) chains.push(t[1]);
      if (t[0] !== "-A" || t[1] === undefined || FLANNEL_CHAIN.test(t[1])) continue;
      const j = t.indexOf("-j");
      const target = j >= 0 ? t[j + 1] : undefined;
      if ((target !== undefined && FLANNEL_CHAIN.test(target)) || FLANNEL_COMMENT.test(line)) {
        const args = ["-t", table, "-D", ...t.slice(1)];
        actions.push({
          kind: "iptables",
          tool,
          args,
          text: `${tool} -t ${table} -D ${line.replace(/^-A /, "")}`,
        });
      }
    }
    for (const c of chains) {
      actions.push({
        kind: "iptables",
        tool,
        args: ["-t", table, "-F", c],
        text: `${tool} -t ${table} -F ${c}`,
      });
    }
    for (const c of chains) {
      actions.push({
        kind: "iptables",
        tool,
        args: ["-t", table, "-X", c],
        text: `${tool} -t ${table} -X ${c}`,
      });
    }
  }
  // 2. nftables tables.
  for (const t of s.nftTables) {
    const [family, name] = t.split(/\s+/);
    if (family && name && /^flannel-ipv[46]$/.test(name)) {
      actions.push({
        kind: "nft",
        args: ["delete", "table", family, name],
        text: `nft delete table ${family} ${name}`,
      });
    }
  }
  // 3. Routes into the pod network that do not go away with a flannel device: host-gw routes via peers
  //    and the blackhole route of --ip-blackhole-route.
  const network = s.network ? IpNet.tryParse(s.network) : undefined;
  if (network) {
    for (const r of s.routes) {
      const dst = IpNet.tryParse(r.dst);
      if (!dst || !network.containsNet(dst)) continue;
      if (r.dev !== undefined && isFlannelDevice(r.dev)) continue;
      const text = `ip route del ${r.type && r.type !== "unicast" ? `${r.type} ` : ""}${r.dst}${r.gw ? ` via ${r.gw}` : ""}${r.dev ? ` dev ${r.dev}` : ""}`;
      const a: CleanupAction = { kind: "route", dst: r.dst, text };
      if (r.gw) a.gw = r.gw;
      if (r.dev) a.dev = r.dev;
      if (r.type) a.type = r.type;
      actions.push(a);
    }
  }
  // 4. Devices (their routes, neighbours and FDB entries go with them).
  for (const l of s.links) {
    if (isFlannelDevice(l.name))
      actions.push({ kind: "device", name: l.name, text: `ip link delete ${l.name}` });
  }
  // 5. Files.
  for (const p of s.paths) actions.push({ kind: "file", path: p, text: `rm -rf ${p}` });
  return actions;
}

export interface CleanupPaths {
  subnetFile: string;
  cniDataDir: string;
  ipamDataDir: string;
  /** Also remove the CNI config (only when asked: it belongs to the installer). */
  cniConf?: string;
}

async function toolLines(runner: CommandRunner, tool: string, args: string[]): Promise<string[] | undefined> {
  try {
    const r = await runner.run(tool, ["-w", "5", ...args]);
    return r.code === 0 ? r.stdout.split("\n").filter((l) => l.trim() !== "") : undefined;
  } catch {
    return undefined;
  }
}

export async function collectCleanupState(
  kernel: Kernel,
  runner: CommandRunner,
  paths: CleanupPaths,
): Promise<CleanupState> {
  const k = collectKernelFacts(kernel);
  const iptables: CleanupState["iptables"] = [];
  for (const tool of ["iptables", "ip6tables"] as const) {
    for (const table of ["filter", "nat"] as const) {
      const lines = await toolLines(runner, tool, ["-t", table, "-S"]);
      if (lines) iptables.push({ tool, table, lines });
    }
  }
  let nftTables: string[] = [];
  try {
    const r = await runner.run("nft", ["list", "tables"]);
    if (r.code === 0)
      nftTables = r.stdout
        .split("\n")
        .map((l) => l.replace(/^table\s+/, "").trim())
        .filter((l) => l !== "");
  } catch {
    // nft not installed: nothing of ours can be there
  }
  const env = readSubnetEnvFact(paths.subnetFile).values ?? {};
  const state: CleanupState = { ...k, iptables, nftTables, paths: [] };
  const net = (env["FLANNEL_NETWORK"] ?? "").split(",")[0];
  if (net) state.network = net;
  for (const p of [paths.subnetFile, paths.cniDataDir, paths.ipamDataDir, paths.cniConf]) {
    if (p !== undefined && p !== "" && existsSync(p)) state.paths.push(p);
  }
  return state;
}

export async function applyCleanup(
  actions: readonly CleanupAction[],
  deps: { kernel: Kernel; commands: CommandRunner },
): Promise<{ action: CleanupAction; error?: string }[]> {
  const results: { action: CleanupAction; error?: string }[] = [];
  for (const a of actions) {
    try {
      switch (a.kind) {
        case "iptables":
        case "nft": {
          const tool = a.kind === "nft" ? "nft" : a.tool;
          const args = a.kind === "nft" ? a.args : ["-w", "5", ...a.args];
          const r = await deps.commands.run(tool, args);
          if (r.code !== 0) throw new Error(r.stderr.trim() || `exit ${r.code}`);
          break;
        }
        case "route": {
          const dev = a.dev === undefined ? undefined : deps.kernel.links.get(a.dev);
          const route: Parameters<Kernel["routes"]["delete"]>[0] = { family: 4, dst: IpNet.parse(a.dst) };
          if (a.gw) route.gw = IpAddr.parse(a.gw);
          if (dev) route.linkIndex = dev.index;
          // flanneld makes peers' routes through nexthop objects of its own; they go with the route.
          route.nexthop = true;
          if (a.type === "blackhole") route.type = "blackhole";
          deps.kernel.routes.delete(route);
          break;
        }
        case "device":
          deps.kernel.links.delete(a.name);
          break;
        case "file":
          rmSync(a.path, { recursive: true, force: true });
          break;
      }
      results.push({ action: a });
    } catch (err) {
      results.push({ action: a, error: errorMessage(err) });
    }
  }
  return results;
}

export const CLEANUP_USAGE = `Usage: flannelctl cleanup [--dry-run] [options]

Removes what flannel left on this node: flannel devices and cni0, flannel's iptables chains and the rules
jumping to them (IPv4 and IPv6), its nftables tables, host-gw and blackhole routes into the pod network,
subnet.env and the CNI data directories. Stop flanneld (and drain the node's pods) first: a running flanneld
re-creates what this removes. Run as root in the node's network namespace.

Options:
`;

/** Runs `flannelctl cleanup …`; resolves with the exit code. */
export async function cleanupCommand(args: readonly string[], io: CommandIo): Promise<number> {
  const fs = new FlagSet("cleanup");
  const dryRun = fs.bool("dry-run", false, "only list what would be removed");
  const subnetFile = fs.string("subnet-file", "/run/flannel/subnet.env", "flanneld's subnet file");
  const cniDataDir = fs.string("cni-data-dir", "/var/lib/cni/flannel", "the flannel CNI plugin's dataDir");
  const ipamDataDir = fs.string(
    "ipam-data-dir",
    "/var/lib/cni/networks/cbr0",
    "host-local's store for the cbr0 network",
  );
  const cniConf = fs.string(
    "cni-conf",
    "",
    "also remove this CNI config file (e.g. /etc/cni/net.d/10-flannel.conflist)",
  );
  const json = fs.bool("json", false, "print the plan and results as JSON");
  try {
    fs.parse(args);
  } catch (err) {
    if (err instanceof FlagParseError && err.help) {
      io.out(CLEANUP_USAGE + fs.printDefaults());
      return 0;
    }
    io.err(`${errorMessage(err)}\n\n${CLEANUP_USAGE}${fs.printDefaults()}`);
    return 2;
  }
  if (fs.args().length > 0) {
    io.err(`Unexpected argument ${JSON.stringify(fs.args()[0])}: cleanup takes only options\n`);
    return 2;
  }
  const { createNetlinkKernel } = await import("../../kernel/netlink/netlink-kernel.ts");
  const kernel = createNetlinkKernel();
  const commands = new ExecCommandRunner();
  try {
    const state = await collectCleanupState(kernel, commands, {
      subnetFile: subnetFile.value,
      cniDataDir: cniDataDir.value,
      ipamDataDir: ipamDataDir.value,
      cniConf: cniConf.value,
    });
    const actions = planCleanup(state);
    if (dryRun.value) {
      if (json.value) io.out(`${JSON.stringify({ dryRun: true, actions }, null, 2)}\n`);
      else if (actions.length === 0) io.out("Nothing of flannel's is left on this node\n");
      else io.out(`Would remove (${actions.length}):\n${actions.map((a) => `  ${a.text}\n`).join("")}`);
      return 0;
    }
    const results = await applyCleanup(actions, { kernel, commands });
    const failed = results.filter((r) => r.error !== undefined);
    if (json.value) {
      io.out(`${JSON.stringify({ dryRun: false, results }, null, 2)}\n`);
    } else {
      if (actions.length === 0) io.out("Nothing of flannel's is left on this node\n");
      for (const r of results)
        io.out(
          `${r.error === undefined ? "removed" : "FAILED "}  ${r.action.text}${r.error ? `: ${r.error}` : ""}\n`,
        );
    }
    return failed.length > 0 ? 1 : 0;
  } finally {
    kernel.close();
  }
}
