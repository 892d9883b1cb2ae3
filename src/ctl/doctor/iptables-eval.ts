// A small, conservative evaluator of `iptables -S` output: "what happens to a packet from A to B in chain C".
// doctor uses it to tell whether pod traffic survives the FORWARD chain and whether VXLAN packets survive
// INPUT, and to name the exact rule that decides.
//
// Design notes
// - Only criteria we can decide are decided: -s/-d (with !), -p, --dport/--sport. Anything else
//   (interfaces, conntrack state, marks, physdev, ...) makes a rule "maybe": a maybe-ACCEPT or maybe-DROP
//   is skipped, because guessing would blame kube-proxy's `--ctstate INVALID -j DROP` for everything.
//   So a verdict is only reported when a rule matches *every* such packet — exactly the cases doctor looks
//   for (`-j DROP` without criteria, a policy DROP without accept rules).
// - User chains are followed (with a depth limit against loops); RETURN goes back to the caller; the
//   built-in chain's policy applies when nothing decides.

import type { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import { splitRuleLine } from "../../traffic/rules.ts";

export interface Packet {
  src?: IpAddr;
  dst?: IpAddr;
  proto?: "udp" | "tcp" | "icmp";
  dport?: number;
}

export interface ParsedTable {
  policies: Map<string, string>;
  rules: Map<string, { line: string; tokens: string[] }[]>;
}

export function parseIptablesSave(lines: readonly string[]): ParsedTable {
  const policies = new Map<string, string>();
  const rules = new Map<string, { line: string; tokens: string[] }[]>();
  for (const line of lines) {
    const t = splitRuleLine(line.trim());
    if (t[0] === "-P" && t[1] !== undefined && t[2] !== undefined) policies.set(t[1], t[2]);
    else if (t[0] === "-N" && t[1] !== undefined) rules.set(t[1], rules.get(t[1]) ?? []);
    else if (t[0] === "-A" && t[1] !== undefined) {
      const list = rules.get(t[1]) ?? [];
      list.push({ line: line.trim(), tokens: t.slice(2) });
      rules.set(t[1], list);
    }
  }
  return { policies, rules };
}

type Match = "yes" | "no" | "maybe";

function and(a: Match, b: Match): Match {
  if (a === "no" || b === "no") return "no";
  if (a === "maybe" || b === "maybe") return "maybe";
  return "yes";
}

function addrMatch(spec: string, ip: IpAddr | undefined): Match {
  if (ip === undefined) return "maybe";
  const net = IpNet.tryParse(spec.includes("/") ? spec : `${spec}/${ip.bits}`);
  if (net === undefined || net.family !== ip.family) return "maybe";
  return net.contains(ip) ? "yes" : "no";
}

/** Whether the rule's criteria match the packet, and its target with the target's own arguments. */
export function matchRule(tokens: readonly string[], pkt: Packet): { match: Match; target?: string } {
  let m: Match = "yes";
  let negate = false;
  for (let i = 0; i < tokens.length; i++) {
    const tok = tokens[i] as string;
    if (tok === "!") {
      negate = true;
      continue;
    }
    const arg = tokens[i + 1];
    let r: Match | undefined;
    switch (tok) {
      case "-s":
      case "--source":
        r = addrMatch(arg ?? "", pkt.src);
        i++;
        break;
      case "-d":
      case "--destination":
        r = addrMatch(arg ?? "", pkt.dst);
        i++;
        break;
      case "-p":
      case "--protocol":
        r = pkt.proto === undefined ? "maybe" : arg === pkt.proto || arg === "all" ? "yes" : "no";
        i++;
        break;
      case "--dport":
      case "--destination-port":
        r = pkt.dport === undefined ? "maybe" : portMatch(arg ?? "", pkt.dport);
        i++;
        break;
      case "-m":
      case "--match":
        i++; // the module name itself decides nothing; its options follow
        continue;
      case "--comment":
        i++;
        continue;
      case "-j":
      case "--jump":
      case "-g":
      case "--goto":
        return { match: m, target: arg ?? "" };
      default:
        // An option we do not evaluate (-i, -o, --ctstate, --mark, ...): skip its values, stay unsure.
        r = "maybe";
        while (
          tokens[i + 1] !== undefined &&
          !(tokens[i + 1] as string).startsWith("-") &&
          tokens[i + 1] !== "!"
        ) {
          i++;
        }
    }
    if (negate && r !== "maybe") r = r === "yes" ? "no" : "yes";
    negate = false;
    m = and(m, r);
  }
  return { match: m };
}

function portMatch(spec: string, port: number): Match {
  const [lo, hi] = spec.split(":");
  const a = Number(lo);
  const b = hi === undefined ? a : Number(hi || 65535);
  if (!Number.isInteger(a) || !Number.isInteger(b)) return "maybe";
  return port >= a && port <= b ? "yes" : "no";
}

export interface Verdict {
  verdict: "accept" | "drop";
  /** The deciding rule as `iptables -S` printed it, or `-P <chain> <policy>`. */
  rule: string;
  chain: string;
  /** 1-based position of the rule in its chain (0 for a policy). */
  position: number;
}

const DROP_TARGETS = new Set(["DROP", "REJECT"]);

function walk(t: ParsedTable, chain: string, pkt: Packet, depth: number): Verdict | "return" | undefined {
  if (depth > 20) return undefined;
  const rules = t.rules.get(chain) ?? [];
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i] as { line: string; tokens: string[] };
    const { match, target } = matchRule(r.tokens, pkt);
    if (match !== "yes" || target === undefined) continue;
    if (target === "ACCEPT") return { verdict: "accept", rule: r.line, chain, position: i + 1 };
    if (DROP_TARGETS.has(target)) return { verdict: "drop", rule: r.line, chain, position: i + 1 };
    if (target === "RETURN") return "return";
    if (t.rules.has(target)) {
      const sub = walk(t, target, pkt, depth + 1);
      if (sub !== undefined && sub !== "return") return sub;
    }
    // LOG, MARK, MASQUERADE, ...: not a filtering decision; go on.
  }
  return undefined;
}

/** What the built-in `chain` does with `pkt`: the first rule that surely decides, else the policy. */
export function evaluateChain(t: ParsedTable, chain: string, pkt: Packet): Verdict {
  const v = walk(t, chain, pkt, 0);
  if (v !== undefined && v !== "return") return v;
  const policy = t.policies.get(chain) ?? "ACCEPT";
  return {
    verdict: DROP_TARGETS.has(policy) ? "drop" : "accept",
    rule: `-P ${chain} ${policy}`,
    chain,
    position: 0,
  };
}
