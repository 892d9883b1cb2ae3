// Checks before the lab touches anything: root, and every program it runs, each with the Debian package that
// provides it, so the error says exactly what to install. Pure over an injectable environment for tests.

import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { FlannelError } from "../../errors.ts";

export interface Tool {
  /** A program name looked up in PATH, or an absolute path. */
  name: string;
  /** The Debian package that provides it. */
  pkg: string;
  /** Why the lab needs it. */
  use: string;
}

export const LAB_TOOLS: readonly Tool[] = [
  { name: "ip", pkg: "iproute2", use: "network namespaces, links and addresses" },
  { name: "etcd", pkg: "etcd-server", use: "the cluster's etcd" },
  { name: "etcdctl", pkg: "etcd-client", use: "writing the network config to etcd" },
  {
    name: "/usr/lib/cni/bridge",
    pkg: "containernetworking-plugins",
    use: "attaching pods (bridge + host-local)",
  },
  { name: "/usr/lib/cni/host-local", pkg: "containernetworking-plugins", use: "pod IP allocation" },
  { name: "ping", pkg: "iputils-ping", use: "the connectivity matrix" },
  { name: "iperf3", pkg: "iperf3", use: "the throughput sample" },
  { name: "iptables", pkg: "iptables", use: "flanneld's masquerade and forward rules" },
];

export interface PreflightEnv {
  isRoot: boolean;
  /** Resolves a tool name to a path, or undefined when it is not installed. */
  find(name: string): string | undefined;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Looks a program up in PATH (plus the sbin directories, which a non-login root shell may lack). */
export function findProgram(name: string, pathVar = process.env.PATH ?? ""): string | undefined {
  if (name.includes("/")) return isExecutable(name) ? name : undefined;
  const dirs = [...pathVar.split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
  for (const d of dirs) {
    if (d === "") continue;
    const p = join(d, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

export function systemPreflightEnv(): PreflightEnv {
  return { isRoot: process.getuid?.() === 0, find: (n) => findProgram(n) };
}

/** The problems found (empty when all is well), each a full sentence with the fix. */
export function preflightProblems(env: PreflightEnv, tools: readonly Tool[] = LAB_TOOLS): string[] {
  const problems: string[] = [];
  if (!env.isRoot) {
    problems.push("The sandbox needs root to create network namespaces: run it with sudo or as root");
  }
  const missing = tools.filter((t) => env.find(t.name) === undefined);
  for (const t of missing) {
    problems.push(`${t.name} is not installed (needed for ${t.use}): install the Debian package ${t.pkg}`);
  }
  const pkgs = [...new Set(missing.map((t) => t.pkg))];
  if (pkgs.length > 0) problems.push(`To install everything missing: apt-get install -y ${pkgs.join(" ")}`);
  return problems;
}

/** Throws a FlannelError (code LAB_PREFLIGHT) listing every problem, or returns when there are none. */
export function assertPreflight(
  env: PreflightEnv = systemPreflightEnv(),
  tools: readonly Tool[] = LAB_TOOLS,
): void {
  const problems = preflightProblems(env, tools);
  if (problems.length > 0) {
    throw new FlannelError("LAB_PREFLIGHT", problems.join("\n"), {
      hint: problems.find((p) => p.startsWith("To install")) ?? "run as root",
    });
  }
}
