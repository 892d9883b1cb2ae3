// etcd key names and values for leases, byte-compatible with upstream flanneld (pkg/subnet/subnet.go
// ParseSubnetKey/MakeSubnetKey, pkg/lease/lease.go LeaseAttrs), because upstream and flannel-ts nodes
// share one etcd and must read each other's leases.
//
// Design notes:
// - Key parsing reproduces upstream's regex exactly, including its quirks: anchored at the end only (text
//   before the address is ignored), the unescaped `.` between the last octets, IPv4 prefix lengths parsed
//   with bit size 5 (0..31, so a /32 key is not a lease) and IPv6 with bit size 7 (0..127), lower-case hex.
//   One deliberate difference: a key whose address has host bits set (only possible by hand) is rejected,
//   because IpNet always masks and writing it back would address a different key.
// - Lease values are Go `encoding/json` output: fields in struct order, `PublicIP` always present,
//   `PublicIPv6` null when unset, the rest omitted when empty; BackendData is kept as the raw JSON text and
//   compacted the way Go's Marshal compacts a json.RawMessage (whitespace dropped, `<`, `>`, `&`, U+2028 and
//   U+2029 inside strings escaped, everything else byte for byte).
// - Decoding follows Go's Unmarshal: case-insensitive field names, the last duplicate wins, unknown fields
//   ignored. It never throws: a bad value comes back as an error result so a watcher can log and go on.

import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import type { LeaseAttrs } from "../../lease/lease.ts";

// Same pattern as upstream's subnetRegex (Go RE2 and JS agree on it: ASCII \d, leftmost match).
const SUBNET_KEY_RE = /(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;

export interface SubnetKey {
  /** 0.0.0.0/0 in an IPv6-only key (`0.0.0.0-0&…`); see isIpv6OnlyKey. */
  subnet: IpNet;
  ipv6Subnet: IpNet | null;
}

/** True for the key of an IPv6-only lease: upstream writes its empty IPv4 subnet as `0.0.0.0-0`. */
export function isIpv6OnlyKey(k: SubnetKey): boolean {
  return k.ipv6Subnet !== null && k.subnet.prefixLen === 0 && k.subnet.ip.value === 0n;
}

/** Go strconv.ParseUint(s, 10, bits): digits only (the regex guarantees it), value < 2^bits. */
function parseUintBits(text: string, bits: number): number | undefined {
  const n = Number(text);
  return Number.isSafeInteger(n) && n < 2 ** bits ? n : undefined;
}

/** Parses the last path element of a lease key (`10.5.52.0-24`, `10.12.13.0-24&fd00:12:13::-56`); null if it is not one. */
export function parseSubnetKey(key: string): SubnetKey | null {
  const m = SUBNET_KEY_RE.exec(key);
  if (!m || m[1] === undefined || m[2] === undefined) return null;
  const ip4 = IpAddr.tryParse(m[1]);
  const len4 = parseUintBits(m[2], 5);
  if (ip4 === undefined || ip4.family !== 4 || len4 === undefined) return null;
  const subnet = IpNet.of(ip4, len4);
  if (!subnet.ip.equals(ip4)) return null;
  if (m[3] === undefined || m[3] === "") return { subnet, ipv6Subnet: null };
  const ip6 = IpAddr.tryParse(m[3]);
  const len6 = m[4] === undefined ? undefined : parseUintBits(m[4], 7);
  if (ip6 === undefined || ip6.family !== 6 || len6 === undefined) return null;
  const ipv6Subnet = IpNet.of(ip6, len6);
  if (!ipv6Subnet.ip.equals(ip6)) return null;
  return { subnet, ipv6Subnet };
}

/**
 * The key element for a lease: `10.5.52.0-24`, or `10.12.13.0-24&fd00:12:13::-56` with an IPv6 subnet. An
 * IPv6-only lease (subnet null) gets upstream's form for an empty IPv4 subnet, `0.0.0.0-0&fd00:12:13::-56`.
 */
export function makeSubnetKey(subnet: IpNet | null, ipv6Subnet: IpNet | null): string {
  const v4 = subnet === null ? "0.0.0.0-0" : `${subnet.ip.toString()}-${subnet.prefixLen}`;
  return ipv6Subnet === null ? v4 : `${v4}&${ipv6Subnet.ip.toString()}-${ipv6Subnet.prefixLen}`;
}

/** Joins the etcd prefix and a path the way Go's path.Join does for these keys (no doubled slashes). */
export function joinKey(prefix: string, ...parts: string[]): string {
  const joined = [prefix, ...parts].filter((p) => p !== "").join("/");
  const cleaned = joined.replace(/\/{2,}/g, "/").replace(/\/$/, "");
  return cleaned === "" ? "/" : cleaned;
}

// --- JSON, the Go way -----------------------------------------------------------------------------

const HTML_ESCAPES: Record<string, string> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029",
};

/** A string as Go's json.Marshal writes it (HTML-safe escaping, \b \f \n \r \t short forms). */
export function goJsonString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c < 0x20) out += `\\u00${c.toString(16).padStart(2, "0")}`;
    else if (HTML_ESCAPES[ch] !== undefined) out += HTML_ESCAPES[ch];
    else if (c >= 0xd800 && c <= 0xdfff)
      out += "\ufffd"; // lone surrogate: Go writes U+FFFD
    else out += ch;
  }
  return `${out}"`;
}

/**
 * Compacts valid JSON text as Go's Marshal does for a json.RawMessage: insignificant whitespace removed,
 * string contents and numbers kept as written except for HTML-unsafe characters.
 */
export function goCompactJson(text: string): string {
  let out = "";
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (inString) {
      if (ch === "\\") {
        out += ch + (text[i + 1] ?? "");
        i++;
      } else {
        if (ch === '"') inString = false;
        out += HTML_ESCAPES[ch] ?? ch;
      }
    } else if (ch === " " || ch === "\t" || ch === "\n" || ch === "\r") {
      continue;
    } else {
      if (ch === '"') inString = true;
      out += ch;
    }
  }
  return out;
}

// The scanners below run once per lease value (1000s at a start), mostly before V8 optimizes them, so
// they compare character codes: 9 tab, 10 LF, 13 CR, 32 space, 34 `"`, 44 `,`, 91 `[`, 92 `\\`, 93 `]`,
// 123 `{`, 125 `}`.

function isJsonSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

function skipWs(text: string, i: number): number {
  while (i < text.length && isJsonSpace(text.charCodeAt(i))) i++;
  return i;
}

/** Index just past the string whose opening quote is at `i`. */
function skipString(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === 92) j++;
    else if (c === 34) return j + 1;
  }
  return text.length;
}

/** Index just past the JSON value that starts at `i` (text already validated by JSON.parse). */
function skipValue(text: string, i: number): number {
  const first = text.charCodeAt(i);
  if (first === 34) return skipString(text, i);
  if (first !== 123 && first !== 91) {
    // A number, true, false or null: it ends at a delimiter.
    let j = i;
    for (; j < text.length; j++) {
      const c = text.charCodeAt(j);
      if (c === 44 || c === 125 || c === 93 || isJsonSpace(c)) break;
    }
    return j;
  }
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === 34) j = skipString(text, j) - 1;
    else if (c === 123 || c === 91) depth++;
    else if (c === 125 || c === 93) {
      depth--;
      if (depth === 0) return j + 1;
    }
  }
  return text.length;
}

/** The members of a top-level JSON object as [key, raw value text] in document order; undefined if not an object. */
export function rawObjectMembers(text: string): [string, string][] | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return undefined;
  return compactMembers(text, parsed as Record<string, unknown>) ?? scanMembers(text);
}

/**
 * The members when `text` is exactly the compact JSON.stringify of what it parses to, as Go and flannel-ts
 * write lease values: each raw value is then its value's JSON.stringify, and no scan is needed. Undefined
 * for any other text (whitespace, duplicate keys, numbers written another way, other escapes).
 */
function compactMembers(text: string, parsed: Record<string, unknown>): [string, string][] | undefined {
  const members: [string, string][] = [];
  let rebuilt = "{";
  for (const key of Object.keys(parsed)) {
    const raw = JSON.stringify(parsed[key]);
    if (members.length > 0) rebuilt += ",";
    rebuilt += `${JSON.stringify(key)}:${raw}`;
    members.push([key, raw]);
  }
  return `${rebuilt}}` === text ? members : undefined;
}

function scanMembers(text: string): [string, string][] {
  const members: [string, string][] = [];
  let i = skipWs(text, 0) + 1; // past "{"
  for (;;) {
    i = skipWs(text, i);
    if (text.charCodeAt(i) === 125) return members;
    const keyEnd = skipString(text, i);
    const inner = text.slice(i + 1, keyEnd - 1);
    const key = inner.includes("\\") ? (JSON.parse(text.slice(i, keyEnd)) as string) : inner;
    i = skipWs(text, keyEnd) + 1; // past ":"
    i = skipWs(text, i);
    const valueEnd = skipValue(text, i);
    members.push([key, text.slice(i, valueEnd)]);
    i = skipWs(text, valueEnd);
    if (text.charCodeAt(i) === 44) i++;
  }
}

// --- LeaseAttrs -----------------------------------------------------------------------------------

/** The etcd value of a lease, exactly as upstream's json.Marshal(LeaseAttrs) writes it. */
export function encodeLeaseAttrs(attrs: LeaseAttrs): string {
  if (attrs.publicIp.family !== 4) {
    throw new Error(`PublicIP must be an IPv4 address, got ${attrs.publicIp.toString()}`);
  }
  if (attrs.publicIpv6 !== null && attrs.publicIpv6.family !== 6) {
    throw new Error(`PublicIPv6 must be an IPv6 address, got ${attrs.publicIpv6.toString()}`);
  }
  let out = `{"PublicIP":"${attrs.publicIp.toString()}"`;
  out += `,"PublicIPv6":${attrs.publicIpv6 === null ? "null" : `"${attrs.publicIpv6.toString()}"`}`;
  if (attrs.backendType !== "") out += `,"BackendType":${goJsonString(attrs.backendType)}`;
  for (const [name, raw] of [
    ["BackendData", attrs.backendData],
    ["BackendV6Data", attrs.backendV6Data],
  ] as const) {
    if (raw === undefined || raw === "") continue;
    try {
      JSON.parse(raw);
    } catch {
      throw new Error(`${name} is not valid JSON: ${raw}`);
    }
    out += `,"${name}":${goCompactJson(raw)}`;
  }
  return `${out}}`;
}

export type DecodeResult<T> = { ok: true; value: T } | { ok: false; error: string };

function decodeIp(raw: string, family: 4 | 6, field: string): IpAddr | string {
  // Upstream's IP4/IP6 UnmarshalJSON trims the quotes and parses what is left.
  const text = raw.replace(/^"+|"+$/g, "");
  const ip = IpAddr.tryParse(text);
  if (ip === undefined || ip.family !== family) return `invalid ${field} in lease: ${raw}`;
  return ip;
}

/**
 * A copy of `s` that does not share memory with the text it was cut from. `raw` is a slice of the whole
 * lease JSON, and V8 keeps a slice's parent string alive: every lease kept its full value text.
 */
function ownString(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
}

/** Decodes an etcd lease value; never throws (a malformed value is an error result that names it). */
export function decodeLeaseAttrs(text: string): DecodeResult<LeaseAttrs> {
  const members = rawObjectMembers(text);
  if (members === undefined) {
    return { ok: false, error: `lease value is not a JSON object: ${JSON.stringify(text.slice(0, 200))}` };
  }
  let publicIp: IpAddr | undefined;
  let publicIpv6: IpAddr | null = null;
  let backendType = "";
  let backendData: string | undefined;
  let backendV6Data: string | undefined;
  for (const [key, raw] of members) {
    switch (key.toLowerCase()) {
      case "publicip": {
        const ip = decodeIp(raw, 4, "PublicIP");
        if (typeof ip === "string") return { ok: false, error: ip };
        publicIp = ip;
        break;
      }
      case "publicipv6": {
        if (raw === "null") {
          publicIpv6 = null;
          break;
        }
        const ip = decodeIp(raw, 6, "PublicIPv6");
        if (typeof ip === "string") return { ok: false, error: ip };
        publicIpv6 = ip;
        break;
      }
      case "backendtype": {
        const v: unknown = JSON.parse(raw);
        if (v === null) break; // Go leaves a string field alone on null
        if (typeof v !== "string") return { ok: false, error: `invalid BackendType in lease: ${raw}` };
        backendType = v;
        break;
      }
      case "backenddata":
        backendData = ownString(raw);
        break;
      case "backendv6data":
        backendV6Data = ownString(raw);
        break;
      default:
        break; // unknown fields are ignored, as Go does
    }
  }
  return {
    ok: true,
    value: leaseAttrs(publicIp ?? IpAddr.zero(4), publicIpv6, backendType, backendData, backendV6Data),
  };
}

/**
 * LeaseAttrs as one literal per set of fields present: an object that grows a field after it is made keeps
 * it outside itself (a property array: ~40 bytes more per lease at 10,000). Absent data stays absent.
 */
function leaseAttrs(
  publicIp: IpAddr,
  publicIpv6: IpAddr | null,
  backendType: string,
  backendData: string | undefined,
  backendV6Data: string | undefined,
): LeaseAttrs {
  if (backendV6Data !== undefined) {
    return backendData === undefined
      ? { publicIp, publicIpv6, backendType, backendV6Data }
      : { publicIp, publicIpv6, backendType, backendData, backendV6Data };
  }
  return backendData === undefined
    ? { publicIp, publicIpv6, backendType }
    : { publicIp, publicIpv6, backendType, backendData };
}
