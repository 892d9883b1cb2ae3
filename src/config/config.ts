// net-conf.json (kube mode: --net-config-path; etcd mode: <prefix>/config) → NetworkConfig, with upstream's
// defaults, validation and error texts (flannel:pkg/subnet/config.go, spec §2).
//
// Design notes:
// - parseConfig reproduces Go's encoding/json decoding into upstream's Config struct, because users
//   (and upstream's own tests) rely on its quirks: keys match case-insensitively, a later duplicate wins,
//   unknown keys (also the removed `Networks`/`IPv6Networks`) are ignored, `EnableIPv4` is true unless
//   set. Type errors read like Go's (`json: cannot unmarshal string into Go struct field Config.SubnetLen
//   of type uint`) and, as in Go, a wrong type is remembered while decoding continues, whereas an invalid
//   address aborts at once (flannel's IP types fail inside UnmarshalJSON). Syntax errors carry a position.
// - The IP fields are decoded from the raw JSON text with the surrounding quotes trimmed, as upstream's
//   UnmarshalJSON does, so `"Network": 10` fails as `invalid CIDR address: 10`.
// - checkNetworkConfig is upstream's CheckNetworkConfig: it fills SubnetLen/Min/Max in place and throws
//   its exact messages. Upstream runs it in etcd mode only; callers decide.
// - One family-generic routine checks IPv4 and IPv6; only the texts and the limits differ.
// - Where upstream would accept nonsense silently, we reject it with a message naming the value:
//   an IPv4 CIDR as IPv6Network (`invalid IPv6 CIDR format`) and an IPv4 address as IPv6SubnetMin/Max
//   (`invalid IPv6 address format`). Upstream converts those to IPv4-mapped IPv6 values.

import { IpAddr, type Family } from "../ip/addr.ts";
import { IpNet, maskOf } from "../ip/net.ts";
import type { NetworkConfig } from "./network-config.ts";
import { goJsonToValue, goJsonTypeName, parseGoJson, type GoJsonNode } from "./go-json.ts";

/** Go's field-name folding for JSON keys: ASCII case plus the two non-ASCII letters that fold to k and s. */
function foldKey(key: string): string {
  return key
    .replace(/\u017f/g, "s")
    .replace(/\u212a/g, "k")
    .toLowerCase();
}

/**
 * Looks up `name` in a decoded JSON object the way encoding/json matches struct fields: case-insensitively,
 * the last matching key winning. Returns undefined when absent.
 */
export function getField(obj: Record<string, unknown>, name: string): unknown {
  const want = foldKey(name);
  let found: unknown = undefined;
  for (const key of Object.keys(obj)) {
    if (foldKey(key) === want) found = obj[key];
  }
  return found;
}

/** The JSON type of a decoded value as Go names it in type errors (`number 1.5` for numbers out of range). */
function jsonTypeOf(v: unknown, withNumber: boolean): string {
  if (typeof v === "number") return withNumber ? `number ${String(v)}` : "number";
  if (typeof v === "string") return "string";
  if (typeof v === "boolean") return "bool";
  if (Array.isArray(v)) return "array";
  return "object";
}

export type GoFieldKind = "int" | "uint" | "bool" | "string";
type GoFieldValue<K extends GoFieldKind> = K extends "bool" ? boolean : K extends "string" ? string : number;

/**
 * Decodes one field of a backend's `Backend` object as Go would decode it into a struct field of `kind`.
 * Returns undefined when the key is absent or null (Go keeps the default then). A wrong JSON type throws
 * `error decoding <label> backend config: json: cannot unmarshal <type> into Go struct field .<name> of
 * type <kind>` (the struct is anonymous upstream, hence the leading dot).
 */
export function decodeBackendField<K extends GoFieldKind>(
  backend: Record<string, unknown>,
  name: string,
  kind: K,
  label: string,
): GoFieldValue<K> | undefined {
  const v = getField(backend, name);
  if (v === undefined || v === null) return undefined;
  const fail = (type: string): Error =>
    new Error(
      `error decoding ${label} backend config: json: cannot unmarshal ${type} into Go struct field .${name} of type ${kind}`,
    );
  switch (kind) {
    case "bool":
      if (typeof v !== "boolean") throw fail(jsonTypeOf(v, false));
      break;
    case "string":
      if (typeof v !== "string") throw fail(jsonTypeOf(v, false));
      break;
    default:
      if (typeof v !== "number") throw fail(jsonTypeOf(v, false));
      if (!Number.isSafeInteger(v) || (kind === "uint" && v < 0)) throw fail(jsonTypeOf(v, true));
  }
  return v as GoFieldValue<K>;
}

/** Go's encoding/json UnmarshalTypeError text for a field of upstream's `Config` struct. */
function configTypeError(value: string, field: string, type: string): Error {
  return new Error(`json: cannot unmarshal ${value} into Go struct field Config.${field} of type ${type}`);
}

/** Upstream's UnmarshalJSON input: the raw JSON bytes with every leading and trailing `"` trimmed. */
function trimmedRaw(node: GoJsonNode): string {
  return node.raw.replace(/^"+/, "").replace(/"+$/, "");
}

/** net.ParseIP, accepting IPv4-mapped IPv6 text as IPv4 like Go's To4(). */
function parseIpForFamily(text: string, family: Family): IpAddr {
  const ip = IpAddr.tryParse(text);
  if (ip === undefined) throw new Error("invalid IP address format");
  if (family === 4) {
    if (ip.family === 4) return ip;
    if (ip.value >> 32n === 0xffffn) return IpAddr.of(4, ip.value & 0xffffffffn);
    throw new Error("invalid IPv4 address format");
  }
  if (ip.family !== 6) throw new Error("invalid IPv6 address format");
  return ip;
}

function parseCidrForFamily(text: string, family: Family): IpNet {
  const net = IpNet.parse(text); // `invalid CIDR address: <text>`
  if (net.family !== family) throw new Error(`invalid IPv${family} CIDR format`);
  return net;
}

type FieldDecoder = (cfg: NetworkConfig, node: GoJsonNode, saveError: (e: Error) => void) => void;

function boolField(field: string, set: (cfg: NetworkConfig, v: boolean) => void): FieldDecoder {
  return (cfg, node, saveError) => {
    if (node.kind === "null") return;
    if (node.kind !== "bool") return saveError(configTypeError(goJsonTypeName(node), field, "bool"));
    set(cfg, node.value);
  };
}

function uintField(field: string, set: (cfg: NetworkConfig, v: number) => void): FieldDecoder {
  return (cfg, node, saveError) => {
    if (node.kind === "null") return;
    if (node.kind !== "number") return saveError(configTypeError(goJsonTypeName(node), field, "uint"));
    // Go: strconv.ParseUint on the literal text, so fractions, exponents and negatives are type errors.
    if (!/^\d+$/.test(node.raw) || BigInt(node.raw) > 0xffffffffffffffffn) {
      return saveError(configTypeError(`number ${node.raw}`, field, "uint"));
    }
    set(cfg, Number(node.raw));
  };
}

/** Fields of upstream's Config struct, by folded JSON key. `BackendType` is `json:"-"` upstream. */
const FIELDS: Record<string, FieldDecoder> = {
  enableipv4: boolField("EnableIPv4", (c, v) => (c.enableIpv4 = v)),
  enableipv6: boolField("EnableIPv6", (c, v) => (c.enableIpv6 = v)),
  enablenftables: boolField("EnableNFTables", (c, v) => (c.enableNftables = v)),
  subnetlen: uintField("SubnetLen", (c, v) => (c.subnetLen = v)),
  ipv6subnetlen: uintField("IPv6SubnetLen", (c, v) => (c.ipv6SubnetLen = v)),
  network: (c, node) => (c.network = parseCidrForFamily(trimmedRaw(node), 4)),
  ipv6network: (c, node) => (c.ipv6Network = parseCidrForFamily(trimmedRaw(node), 6)),
  subnetmin: (c, node) => (c.subnetMin = parseIpForFamily(trimmedRaw(node), 4)),
  subnetmax: (c, node) => (c.subnetMax = parseIpForFamily(trimmedRaw(node), 4)),
  // *ip.IP6 upstream: a JSON null resets the pointer instead of calling UnmarshalJSON.
  ipv6subnetmin: (c, node) =>
    (c.ipv6SubnetMin = node.kind === "null" ? null : parseIpForFamily(trimmedRaw(node), 6)),
  ipv6subnetmax: (c, node) =>
    (c.ipv6SubnetMax = node.kind === "null" ? null : parseIpForFamily(trimmedRaw(node), 6)),
};

/** Upstream's parseBackendType: the `Type` of the raw `Backend` value, decoded into `struct { Type string }`. */
function parseBackend(node: GoJsonNode | undefined): { type: string; backend: Record<string, unknown> } {
  if (node === undefined) return { type: "udp", backend: {} };
  const wrap = (msg: string): Error => new Error(`error decoding Backend property of config: ${msg}`);
  if (node.kind === "null") return { type: "", backend: {} };
  if (node.kind !== "object") {
    throw wrap(`json: cannot unmarshal ${goJsonTypeName(node)} into Go value of type struct { Type string }`);
  }
  const backend = goJsonToValue(node) as Record<string, unknown>;
  let type = "";
  let typeError: Error | undefined;
  for (const [key, value] of node.entries) {
    if (foldKey(key) !== "type") continue;
    if (value.kind === "string") type = value.value;
    else if (value.kind !== "null") {
      typeError ??= wrap(
        `json: cannot unmarshal ${goJsonTypeName(value)} into Go struct field .Type of type string`,
      );
    }
  }
  if (typeError !== undefined) throw typeError;
  return { type: type.toLowerCase(), backend };
}

/**
 * Parses net-conf.json text as upstream's ParseConfig does (no defaults beyond EnableIPv4 and the backend
 * type; see checkNetworkConfig). Throws an Error whose message is Go's text for the same input.
 */
export function parseConfig(text: string): NetworkConfig {
  const root = parseGoJson(text);
  const cfg: NetworkConfig = {
    enableIpv4: true,
    enableIpv6: false,
    enableNftables: false,
    network: null,
    ipv6Network: null,
    subnetLen: 0,
    subnetMin: null,
    subnetMax: null,
    ipv6SubnetLen: 0,
    ipv6SubnetMin: null,
    ipv6SubnetMax: null,
    backendType: "udp",
    backend: {},
  };
  let saved: Error | undefined;
  const saveError = (e: Error): void => {
    saved ??= e;
  };
  let backendNode: GoJsonNode | undefined;
  if (root.kind === "object") {
    for (const [key, node] of root.entries) {
      const folded = foldKey(key);
      if (folded === "backend") backendNode = node;
      else FIELDS[folded]?.(cfg, node, saveError);
    }
  } else if (root.kind !== "null") {
    saveError(
      new Error(`json: cannot unmarshal ${goJsonTypeName(root)} into Go value of type subnet.Config`),
    );
  }
  if (saved !== undefined) throw saved;
  const { type, backend } = parseBackend(backendNode);
  cfg.backendType = type;
  cfg.backend = backend;
  return cfg;
}

interface FamilyView {
  family: Family;
  network: IpNet | null;
  subnetLen: number;
  min: IpAddr | null;
  max: IpAddr | null;
}

const TEXTS = {
  4: {
    noNetwork: "please define a correct Network parameter in the flannel config",
    maxLen: 30,
    tooSmall: "network is too small. Minimum useful network prefix is /28",
    minName: "SubnetMin",
    maxName: "SubnetMax",
    netName: "Network",
    defaultLen: 24,
  },
  6: {
    noNetwork: "please define a correct IPv6Network parameter in the flannel config",
    maxLen: 126,
    tooSmall: "IPv6Network is too small. Minimum useful network prefix is /124",
    minName: "IPv6SubnetMin",
    maxName: "IPv6SubnetMax",
    netName: "IPv6Network",
    defaultLen: 64,
  },
} as const;

function checkFamily(v: FamilyView): { subnetLen: number; min: IpAddr; max: IpAddr } {
  const t = TEXTS[v.family];
  const bits = v.family === 4 ? 32 : 128;
  const net = v.network;
  // Upstream's Empty(): the zero value, which a literal 0.0.0.0/0 (or ::/0) also is.
  if (net === null || (net.ip.isUnspecified && net.prefixLen === 0)) throw new Error(t.noNetwork);
  let subnetLen = v.subnetLen;
  if (subnetLen > 0) {
    if (subnetLen > t.maxLen) throw new Error(`SubnetLen must be less than /${t.maxLen + 1}`);
    if (subnetLen < net.prefixLen + 2)
      throw new Error("network must be able to accommodate at least four subnets");
  } else if (net.prefixLen > t.maxLen - 2) {
    throw new Error(t.tooSmall);
  } else if (net.prefixLen <= t.defaultLen - 2) {
    subnetLen = t.defaultLen;
  } else {
    subnetLen = net.prefixLen + 2;
  }
  const size = 1n << BigInt(bits - subnetLen);
  let min = v.min;
  if (min === null || min.isUnspecified) min = IpAddr.of(v.family, net.ip.value + size);
  else if (!net.contains(min)) throw new Error(`${t.minName} is not in the range of the ${t.netName}`);
  let max = v.max;
  if (max === null || max.isUnspecified) max = IpAddr.of(v.family, net.ip.value + net.size - size);
  else if (!net.contains(max)) throw new Error(`${t.maxName} is not in the range of the ${t.netName}`);
  const mask = maskOf(v.family, subnetLen);
  if ((min.value & mask) !== min.value)
    throw new Error(`${t.minName} is not on a SubnetLen boundary: ${min}`);
  if ((max.value & mask) !== max.value)
    throw new Error(`${t.maxName} is not on a SubnetLen boundary: ${max}`);
  return { subnetLen, min, max };
}

/**
 * Upstream's CheckNetworkConfig: computes SubnetLen / SubnetMin / SubnetMax (and the IPv6 ones) when
 * unset, writing them into `cfg`, and throws upstream's exact message when the config cannot work.
 * Note upstream does not check SubnetMin <= SubnetMax; neither do we.
 */
export function checkNetworkConfig(cfg: NetworkConfig): void {
  if (cfg.enableIpv4) {
    const r = checkFamily({
      family: 4,
      network: cfg.network,
      subnetLen: cfg.subnetLen,
      min: cfg.subnetMin,
      max: cfg.subnetMax,
    });
    cfg.subnetLen = r.subnetLen;
    cfg.subnetMin = r.min;
    cfg.subnetMax = r.max;
  }
  if (cfg.enableIpv6) {
    const r = checkFamily({
      family: 6,
      network: cfg.ipv6Network,
      subnetLen: cfg.ipv6SubnetLen,
      min: cfg.ipv6SubnetMin,
      max: cfg.ipv6SubnetMax,
    });
    cfg.ipv6SubnetLen = r.subnetLen;
    cfg.ipv6SubnetMin = r.min;
    cfg.ipv6SubnetMax = r.max;
  }
}
