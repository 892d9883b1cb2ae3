// A CommandRunner that behaves like iptables/ip6tables/iptables-restore closely enough for the manager's
// logic to be tested without root: per-binary tables of chains of rules, the exit codes the real tools use
// (`-C` absent → 1, missing jump target → 2, `-X` of a referenced chain → 1), atomic restore transactions,
// and a record of every call. `dump()` prints the state as `iptables -S` would.

import type { CommandResult, CommandRunner } from "../../kernel/command.ts";
import { buildRestorePayload, splitRuleLine } from "../rules.ts";

export interface FakeCall {
  file: string;
  args: string[];
  stdin: string | undefined;
}

type Tables = Map<string, Map<string, string[][]>>;

const BUILTIN: Record<string, string[]> = {
  nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
  filter: ["INPUT", "FORWARD", "OUTPUT"],
};
const TARGETS = new Set(["ACCEPT", "DROP", "RETURN", "MASQUERADE", "REJECT", "SNAT", "DNAT"]);

export class FakeIptables implements CommandRunner {
  readonly calls: FakeCall[] = [];
  /** Version printed by `--version`; null makes the binaries "not installed" (spawn rejects with ENOENT). */
  version: string | null = "1.8.9";
  private readonly state = new Map<string, Tables>([
    ["iptables", new Map()],
    ["ip6tables", new Map()],
  ]);

  async run(file: string, args: readonly string[], opts: { stdin?: string } = {}): Promise<CommandResult> {
    this.calls.push({ file, args: [...args], stdin: opts.stdin });
    if (this.version === null) {
      throw Object.assign(new Error(`spawn ${file} ENOENT`), { code: "ENOENT" });
    }
    if (args[0] === "--version") return ok(`${file} v${this.version} (nf_tables)\n`);
    const bin = file.replace("-restore", "");
    const tables = this.state.get(bin);
    if (!tables) return fail(127, `unknown program ${file}`);
    if (file.endsWith("-restore")) return this.restore(tables, opts.stdin ?? "");
    const rest = [...args];
    if (rest[0] === "--wait") rest.shift();
    let table = "filter";
    if (rest[0] === "-t") {
      table = rest[1] ?? "filter";
      rest.splice(0, 2);
    }
    return exec(this.table(tables, table), rest);
  }

  /** Calls of one program, e.g. `callsOf("iptables-restore")`. */
  callsOf(file: string): FakeCall[] {
    return this.calls.filter((c) => c.file === file);
  }

  /** Runs an iptables command directly against the state (to arrange a test), throwing on failure. */
  exec(bin: string, table: string, args: string[]): void {
    const res = exec(this.table(this.state.get(bin)!, table), args);
    if (res.code !== 0) throw new Error(`fake ${bin} -t ${table} ${args.join(" ")}: ${res.stderr}`);
  }

  /** `iptables -t <table> -S [chain]` output. */
  dump(bin: string, table: string, chain?: string): string {
    return exec(this.table(this.state.get(bin)!, table), chain === undefined ? ["-S"] : ["-S", chain]).stdout;
  }

  private table(tables: Tables, name: string): Map<string, string[][]> {
    let t = tables.get(name);
    if (!t) {
      t = new Map((BUILTIN[name] ?? []).map((c) => [c, []]));
      tables.set(name, t);
    }
    return t;
  }

  private restore(tables: Tables, stdin: string): CommandResult {
    // Work on a copy so that a failing transaction changes nothing, like the real tool.
    const copy: Tables = new Map(
      [...tables].map(([n, t]) => [n, new Map([...t].map(([c, r]) => [c, [...r]]))]),
    );
    let current: Map<string, string[][]> | undefined;
    for (const [i, line] of stdin.split("\n").entries()) {
      if (line === "" || line.startsWith("#")) continue;
      if (line.startsWith("*")) {
        current = this.table(copy, line.slice(1));
      } else if (line === "COMMIT") {
        current = undefined;
      } else {
        if (!current) return fail(2, `line ${i + 1}: rule outside a table`);
        const res = exec(current, splitRuleLine(line));
        if (res.code !== 0) return fail(res.code, `line ${i + 1} failed: ${res.stderr}`);
      }
    }
    for (const [n, t] of copy) tables.set(n, t);
    return ok("");
  }
}

function ok(stdout: string): CommandResult {
  return { code: 0, stdout, stderr: "" };
}

function fail(code: number, stderr: string): CommandResult {
  return { code, stdout: "", stderr };
}

function same(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}

function jumpTarget(spec: readonly string[]): string | undefined {
  const j = spec.findIndex((t) => t === "-j" || t === "-g");
  return j === -1 ? undefined : spec[j + 1];
}

function line(chain: string, spec: readonly string[]): string {
  return buildRestorePayload({ x: [["-A", chain, ...spec]] }).split("\n")[1] ?? "";
}

function exec(t: Map<string, string[][]>, args: readonly string[]): CommandResult {
  const [op, chain, ...spec] = args;
  const rules = chain === undefined ? undefined : t.get(chain);
  const builtin = (c: string): boolean => Object.values(BUILTIN).some((cs) => cs.includes(c));
  const targetOk = (): boolean => {
    const target = jumpTarget(spec);
    return target === undefined || TARGETS.has(target) || t.has(target);
  };
  switch (op) {
    case "-S": {
      if (chain !== undefined && !rules) return fail(1, `iptables: chain ${chain} does not exist`);
      const chains = chain === undefined ? [...t.keys()] : [chain];
      const heads = chains.map((c) => (builtin(c) ? `-P ${c} ACCEPT` : `-N ${c}`));
      const body = chains.flatMap((c) => (t.get(c) ?? []).map((r) => line(c, r)));
      return ok([...heads, ...body].map((l) => l + "\n").join(""));
    }
    case "-C":
      if (!targetOk()) return fail(2, `Chain '${jumpTarget(spec)}' does not exist`);
      if (!rules) return fail(1, "iptables: Bad rule (does a matching rule exist in that chain?).");
      return rules.some((r) => same(r, spec)) ? ok("") : fail(1, "iptables: Bad rule");
    case "-A":
      if (!rules) return fail(1, `iptables: chain ${chain} does not exist`);
      if (!targetOk()) return fail(2, `Chain '${jumpTarget(spec)}' does not exist`);
      rules.push(spec);
      return ok("");
    case "-D": {
      const i = rules ? rules.findIndex((r) => same(r, spec)) : -1;
      if (!rules || i === -1)
        return fail(1, "iptables: Bad rule (does a matching rule exist in that chain?).");
      rules.splice(i, 1);
      return ok("");
    }
    case "-N":
      if (rules) return fail(1, "iptables: Chain already exists.");
      t.set(chain!, []);
      return ok("");
    case "-F":
      if (!rules) return fail(1, "iptables: No chain/target/match by that name.");
      rules.length = 0;
      return ok("");
    case "-X": {
      if (!rules) return fail(1, "iptables: No chain/target/match by that name.");
      const referenced = [...t.values()].some((rs) => rs.some((r) => jumpTarget(r) === chain));
      if (referenced || rules.length > 0) return fail(1, "CHAIN_DEL failed (Device or resource busy)");
      t.delete(chain!);
      return ok("");
    }
    default:
      return fail(2, `unsupported fake iptables command: ${args.join(" ")}`);
  }
}
