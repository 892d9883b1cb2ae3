// IptablesManager: flannel's masquerade and forward rules through iptables/ip6tables (spec §6.1).
//
// Design notes:
// - Rules are installed as one `iptables-restore --noflush` transaction per table: for every rule in order,
//   `-D` it if it exists, then `-A` it. The set lands contiguous and in order, with nothing of anyone else's
//   in between, and without flushing rules other tools keep in the same built-in chains.
// - The resync loop checks each rule with `iptables -C` (cheap, read-only) and only when something is
//   missing re-runs the whole delete+append transaction, because order matters (RETURN before MASQUERADE).
//   With all rules present a resync costs one `-S`/`-C` per rule and writes nothing.
// - Everything that touches one family's tables is serialized through a per-family queue: the masquerade and
//   forward loops must not interleave a check with the other's restore (upstream holds a mutex for the same
//   reason).
// - Tool capabilities come from `iptables --version` (>= 1.6.2: `--wait` for iptables-restore and
//   `--random-fully`), probed once per family. A missing binary is reported with upstream's text and is not
//   fatal for setup (upstream behaviour); recycling rules of a changed subnet is, because stale MASQUERADE
//   rules for the old subnet would keep NATing traffic that must not be NATed.
// - cleanUp removes the jump rules into our chains before flushing and deleting them, so nothing is left
//   behind (upstream leaves the jumps and thereby its chains: spec Appendix A7).

import type { ReconcileMetrics } from "../../metrics/metrics.ts";
import { errorMessage, FlannelError } from "../../errors.ts";
import type { IpNet } from "../../ip/net.ts";
import type { CommandResult, CommandRunner } from "../../kernel/command.ts";
import type { Logger } from "../../log/logger.ts";
import { isAbort, sleep } from "../../util/sleep.ts";
import type { ForwardRulesOpts, MasqRulesOpts, TrafficFamilies, TrafficManager } from "../manager.ts";
import {
  buildRestorePayload,
  FLANNEL_CHAINS,
  flannelChainOf,
  forwardRules,
  FWD_CHAIN,
  masqRules,
  POSTRTG_CHAIN,
  splitRuleLine,
  type IptablesRule,
  type RestoreLine,
} from "../rules.ts";

export interface IptablesManagerOptions {
  commands: CommandRunner;
  logger: Logger;
  /** `--iptables-resync` in milliseconds: how often the rules are checked and repaired. */
  resyncMs: number;
  /** `--ip-masq-fully-random-disable`: never add `--random-fully`. */
  randomFullyDisable?: boolean;
  /** Where resync durations and rule repairs are reported (flanneld's /metrics). */
  metrics?: ReconcileMetrics;
}

interface Capabilities {
  /** iptables >= 1.4.20 understands `--wait` on every command. */
  wait: boolean;
  /** iptables(-restore) >= 1.6.2: `iptables-restore --wait` and `MASQUERADE --random-fully`. */
  restoreWait: boolean;
  randomFully: boolean;
}

type Probe = { ok: true; caps: Capabilities } | { ok: false; error: string };

/** Parses `v1.8.9` out of `iptables --version` output (upstream's regex); undefined when absent. */
export function parseIptablesVersion(text: string): [number, number, number] | undefined {
  const m = /v([0-9]+)\.([0-9]+)\.([0-9]+)/.exec(text);
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

function atLeast(v: [number, number, number], want: [number, number, number]): boolean {
  for (let i = 0; i < 3; i++) {
    if (v[i]! !== want[i]!) return v[i]! > want[i]!;
  }
  return true;
}

function notFound(file: string): string {
  // Go's exec.LookPath text, which upstream prints after "binary was not found: ".
  return `exec: "${file}": executable file not found in $PATH`;
}

/** iptables or ip6tables: the commands flannel needs, over a CommandRunner. */
export class IptablesFamily {
  readonly cmd: string;
  readonly restoreCmd: string;
  private probed: Promise<Probe> | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly commands: CommandRunner,
    readonly family: 4 | 6,
    private readonly log: Logger,
  ) {
    this.cmd = family === 4 ? "iptables" : "ip6tables";
    this.restoreCmd = family === 4 ? "iptables-restore" : "ip6tables-restore";
  }

  /** `iptables --version`, once. Never rejects. */
  probe(): Promise<Probe> {
    this.probed ??= (async (): Promise<Probe> => {
      let res: CommandResult;
      try {
        res = await this.commands.run(this.cmd, ["--version"]);
      } catch (err) {
        return { ok: false, error: isEnoent(err) ? notFound(this.cmd) : errorMessage(err) };
      }
      const v = parseIptablesVersion(res.stdout + res.stderr);
      if (res.code !== 0 || v === undefined) {
        return {
          ok: false,
          error: `no iptables version found in string: ${(res.stdout + res.stderr).trim()}`,
        };
      }
      const modern = atLeast(v, [1, 6, 2]);
      return { ok: true, caps: { wait: atLeast(v, [1, 4, 20]), restoreWait: modern, randomFully: modern } };
    })();
    return this.probed;
  }

  /** Runs `fn` after every earlier queued operation of this family has finished. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async caps(): Promise<Capabilities> {
    const p = await this.probe();
    if (!p.ok) throw new FlannelError("IPTABLES_MISSING", p.error);
    return p.caps;
  }

  /** Runs `iptables [--wait] -t <table> <args>`; resolves with the result whatever the exit code. */
  async run(table: string, args: readonly string[]): Promise<CommandResult> {
    const caps = await this.caps();
    const full = [...(caps.wait ? ["--wait"] : []), "-t", table, ...args];
    try {
      return await this.commands.run(this.cmd, full);
    } catch (err) {
      throw new FlannelError("IPTABLES_MISSING", isEnoent(err) ? notFound(this.cmd) : errorMessage(err));
    }
  }

  private async runOk(table: string, args: readonly string[]): Promise<string> {
    const res = await this.run(table, args);
    if (res.code !== 0) {
      throw new FlannelError(
        "IPTABLES",
        `running [${this.cmd} -t ${table} ${args.join(" ")}]: exit status ${res.code}: ${res.stderr.trim()}`,
      );
    }
    return res.stdout;
  }

  async chainExists(table: string, chain: string): Promise<boolean> {
    return (await this.listChain(table, chain)) !== null;
  }

  /**
   * The chain's rules as `iptables -S <chain>` prints them, tokenized (its `-A` lines only), or null when the
   * chain does not exist.
   */
  async listChain(table: string, chain: string): Promise<string[][] | null> {
    // `-S <chain>` exits 1 when the chain does not exist (legacy and nft variants alike).
    const res = await this.run(table, ["-S", chain]);
    if (res.code === 1) return null;
    if (res.code !== 0) {
      throw new FlannelError(
        "IPTABLES",
        `running [${this.cmd} -t ${table} -S ${chain}]: exit status ${res.code}: ${res.stderr.trim()}`,
      );
    }
    const rules: string[][] = [];
    for (const line of res.stdout.split("\n")) {
      if (line.startsWith("-A ")) rules.push(splitRuleLine(line));
    }
    return rules;
  }

  /** `iptables -C`: exit 0 means present, 1 absent; anything else is an error. */
  async exists(rule: IptablesRule): Promise<boolean> {
    const res = await this.run(rule.table, ["-C", rule.chain, ...rule.spec]);
    if (res.code === 0) return true;
    if (res.code === 1) return false;
    throw new FlannelError(
      "IPTABLES",
      `running [${this.cmd} -t ${rule.table} -C ${rule.chain} ${rule.spec.join(" ")}]: ` +
        `exit status ${res.code}: ${res.stderr.trim()}`,
    );
  }

  /**
   * Creates the chain, or flushes it when it exists (go-iptables ClearChain). `-N` is tried first: on a
   * fresh node that is the only iptables process, instead of `-S` and then `-N`; when it fails
   * (the chain exists, exit 1), the chain is flushed, and a flush that fails reports both.
   */
  async clearChain(table: string, chain: string): Promise<void> {
    const created = await this.run(table, ["-N", chain]);
    if (created.code === 0) return;
    try {
      await this.runOk(table, ["-F", chain]);
    } catch (err) {
      throw new FlannelError(
        "IPTABLES",
        `${errorMessage(err)} (creating it first: exit status ${created.code}: ${created.stderr.trim()})`,
        { cause: err },
      );
    }
  }

  async createChain(table: string, chain: string): Promise<void> {
    await this.runOk(table, ["-N", chain]);
  }

  /** The table's rules as `iptables -S` prints them, tokenized. */
  async listRules(table: string): Promise<string[][]> {
    const out = await this.runOk(table, ["-S"]);
    return out
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map(splitRuleLine);
  }

  async deleteRule(table: string, chain: string, spec: readonly string[]): Promise<void> {
    await this.runOk(table, ["-D", chain, ...spec]);
  }

  async flushChain(table: string, chain: string): Promise<void> {
    await this.runOk(table, ["-F", chain]);
  }

  async deleteChain(table: string, chain: string): Promise<void> {
    await this.runOk(table, ["-X", chain]);
  }

  /** One `iptables-restore --noflush [--wait]` transaction; does nothing when there are no lines. */
  async restore(rulesByTable: ReadonlyMap<string, readonly RestoreLine[]>): Promise<void> {
    const payload = buildRestorePayload(rulesByTable);
    if (payload === "") return;
    const caps = await this.caps();
    this.log.v(6)?.info(`trying to run with payload ${payload}`);
    let res: CommandResult;
    try {
      res = await this.commands.run(this.restoreCmd, ["--noflush", ...(caps.restoreWait ? ["--wait"] : [])], {
        stdin: payload,
      });
    } catch (err) {
      throw new FlannelError(
        "IPTABLES_MISSING",
        isEnoent(err) ? notFound(this.restoreCmd) : errorMessage(err),
      );
    }
    if (res.code !== 0) {
      // Upstream drops stdout/stderr here; we keep them, since they say which line iptables rejected.
      throw new FlannelError(
        "IPTABLES_RESTORE",
        `unable to run iptables-restore (${res.stdout.trim()}, ${res.stderr.trim()}): exit status ${res.code}`,
      );
    }
  }
}

function isEnoent(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === "ENOENT";
}

function addLine(m: Map<string, RestoreLine[]>, table: string, line: RestoreLine): void {
  let lines = m.get(table);
  if (!lines) m.set(table, (lines = []));
  lines.push(line);
}

function ruleKey(chain: string, spec: readonly string[]): string {
  return `${chain}\0${spec.join("\0")}`;
}

interface ChainListing {
  /** The chain's rules, as `ruleKey`s. */
  keys: Set<string>;
  /** Whether it holds a rule that is none of the set's as flannel writes them. */
  unexplained: boolean;
}

/**
 * Which of a rule set's rules exist, from one `iptables -S <chain>` per chain they live in or jump to.
 * Upstream asks `-S <flannel chain>` and `-C <rule>` for every rule: 20 processes per resync with --ip-masq.
 *
 * A rule is present when its chain lists it as flannel writes it. A rule it does not list may still be there
 * in a form iptables prints differently (say, `1.2.3.4/32` for `1.2.3.4`): then `-C`, iptables' own match,
 * decides. That is needed only while the chain holds a line that is none of the set's rules as written; a
 * chain that holds only the set's rules (or none) cannot hold another of them. So on a node whose rules are
 * in place, a resync runs one process per chain, and a listing can save processes but never change an answer.
 */
class RuleLookup {
  private readonly chains = new Map<string, ChainListing | null>();
  private readonly known: Set<string>;

  constructor(
    private readonly ipt: IptablesFamily,
    rules: readonly IptablesRule[],
  ) {
    this.known = new Set(rules.map((r) => ruleKey(r.chain, r.spec)));
  }

  /** The chain's listing (null: no such chain), listed at the first question. */
  private async chain(table: string, chain: string): Promise<ChainListing | null> {
    const k = `${table}\0${chain}`;
    const cached = this.chains.get(k);
    if (cached !== undefined) return cached;
    const listed = await this.ipt.listChain(table, chain);
    let c: ChainListing | null = null;
    if (listed !== null) {
      const keys = new Set(listed.map((t) => ruleKey(t[1] ?? "", t.slice(2))));
      c = { keys, unexplained: [...keys].some((key) => !this.known.has(key)) };
    }
    this.chains.set(k, c);
    return c;
  }

  async chainExists(table: string, chain: string): Promise<boolean> {
    return (await this.chain(table, chain)) !== null;
  }

  /** After `iptables -N`: the chain exists and is empty. */
  created(table: string, chain: string): void {
    this.chains.set(`${table}\0${chain}`, { keys: new Set(), unexplained: false });
  }

  /**
   * Whether the rule exists. A flannel chain it jumps to must be known to exist first (`chainExists`):
   * `-C` fails with exit 2 when the target is missing.
   */
  async has(rule: IptablesRule): Promise<boolean> {
    const c = await this.chain(rule.table, rule.chain);
    if (c === null) return false;
    if (c.keys.has(ruleKey(rule.chain, rule.spec))) return true;
    return c.unexplained && this.ipt.exists(rule);
  }
}

/** True when every rule (and the flannel chain it needs) exists. */
export async function rulesExist(ipt: IptablesFamily, rules: readonly IptablesRule[]): Promise<boolean> {
  const lookup = new RuleLookup(ipt, rules);
  for (const rule of rules) {
    const chain = flannelChainOf(rule);
    // `-C ... -j FLANNEL-X` fails with exit 2 when the target chain is missing: check the chain first.
    if (chain !== undefined && !(await lookup.chainExists(rule.table, chain))) return false;
    if (!(await lookup.has(rule))) return false;
  }
  return true;
}

/**
 * Installs `rules` in order as one restore transaction per table: `-D` for each rule that already exists,
 * then `-A`. Missing flannel chains are created first.
 */
export async function bootstrapRules(
  ipt: IptablesFamily,
  rules: readonly IptablesRule[],
  log: Logger,
): Promise<void> {
  const byTable = new Map<string, RestoreLine[]>();
  const lookup = new RuleLookup(ipt, rules);
  try {
    for (const rule of rules) {
      const chain = flannelChainOf(rule);
      if (chain !== undefined && !(await lookup.chainExists(rule.table, chain))) {
        await ipt.createChain(rule.table, chain);
        lookup.created(rule.table, chain);
      }
      // A rule that exists is deleted and re-appended, so the set ends up contiguous and in order.
      if (await lookup.has(rule)) addLine(byTable, rule.table, ["-D", rule.chain, ...rule.spec]);
      addLine(byTable, rule.table, ["-A", rule.chain, ...rule.spec]);
    }
  } catch (err) {
    throw new FlannelError("IPTABLES", `failed to setup iptables-restore payload: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  try {
    await ipt.restore(byTable);
  } catch (err) {
    throw new FlannelError(
      "IPTABLES_RESTORE",
      `failed to apply partial iptables-restore ${errorMessage(err)}`,
      {
        cause: err,
      },
    );
  }
  log.info("bootstrap done");
}

/** Deletes those of `rules` that exist, in one restore transaction per table. */
export async function teardownRules(ipt: IptablesFamily, rules: readonly IptablesRule[]): Promise<void> {
  const byTable = new Map<string, RestoreLine[]>();
  const lookup = new RuleLookup(ipt, rules);
  for (const rule of rules) {
    const chain = flannelChainOf(rule);
    if (chain !== undefined && !(await lookup.chainExists(rule.table, chain))) continue;
    if (await lookup.has(rule)) addLine(byTable, rule.table, ["-D", rule.chain, ...rule.spec]);
  }
  try {
    await ipt.restore(byTable);
  } catch (err) {
    throw new FlannelError("IPTABLES_RESTORE", `unable to teardown iptables: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

/**
 * The resync step: nothing when every rule exists, else delete and re-append the whole set. Resolves true when
 * rules had to be recreated.
 */
export async function ensureRules(
  ipt: IptablesFamily,
  rules: readonly IptablesRule[],
  log: Logger,
): Promise<boolean> {
  let exist: boolean;
  try {
    exist = await rulesExist(ipt, rules);
  } catch (err) {
    throw new FlannelError("IPTABLES", `error checking rule existence: ${errorMessage(err)}`, { cause: err });
  }
  if (exist) return false;
  log.info("Some iptables rules are missing; deleting and recreating rules");
  try {
    await bootstrapRules(ipt, rules, log);
  } catch (err) {
    throw new FlannelError("IPTABLES", `error setting up rules: ${errorMessage(err)}`, { cause: err });
  }
  return true;
}

export class IptablesManager implements TrafficManager {
  private readonly log: Logger;
  private readonly families: Record<4 | 6, IptablesFamily>;
  private readonly loops: Promise<void>[] = [];

  constructor(private readonly opts: IptablesManagerOptions) {
    this.log = opts.logger;
    this.families = {
      4: new IptablesFamily(opts.commands, 4, opts.logger),
      6: new IptablesFamily(opts.commands, 6, opts.logger),
    };
  }

  async init(_signal: AbortSignal, families: TrafficFamilies = { ipv4: true, ipv6: true }): Promise<void> {
    this.log.info("Starting flannel in iptables mode...");
    // Probe the network's families now so that the first setup does not wait for it; failures surface at
    // setup. Upstream runs no ip6tables when IPv6 is off; a later setup that needs it probes it then.
    const probes: Promise<unknown>[] = [];
    if (families.ipv4) probes.push(this.families[4].probe());
    if (families.ipv6) probes.push(this.families[6].probe());
    await Promise.all(probes);
  }

  async setupAndEnsureMasqRules(opts: MasqRulesOpts): Promise<void> {
    const sets = [
      {
        fam: 4 as const,
        net: opts.network,
        sub: opts.subnet,
        prevNet: opts.prevNetwork,
        prevSub: opts.prevSubnet,
      },
      {
        fam: 6 as const,
        net: opts.ipv6Network,
        sub: opts.ipv6Subnet,
        prevNet: opts.prevIpv6Network,
        prevSub: opts.prevIpv6Subnet,
      },
    ];
    for (const s of sets) {
      if (s.net === null || s.sub === null) continue;
      const ipt = this.families[s.fam];
      const probe = await ipt.probe();
      const randomFully = probe.ok && probe.caps.randomFully && this.opts.randomFullyDisable !== true;

      if (!s.net.equals(s.prevNet) || !s.sub.equals(s.prevSub)) {
        this.log.info(
          `Current network or subnet (${s.net.toString()}, ${s.sub.toString()}) is not equal to previous one ` +
            `(${fmt(s.prevNet)}, ${fmt(s.prevSub)}), trying to recycle old iptables rules`,
        );
        // Without a previous network and subnet there are no old rules to name (first start).
        if (
          s.prevNet !== null &&
          s.prevSub !== null &&
          s.prevNet.family === s.fam &&
          s.prevSub.family === s.fam
        ) {
          if (!probe.ok) {
            this.log.error(`${this.setupPrefix(s.fam)} iptables binary was not found: ${probe.error}`);
            throw new FlannelError("IPTABLES_MISSING", probe.error);
          }
          // Both variants of the old rules: the old flanneld may have run with another random-fully setting.
          const old = [
            ...masqRules({ network: s.prevNet, subnet: s.prevSub, randomFully: true }),
            ...masqRules({ network: s.prevNet, subnet: s.prevSub, randomFully: false }).slice(5),
          ];
          try {
            await ipt.exclusive(() => teardownRules(ipt, old));
          } catch (err) {
            this.log.error(`Failed to teardown iptables: ${errorMessage(err)}`);
            throw err;
          }
        }
      }

      this.log.info(s.fam === 4 ? "Setting up masking rules" : "Setting up masking rules for IPv6");
      const rules = masqRules({ network: s.net, subnet: s.sub, randomFully });
      await this.setupAndEnsure(ipt, "nat", POSTRTG_CHAIN, rules, opts.signal, opts.background === true);
    }
  }

  async setupAndEnsureForwardRules(opts: ForwardRulesOpts): Promise<void> {
    if (opts.network !== null) {
      this.log.info("Changing default FORWARD chain policy to ACCEPT");
      await this.setupAndEnsure(
        this.families[4],
        "filter",
        FWD_CHAIN,
        forwardRules(opts.network),
        opts.signal,
        opts.background === true,
      );
    }
    if (opts.ipv6Network !== null) {
      this.log.info("IPv6: Changing default FORWARD chain policy to ACCEPT");
      await this.setupAndEnsure(
        this.families[6],
        "filter",
        FWD_CHAIN,
        forwardRules(opts.ipv6Network),
        opts.signal,
        opts.background === true,
      );
    }
  }

  async cleanUp(): Promise<void> {
    this.log.info("Cleaning-up iptables rules...");
    for (const fam of [4, 6] as const) {
      const ipt = this.families[fam];
      const probe = await ipt.probe();
      if (!probe.ok) {
        throw new FlannelError(
          "IPTABLES_MISSING",
          `failed to setup IPTables. ${ipt.cmd} binary was not found: ${probe.error}`,
          { hint: `Install ${ipt.cmd} or make it reachable through PATH` },
        );
      }
      for (const { table, chain } of FLANNEL_CHAINS) {
        try {
          await ipt.exclusive(() => removeChain(ipt, table, chain));
        } catch (err) {
          this.log.v(2)?.info(`could not clean-up ${chain} (IPv${fam}): ${errorMessage(err)}`);
        }
      }
    }
  }

  wait(): Promise<void> {
    return Promise.all(this.loops).then(() => undefined);
  }

  private setupPrefix(fam: 4 | 6): string {
    return fam === 4 ? "Failed to setup IPTables." : "Failed to setup IP6Tables.";
  }

  /**
   * Create/flush the chain, bootstrap the rules, then start the resync loop. Never rejects. With
   * `background`, resolves at once and creates the chain and bootstraps its rules afterwards.
   */
  private async setupAndEnsure(
    ipt: IptablesFamily,
    table: string,
    chain: string,
    rules: IptablesRule[],
    signal: AbortSignal,
    background: boolean,
  ): Promise<void> {
    const probe = await ipt.probe();
    if (!probe.ok) {
      // Upstream gives up on this rule set (no resync loop) when the binary is missing.
      this.log.error(`${this.setupPrefix(ipt.family)} iptables binary was not found: ${probe.error}`);
      return;
    }
    const created = ipt.exclusive(async () => {
      try {
        await ipt.clearChain(table, chain);
      } catch (err) {
        this.log.error(`${this.setupPrefix(ipt.family)} Error on creating the chain: ${errorMessage(err)}`);
      }
    });
    const bootstrap = async (): Promise<void> => {
      try {
        await bootstrapRules(ipt, rules, this.log);
      } catch (err) {
        this.log.error(`Failed to bootstrap IPTables: ${errorMessage(err)}`);
      }
    };
    // In the background the bootstrap stays out of the family's queue, so the next rule set's chain is not
    // created only after this set's rules (upstream's goroutines run side by side too; rule sets live in
    // different chains, and `--wait` serializes the processes on the xtables lock).
    const bootstrapped = background ? created.then(bootstrap) : ipt.exclusive(bootstrap);
    this.loops.push(bootstrapped.then(() => this.resyncLoop(ipt, rules, signal)));
    // In the background nothing is awaited: the chain's `iptables -N` (~10 ms at a start) would hold up
    // subnet.env and the backend's first pass, and nothing before the rules' bootstrap needs the chain.
    // Creating it only logs its failure, so there is nothing to report here either.
    if (!background) await bootstrapped;
  }

  private async resyncLoop(ipt: IptablesFamily, rules: IptablesRule[], signal: AbortSignal): Promise<void> {
    for (;;) {
      try {
        await sleep(this.opts.resyncMs, signal);
      } catch (err) {
        if (isAbort(err, signal)) return;
        throw err;
      }
      const t0 = performance.now();
      try {
        const repaired = await ipt.exclusive(() => ensureRules(ipt, rules, this.log));
        if (repaired) this.opts.metrics?.countRepair("iptables-rules");
      } catch (err) {
        this.log.error(`Failed to ensure iptables rules: ${errorMessage(err)}`);
      }
      this.opts.metrics?.observePass("iptables", (performance.now() - t0) / 1000);
    }
  }
}

function fmt(n: IpNet | null): string {
  return n === null ? "none" : n.toString();
}

/** Deletes every rule in `table` that jumps (or goes) to `chain`, then flushes and deletes the chain. */
async function removeChain(ipt: IptablesFamily, table: string, chain: string): Promise<void> {
  if (!(await ipt.chainExists(table, chain))) return;
  for (const tokens of await ipt.listRules(table)) {
    if (tokens[0] !== "-A" || tokens[1] === undefined) continue;
    const j = tokens.findIndex((t, i) => (t === "-j" || t === "-g") && tokens[i + 1] === chain);
    if (j === -1) continue;
    await ipt.deleteRule(table, tokens[1], tokens.slice(2));
  }
  await ipt.flushChain(table, chain);
  await ipt.deleteChain(table, chain);
}
