// The CNI plugin's reader of subnet.env (upstream cni-plugin `loadFlannelSubnetEnv`).
//
// Design notes: this is deliberately a strict line scanner, not flanneld's dotenv reader. Upstream splits
// each line once at "=" and compares the key exactly: no trimming, no quotes, no `export`, no comments;
// unknown keys and blank lines are ignored and a later line overrides an earlier one. Lines end at "\n"
// with one trailing "\r" dropped (Go's bufio.ScanLines). A recognised key without "=" made upstream panic;
// here it is an error that names the line. Values are parsed as Go does: CIDRs are masked
// ("10.1.17.1/24" is the subnet 10.1.17.0/24), network lists are comma-separated and de-duplicated,
// FLANNEL_MTU is an unsigned 32-bit decimal, FLANNEL_IPMASQ is true only for the exact text "true".

import { IpNet } from "../ip/net.ts";

export interface SubnetEnv {
  /** FLANNEL_NETWORK entries in file order, without duplicates. */
  networks: IpNet[];
  /** FLANNEL_SUBNET as a network (host bits cleared); null when absent. */
  subnet: IpNet | null;
  ipv6Networks: IpNet[];
  ipv6Subnet: IpNet | null;
  mtu: number;
  ipMasq: boolean;
}

const KEYS = [
  "FLANNEL_NETWORK",
  "FLANNEL_SUBNET",
  "FLANNEL_IPV6_NETWORK",
  "FLANNEL_IPV6_SUBNET",
  "FLANNEL_MTU",
  "FLANNEL_IPMASQ",
] as const;
type Key = (typeof KEYS)[number];

/** Go's bufio.Scanner refuses lines longer than this (bufio.MaxScanTokenSize). */
const MAX_LINE_BYTES = 64 * 1024;

/**
 * Parses the text of a subnet.env file. `file` is only used in messages. Throws upstream's
 * `<file> is missing <keys>` when required values are absent.
 */
export function parseSubnetEnv(text: string, file: string): SubnetEnv {
  let networks: IpNet[] = [];
  let ipv6Networks: IpNet[] = [];
  let subnet: IpNet | null = null;
  let ipv6Subnet: IpNet | null = null;
  let mtu: number | null = null;
  let ipMasq: boolean | null = null;

  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop(); // a final newline does not start another line
  lines.forEach((raw, i) => {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    const where = `${file} line ${i + 1}`;
    if (Buffer.byteLength(line) >= MAX_LINE_BYTES) {
      throw new Error(`${where} is longer than ${MAX_LINE_BYTES} bytes (bufio.Scanner: token too long)`);
    }
    const eq = line.indexOf("=");
    const key = eq === -1 ? line : line.slice(0, eq);
    if (!(KEYS as readonly string[]).includes(key)) return;
    if (eq === -1) {
      throw new Error(`${where} has ${JSON.stringify(line)} without a value: write it as ${key}=<value>`);
    }
    const value = line.slice(eq + 1);
    const fail = (msg: string): never => {
      throw new Error(`${where}: ${key}: ${msg}`);
    };
    switch (key as Key) {
      case "FLANNEL_NETWORK":
        networks = parseCidrList(value, fail);
        break;
      case "FLANNEL_IPV6_NETWORK":
        ipv6Networks = parseCidrList(value, fail);
        break;
      case "FLANNEL_SUBNET":
        subnet = IpNet.tryParse(value) ?? fail(`invalid CIDR address: ${value}`);
        break;
      case "FLANNEL_IPV6_SUBNET":
        ipv6Subnet = IpNet.tryParse(value) ?? fail(`invalid CIDR address: ${value}`);
        break;
      case "FLANNEL_MTU":
        mtu = parseUint32(value, fail);
        break;
      case "FLANNEL_IPMASQ":
        ipMasq = value === "true";
        break;
    }
  });

  const missing: string[] = [];
  if (networks.length === 0 && ipv6Networks.length === 0)
    missing.push("FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK");
  if (subnet === null && ipv6Subnet === null) missing.push("FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET");
  if (mtu === null) missing.push("FLANNEL_MTU");
  if (ipMasq === null) missing.push("FLANNEL_IPMASQ");
  if (missing.length > 0 || mtu === null || ipMasq === null) {
    throw new Error(`${file} is missing ${missing.join(", ")}`);
  }
  return { networks, subnet, ipv6Networks, ipv6Subnet, mtu, ipMasq };
}

function parseCidrList(value: string, fail: (msg: string) => never): IpNet[] {
  const out: IpNet[] = [];
  for (const part of value.split(",")) {
    const n = IpNet.tryParse(part) ?? fail(`invalid CIDR address: ${part}`);
    if (!out.some((o) => o.equals(n))) out.push(n);
  }
  return out;
}

/** strconv.ParseUint(s, 10, 32): decimal digits only, at most 2^32-1; Go's messages. */
function parseUint32(s: string, fail: (msg: string) => never): number {
  const prefix = `strconv.ParseUint: parsing ${JSON.stringify(s)}`;
  if (!/^[0-9]+$/.test(s)) return fail(`${prefix}: invalid syntax`);
  const n = Number(s);
  return n <= 0xffffffff ? n : fail(`${prefix}: value out of range`);
}
