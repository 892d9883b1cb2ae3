// Experiment: what one resync of flannel's iptables rules costs on a node that runs with --ip-masq (IPv4: the
// masquerade set and the forward set), done as flanneld does it (`rulesExist`: one `iptables -S` per chain) and
// as upstream does it (`-S <flannel chain>` and `-C <rule>` for every rule), alternated in the same namespace.
// Prints, per resync, the processes run, the wall time, and the CPU time of this process and of the iptables
// processes (they are waited for, so /proc/self/stat counts them as children).
//
//   node --import tsx bench/iptables-resync.ts [ROUNDS] [--foreign N]
//
// --foreign N: first fill the nat and filter tables with N rules each in chains of their own (as kube-proxy's
// KUBE-* chains fill a node's tables), jumped to from POSTROUTING and FORWARD before flannel's rules.
//
// Needs root; the script runs itself inside a new namespace (fts-p-ipt-…), deleted at the end, so that iptables
// is started directly, as flanneld starts it on a node.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { Netns } from "../test/helpers/netns.ts";
import { runInside } from "./util.ts";

const argv = process.argv.slice(2);
const rounds = Number(argv.find((a, i) => /^\d+$/.test(a) && argv[i - 1] !== "--foreign") ?? 50);

/** This process's CPU and that of its waited-for children, in ms (clock ticks of 10 ms). */
function cpu(): { self: number; children: number } {
  const f = (readFileSync("/proc/self/stat", "utf8").split(") ")[1] ?? "").split(" ").map(Number);
  const tick = 10;
  return {
    self: ((f[11] ?? 0) + (f[12] ?? 0)) * tick,
    children: ((f[13] ?? 0) + (f[14] ?? 0)) * tick,
  };
}

async function inner(): Promise<void> {
  const { IpNet } = await import("../src/ip/net.ts");
  const { SpawnCommandRunner } = await import("../src/kernel/spawn.ts");
  const { MemoryLogger } = await import("../src/log/logger.ts");
  const { IptablesFamily, bootstrapRules, rulesExist } = await import("../src/traffic/iptables/manager.ts");
  const { flannelChainOf, forwardRules, masqRules } = await import("../src/traffic/rules.ts");
  type Rule = ReturnType<typeof forwardRules>[number];

  const spawn = new SpawnCommandRunner();
  let processes = 0;
  const ipt = new IptablesFamily(
    {
      run: (file, args, opts) => {
        processes++;
        return spawn.run(file, args, opts);
      },
    },
    4,
    new MemoryLogger(),
  );
  const network = IpNet.parse("10.244.0.0/16");
  const sets = [
    masqRules({ network, subnet: IpNet.parse("10.244.1.0/24"), randomFully: true }),
    forwardRules(network),
  ];
  const foreign = Number(argv[argv.indexOf("--foreign") + 1] ?? 0);
  if (argv.includes("--foreign") && foreign > 0) {
    for (const [table, from] of [
      ["nat", "POSTROUTING"],
      ["filter", "FORWARD"],
    ] as const) {
      const lines = [`*${table}`, ":KUBE-BENCH - [0:0]", `-A ${from} -j KUBE-BENCH`];
      for (let i = 0; i < foreign; i++) {
        lines.push(`-A KUBE-BENCH -d 10.96.${i >> 8}.${i & 255}/32 -p tcp --dport 80 -j RETURN`);
      }
      execFileSync("iptables-restore", ["--noflush"], { input: [...lines, "COMMIT", ""].join("\n") });
    }
  }
  for (const rules of sets) await bootstrapRules(ipt, rules, new MemoryLogger());

  // Upstream's ipTablesRulesExist (pkg/trafficmngr/iptables): the flannel chain, then `-C`, for every rule.
  const upstream = async (rules: readonly Rule[]): Promise<boolean> => {
    for (const rule of rules) {
      const chain = flannelChainOf(rule);
      if (chain !== undefined && !(await ipt.chainExists(rule.table, chain))) return false;
      if (!(await ipt.exists(rule))) return false;
    }
    return true;
  };
  const ways: [string, (rules: readonly Rule[]) => Promise<boolean>][] = [
    ["flanneld (rulesExist)", (rules) => rulesExist(ipt, rules)],
    ["upstream (-S and -C per rule)", upstream],
  ];
  const totals = new Map(ways.map(([name]) => [name, { processes: 0, wallMs: 0, self: 0, children: 0 }]));
  for (let r = 0; r < rounds; r++) {
    for (const [name, check] of r % 2 === 0 ? ways : [...ways].reverse()) {
      const t = totals.get(name)!;
      const p0 = processes;
      const c0 = cpu();
      const t0 = performance.now();
      for (const rules of sets) {
        if (!(await check(rules))) throw new Error(`${name}: a rule is missing in a steady state`);
      }
      t.wallMs += performance.now() - t0;
      const c1 = cpu();
      t.self += c1.self - c0.self;
      t.children += c1.children - c0.children;
      t.processes += processes - p0;
    }
  }
  console.log(
    `${rounds} resyncs each of the masquerade and forward rules (IPv4), alternated, with ${foreign} other ` +
      `rules in each table; per resync:`,
  );
  console.log("| way | processes | wall | CPU, this process | CPU, iptables processes |");
  console.log("|---|---|---|---|---|");
  for (const [name, t] of totals) {
    const per = (x: number): string => (x / rounds).toFixed(1);
    console.log(
      `| ${name} | ${per(t.processes)} | ${per(t.wallMs)} ms | ${per(t.self)} ms | ${per(t.children)} ms |`,
    );
  }
  const [ours, theirs] = [...totals.values()];
  if (ours === undefined || theirs === undefined) return;
  console.log(
    `ratio flanneld / upstream: wall ${(ours.wallMs / theirs.wallMs).toFixed(2)}, ` +
      `CPU ${((ours.self + ours.children) / (theirs.self + theirs.children)).toFixed(2)}`,
  );
}

if (argv.includes("--inner")) {
  await inner();
} else {
  const ns = Netns.create("fts-p-ipt");
  try {
    runInside(ns.name, import.meta.filename, argv);
  } finally {
    ns.delete();
  }
}
