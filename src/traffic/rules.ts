// flannel's iptables rules as pure data (spec §6.1): the masquerade set (table nat) and the forward set (table
// filter), in the exact order, tokens and comments of upstream, because other tools (and upstream flanneld on
// the same node after a rollback) match them token by token with `iptables -C`. Also the iptables-restore
// payload format and a tokenizer for `iptables -S` output.
//
// Design notes:
// - A rule is {table, chain, spec}; the action (-A/-D/-C) is added by whoever runs it. Order matters: the
//   RETURN rules must precede the MASQUERADE rules, and the whole set is re-appended in order on repair.
// - One function per rule set, generic over the address family: only the multicast range differs.

import type { IpNet } from "../ip/net.ts";

export const POSTRTG_CHAIN = "FLANNEL-POSTRTG";
export const FWD_CHAIN = "FLANNEL-FWD";
/** kube-proxy marks packets it wants masqueraded with this bit; flannel must not NAT them twice. */
export const KUBE_PROXY_MARK = "0x4000/0x4000";
export const MASQ_COMMENT = "flanneld masq";
export const FORWARD_COMMENT = "flanneld forward";

/** The chains flannel owns, with the table they live in and the built-in chain that jumps to them. */
export const FLANNEL_CHAINS: readonly { table: string; chain: string; from: string }[] = [
  { table: "nat", chain: POSTRTG_CHAIN, from: "POSTROUTING" },
  { table: "filter", chain: FWD_CHAIN, from: "FORWARD" },
];

export interface IptablesRule {
  table: string;
  chain: string;
  /** Everything after `-A <chain>`, one token per element (the comment is one token, unquoted). */
  spec: readonly string[];
}

/** Multicast range that is never masqueraded. */
export function multicastRange(family: 4 | 6): string {
  return family === 4 ? "224.0.0.0/4" : "ff00::/8";
}

/**
 * The masquerade rules for one family: `network` is the cluster network (`Network` / `IPv6Network`),
 * `subnet` this node's lease. `randomFully` appends `--random-fully` to both MASQUERADE rules.
 */
export function masqRules(opts: { network: IpNet; subnet: IpNet; randomFully: boolean }): IptablesRule[] {
  const c = opts.network.toString();
  const p = opts.subnet.toString();
  const comment = ["-m", "comment", "--comment", MASQ_COMMENT];
  const masq = opts.randomFully ? ["-j", "MASQUERADE", "--random-fully"] : ["-j", "MASQUERADE"];
  const rule = (chain: string, spec: string[]): IptablesRule => ({ table: "nat", chain, spec });
  return [
    rule("POSTROUTING", [...comment, "-j", POSTRTG_CHAIN]),
    rule(POSTRTG_CHAIN, ["-m", "mark", "--mark", KUBE_PROXY_MARK, ...comment, "-j", "RETURN"]),
    rule(POSTRTG_CHAIN, ["-s", p, "-d", c, ...comment, "-j", "RETURN"]),
    rule(POSTRTG_CHAIN, ["-s", c, "-d", p, ...comment, "-j", "RETURN"]),
    rule(POSTRTG_CHAIN, ["!", "-s", c, "-d", p, ...comment, "-j", "RETURN"]),
    rule(POSTRTG_CHAIN, ["-s", c, "!", "-d", multicastRange(opts.network.family), ...comment, ...masq]),
    rule(POSTRTG_CHAIN, ["!", "-s", c, "-d", c, ...comment, ...masq]),
  ];
}

/** The forward-accept rules for one family's cluster network. */
export function forwardRules(network: IpNet): IptablesRule[] {
  const c = network.toString();
  const comment = ["-m", "comment", "--comment", FORWARD_COMMENT];
  return [
    { table: "filter", chain: "FORWARD", spec: [...comment, "-j", FWD_CHAIN] },
    { table: "filter", chain: FWD_CHAIN, spec: ["-s", c, ...comment, "-j", "ACCEPT"] },
    { table: "filter", chain: FWD_CHAIN, spec: ["-d", c, ...comment, "-j", "ACCEPT"] },
  ];
}

/** The flannel chain a rule lives in or jumps to, if any (it must exist before the rule can be checked). */
export function flannelChainOf(rule: IptablesRule): string | undefined {
  for (const { chain } of FLANNEL_CHAINS) {
    if (rule.chain === chain || rule.spec[rule.spec.length - 1] === chain) return chain;
  }
  return undefined;
}

/** One iptables-restore line as tokens, e.g. ["-A", "POSTROUTING", "-s", ...]. */
export type RestoreLine = readonly string[];

export type RulesByTable =
  ReadonlyMap<string, readonly RestoreLine[]> | Readonly<Record<string, readonly RestoreLine[]>>;

/**
 * The stdin of `iptables-restore --noflush`: per table `*<table>`, one line per rule (tokens joined by single
 * spaces, the token after `--comment` in double quotes because it may contain spaces), then `COMMIT`.
 * Tables appear in the map's order; a table with no lines is left out.
 */
export function buildRestorePayload(rulesByTable: RulesByTable): string {
  const entries = rulesByTable instanceof Map ? [...rulesByTable.entries()] : Object.entries(rulesByTable);
  let out = "";
  for (const [table, lines] of entries as [string, readonly RestoreLine[]][]) {
    if (lines.length === 0) continue;
    out += `*${table}\n`;
    for (const line of lines) {
      out += line.map((tok, i) => (i > 0 && line[i - 1] === "--comment" ? `"${tok}"` : tok)).join(" ") + "\n";
    }
    out += "COMMIT\n";
  }
  return out;
}

/**
 * Splits one line of `iptables -S` output into tokens, honouring double quotes (`--comment "flanneld masq"`)
 * and backslash escapes inside them, as iptables prints them.
 */
export function splitRuleLine(line: string): string[] {
  const tokens: string[] = [];
  let cur = "";
  let inToken = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (quoted) {
      if (ch === "\\" && i + 1 < line.length) {
        cur += line[++i];
      } else if (ch === '"') {
        quoted = false;
      } else {
        cur += ch;
      }
    } else if (ch === '"') {
      quoted = true;
      inToken = true;
    } else if (ch === " " || ch === "\t") {
      if (inToken) tokens.push(cur);
      cur = "";
      inToken = false;
    } else {
      cur += ch;
      inToken = true;
    }
  }
  if (inToken) tokens.push(cur);
  return tokens;
}
