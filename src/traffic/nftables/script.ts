// flannel's nftables rules (spec §6.2) as `nft -f -` scripts: pure text, so the exact rules are unit-tested and
// the manager only runs them. Each script is one nft transaction: it applies completely or not at all.
//
// The rules deliberately keep upstream's shape, including where it differs from the iptables set (spec A5:
// rule 4 is `saddr != <subnet> daddr <network> return`; A6: the mark match is exact `0x4000`), because an
// upstream flanneld and ours must produce identical tables on the same node.

import type { IpNet } from "../../ip/net.ts";
import { multicastRange } from "../rules.ts";

export const POSTRTG = "postrtg";
export const FORWARD = "forward";

export function tableName(family: 4 | 6): string {
  return family === 4 ? "flannel-ipv4" : "flannel-ipv6";
}

/** nft address family keyword, also the match prefix (`ip saddr`, `ip6 saddr`). */
export function nftFamily(family: 4 | 6): "ip" | "ip6" {
  return family === 4 ? "ip" : "ip6";
}

function table(family: 4 | 6): string {
  return `${nftFamily(family)} ${tableName(family)}`;
}

/** Creates the family's table (idempotent: `add` leaves an existing table and its contents alone). */
export function tableScript(family: 4 | 6): string {
  return `add table ${table(family)} { comment "rules for ${tableName(family)}" ; }\n`;
}

/**
 * Masquerade chain with its rules, replacing whatever the chain held (`flush` in the same transaction makes the
 * script idempotent and removes rules for an old network or subnet, so no recycling step is needed).
 */
export function masqScript(opts: { network: IpNet; subnet: IpNet; fullyRandom: boolean }): string {
  const family = opts.network.family;
  const f = nftFamily(family);
  const c = opts.network.toString();
  const p = opts.subnet.toString();
  const masq = opts.fullyRandom ? "masquerade fully-random" : "masquerade";
  const rule = (r: string): string => `add rule ${table(family)} ${POSTRTG} ${r}\n`;
  return (
    tableScript(family) +
    `add chain ${table(family)} ${POSTRTG} { type nat hook postrouting priority srcnat ; ` +
    `comment "chain to manage traffic masquerading by flannel" ; }\n` +
    `flush chain ${table(family)} ${POSTRTG}\n` +
    rule("meta mark 0x4000 return") +
    rule(`${f} saddr ${p} ${f} daddr ${c} return`) +
    rule(`${f} saddr ${c} ${f} daddr ${p} return`) +
    rule(`${f} saddr != ${p} ${f} daddr ${c} return`) +
    rule(`${f} saddr ${c} ${f} daddr != ${multicastRange(family)} ${masq}`) +
    rule(`${f} saddr != ${c} ${f} daddr ${c} ${masq}`)
  );
}

/** Forward-accept chain for the cluster network (policy accept: never drop anything of the node's). */
export function forwardScript(network: IpNet): string {
  const family = network.family;
  const f = nftFamily(family);
  const c = network.toString();
  return (
    tableScript(family) +
    `add chain ${table(family)} ${FORWARD} { type filter hook forward priority filter ; ` +
    `comment "chain to accept flannel traffic" ; }\n` +
    `flush chain ${table(family)} ${FORWARD}\n` +
    `add rule ${table(family)} ${FORWARD} ${f} saddr ${c} accept\n` +
    `add rule ${table(family)} ${FORWARD} ${f} daddr ${c} accept\n`
  );
}

/** Checked with `nft --check` only: does this kernel/nft accept `masquerade fully-random`? */
export function fullyRandomProbeScript(): string {
  return (
    tableScript(4) +
    `add chain ${table(4)} masqueradeTest { type nat hook postrouting priority srcnat ; ` +
    `comment "chain to test if masquerade random fully is supported" ; }\n` +
    `flush chain ${table(4)} masqueradeTest\n` +
    `add rule ${table(4)} masqueradeTest ip saddr != 127.0.0.1 masquerade fully-random\n`
  );
}

/** Deletes the family's table; `add` first so that the script also succeeds when it is absent. */
export function deleteTableScript(family: 4 | 6): string {
  return `add table ${table(family)}\ndelete table ${table(family)}\n`;
}
