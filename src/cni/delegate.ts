// The delegate netconf that the flannel plugin hands to the real plugin (default `bridge` + `host-local`),
// built from the plugin's netconf and subnet.env exactly as upstream `doCmdAdd` / `getDelegateIPAM` do.
//
// Design notes: the output bytes matter. They are stored in `<dataDir>/<containerID>` and replayed on DEL,
// and upstream's are compact JSON with sorted keys (a Go map), except the routes, which upstream holds as
// CNI `types.Route` structs and so writes in field order (dst, gw, mtu, advmss, priority, table, scope)
// with Go's `omitempty` rules. User routes go through that struct too: unknown route keys are dropped and
// `dst` keeps its host bits (`10.96.0.5/12` stays as written) while `gw` is re-printed canonically.
// Keys the user set in `delegate` are never overwritten, except `name`, `ipam` (refused up front),
// `cniVersion` and `runtimeConfig`, which the plugin always sets when it has them.

import { IpAddr } from "../ip/addr.ts";
import { IpNet } from "../ip/net.ts";
import { GoStruct, describeJson, goMarshal, isJsonObject, structFields } from "./go-json.ts";
import type { FlannelNetConf } from "./netconf.ts";
import type { SubnetEnv } from "./subnet-env.ts";

export interface DelegateConf {
  /** The delegate plugin's binary name (`delegate.type`, default "bridge"). */
  type: string;
  /** The delegate conf as a JSON value (routes as GoStruct). */
  value: Record<string, unknown>;
  /** The exact bytes sent to the delegate and stored for DEL. */
  json: string;
}

/** Checks the user's `delegate` object; throws upstream's messages. */
export function validateDelegate(delegate: Record<string, unknown> | null): void {
  if (delegate === null) return;
  if (Object.hasOwn(delegate, "type") && typeof delegate["type"] !== "string") {
    throw new Error("'delegate' dictionary, if present, must have (string) 'type' field");
  }
  if (Object.hasOwn(delegate, "name")) {
    throw new Error("'delegate' dictionary must not have 'name' field, it'll be set by flannel");
  }
  if (Object.hasOwn(delegate, "ipam")) {
    throw new Error("'delegate' dictionary must not have 'ipam' field, it'll be set by flannel");
  }
}

/** Builds the delegate conf for ADD (validation included). Pure. */
export function buildDelegate(conf: FlannelNetConf, env: SubnetEnv): DelegateConf {
  validateDelegate(conf.delegate);
  const d: Record<string, unknown> = { ...(conf.delegate ?? {}) };
  if (conf.runtimeConfig !== null) d["runtimeConfig"] = conf.runtimeConfig;
  d["name"] = conf.name;
  if (!Object.hasOwn(d, "type")) d["type"] = "bridge";
  // If flannel is not masquerading pod traffic, the bridge should.
  if (!Object.hasOwn(d, "ipMasq")) d["ipMasq"] = !env.ipMasq;
  if (!Object.hasOwn(d, "mtu")) d["mtu"] = env.mtu;
  const type = d["type"] as string;
  if (type === "bridge" && !Object.hasOwn(d, "isGateway")) d["isGateway"] = true;
  if (conf.cniVersion !== "") d["cniVersion"] = conf.cniVersion;
  try {
    d["ipam"] = buildDelegateIpam(conf.ipam, env);
  } catch (err) {
    throw new Error(`failed to assemble Delegate IPAM: ${err instanceof Error ? err.message : String(err)}`);
  }
  return { type, value: d, json: goMarshal(d) };
}

/** The delegate's `ipam`: the user's ipam keys, `type` default host-local, `ranges` and `routes` set. */
export function buildDelegateIpam(
  ipam: Record<string, unknown> | null,
  env: SubnetEnv,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(ipam ?? {}) };
  if (!Object.hasOwn(out, "type")) out["type"] = "host-local";
  const ranges: unknown[] = [];
  if (env.subnet !== null) ranges.push([{ subnet: env.subnet.toString() }]);
  if (env.ipv6Subnet !== null) ranges.push([{ subnet: env.ipv6Subnet.toString() }]);
  out["ranges"] = ranges;
  let routes: GoStruct[];
  try {
    routes = Object.hasOwn(out, "routes") ? parseRoutes(out["routes"]) : [];
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`failed to read IPAM routes: failed to parse ipam.routes: ${msg}`);
  }
  for (const n of [...env.networks, ...env.ipv6Networks]) routes.push(new GoStruct([["dst", n.toString()]]));
  out["routes"] = routes;
  return out;
}

const ROUTE_FIELDS = ["dst", "gw", "mtu", "advmss", "priority", "table", "scope"] as const;

/** User routes through CNI's `types.Route` (JSON field order, omitempty). */
function parseRoutes(v: unknown): GoStruct[] {
  if (v === null) return [];
  if (!Array.isArray(v)) throw new Error(`ipam.routes must be an array of routes, not ${describeJson(v)}`);
  return v.map((r: unknown, i) => {
    const at = `ipam.routes[${i}]`;
    if (!isJsonObject(r))
      throw new Error(`${at} must be an object like {"dst":"10.96.0.0/12"}, not ${describeJson(r)}`);
    const f = structFields(r, ROUTE_FIELDS);
    const fields: [string, unknown][] = [];
    if (typeof f.dst !== "string")
      throw new Error(`${at} needs "dst" as a CIDR string, not ${describeJson(f.dst ?? null)}`);
    fields.push(["dst", cidrKeepingHost(f.dst, at)]);
    if (f.gw !== undefined && f.gw !== null && f.gw !== "") {
      const gw = typeof f.gw === "string" ? IpAddr.tryParse(f.gw) : undefined;
      if (gw === undefined) throw new Error(`${at}.gw must be an IP address, not ${describeJson(f.gw)}`);
      fields.push(["gw", gw.toString()]);
    }
    for (const k of ["mtu", "advmss", "priority"] as const) {
      const n = intField(f[k], `${at}.${k}`);
      if (n !== null && n !== 0) fields.push([k, n]);
    }
    for (const k of ["table", "scope"] as const) {
      const n = intField(f[k], `${at}.${k}`);
      if (n !== null) fields.push([k, n]);
    }
    return new GoStruct(fields);
  });
}

function intField(v: unknown, at: string): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "number" || !Number.isInteger(v))
    throw new Error(`${at} must be an integer, not ${describeJson(v)}`);
  return v;
}

/** CNI's types.ParseCIDR: validated like net.ParseCIDR but the address keeps its host bits. */
function cidrKeepingHost(text: string, at: string): string {
  const net = IpNet.tryParse(text);
  if (net === undefined) throw new Error(`${at}.dst: invalid CIDR address: ${text}`);
  const ip = IpAddr.parse(text.slice(0, text.indexOf("/")));
  return `${ip.toString()}/${net.prefixLen}`;
}
