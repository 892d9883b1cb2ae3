// External interface selection (spec §7.1; upstream main.go + pkg/ipmatch/match.go): which link carries
// inter-host traffic, which of its addresses flannel uses, and which address it advertises to peers.
//
// Design notes:
// - Decision tree, as upstream: with none of --iface, --iface-regex, --iface-can-reach, the default-route
//   interface is used, unless --public-ip (or --public-ipv6) is given, in which case that address must be
//   local and its interface is used (spec A3). Otherwise each --iface (IP or name) is tried in order, then
//   each --iface-regex (addresses first, then names), then --iface-can-reach (`ip route get`); each miss
//   is logged and the next candidate is tried.
// - Messages and log lines are upstream's, because operators search for them. Selection failure throws
//   FlannelError (code EXT_IFACE) whose message is the line upstream logs before exiting 1.
// - Deliberate differences (upstream bugs that would give a half-filled result):
//   * a family that is enabled but got no address from the matching rule (dual stack with `--iface=<IPv4>`
//     and no --public-ipv6, `--iface-can-reach`, dual-stack regex matched by name after an earlier
//     interface matched by one family) is filled from the chosen interface's preferred address, never left
//     empty or taken from another interface;
//   * `--iface=<IP>` looks the address up in its own family (upstream searches IPv4 addresses in IPv4-only
//     mode and IPv6 addresses in IPv6-only mode, so a v6 address never matches in v4 mode);
//   * families that are not enabled are null in the result.
// - Go's regexp (RE2) and JavaScript's differ at the edges; the common leading `(?i)`/`(?s)`/`(?m)` flag
//   groups are translated, other RE2-only syntax is reported as a compile error.

import { FlannelError, errorMessage } from "../errors.ts";
import { IpAddr, type Family } from "../ip/addr.ts";
import {
  IFA_F_DEPRECATED,
  IFA_F_PERMANENT,
  RT_TABLE_MAIN,
  type Kernel,
  type Link,
  type Route,
} from "../kernel/ports.ts";
import type { Logger } from "../log/logger.ts";
import type { ExternalInterface } from "./backend.ts";

export interface ExtIfaceOptions {
  /** --iface values (interface name or IP), tried in order. */
  iface: string[];
  /** --iface-regex values, tried in order after every --iface. */
  ifaceRegex: string[];
  /** --iface-can-reach; "" when not given. */
  ifaceCanReach: string;
  publicIp: string;
  publicIpv6: string;
  enableIpv4: boolean;
  enableIpv6: boolean;
}

/** IFA_F_TEMPORARY (IPv6 privacy address); the same bit marks secondary IPv4 addresses. */
const IFA_F_TEMPORARY = 0x01;

interface Stack {
  v4: boolean;
  v6: boolean;
}

/**
 * Chooses the external interface as upstream flanneld does (spec §7.1) and logs the same lines.
 * Throws FlannelError (code EXT_IFACE) with upstream's message when nothing suitable is found.
 */
export function selectExternalInterface(
  kernel: Kernel,
  opts: ExtIfaceOptions,
  logger: Logger,
): ExternalInterface {
  if (!opts.enableIpv4 && !opts.enableIpv6) {
    throw new FlannelError("EXT_IFACE", "none defined stack", {
      hint: "Enable IPv4 (EnableIPv4) and/or IPv6 (EnableIPv6) in the network configuration",
    });
  }
  const stack: Stack = { v4: opts.enableIpv4, v6: opts.enableIpv6 };
  const ctx: Ctx = { kernel, stack, opts, logger };

  if (opts.iface.length === 0 && opts.ifaceRegex.length === 0 && opts.ifaceCanReach === "") {
    const ifname = opts.publicIp !== "" ? opts.publicIp : opts.publicIpv6;
    try {
      return lookup(ctx, ifname === "" ? { by: "default" } : { by: "name-or-ip", value: ifname });
    } catch (err) {
      throw new FlannelError("EXT_IFACE", `Failed to find any valid interface to use: ${errorMessage(err)}`, {
        cause: err,
        hint:
          ifname === ""
            ? "Add a default route or choose the interface with --iface, --iface-regex or --iface-can-reach"
            : "--public-ip must be an address of this host unless --iface, --iface-regex or --iface-can-reach chooses the interface",
      });
    }
  }

  for (const value of opts.iface) {
    try {
      // An empty value selects nothing specific: upstream then falls through to the default route.
      return lookup(ctx, value === "" ? { by: "default" } : { by: "name-or-ip", value });
    } catch (err) {
      logger.info(`Could not find valid interface matching ${value}: ${errorMessage(err)}`);
    }
  }
  for (const pattern of opts.ifaceRegex) {
    try {
      return lookup(ctx, pattern === "" ? { by: "default" } : { by: "regex", pattern });
    } catch (err) {
      logger.info(`Could not find valid interface matching ${pattern}: ${errorMessage(err)}`);
    }
  }
  if (opts.ifaceCanReach !== "") {
    try {
      return lookup(ctx, { by: "can-reach", dst: opts.ifaceCanReach });
    } catch (err) {
      logger.info(
        `Could not find valid interface matching ifaceCanReach: ${opts.ifaceCanReach}: ${errorMessage(err)}`,
      );
    }
  }
  throw new FlannelError(
    "EXT_IFACE",
    "Failed to find interface to use that matches the interfaces and/or regexes provided",
    {
      hint: "Check the --iface, --iface-regex and --iface-can-reach values against `ip addr` on this node",
    },
  );
}

/**
 * The usable addresses of a link in one family, best first: global or link-local unicast, not deprecated;
 * global before link-local, permanent before dynamic, non-temporary before temporary (upstream
 * GetInterfaceIP4Addrs / GetInterfaceIP6Addrs).
 */
export function interfaceAddrs(kernel: Kernel, linkIndex: number, family: Family): IpAddr[] {
  const rank = (ip: IpAddr, flags: number): number =>
    (ip.isGlobalUnicast ? 0 : 4) +
    ((flags & IFA_F_PERMANENT) !== 0 ? 0 : 2) +
    ((flags & IFA_F_TEMPORARY) !== 0 ? 1 : 0);
  return kernel.addrs
    .list({ linkIndex, family })
    .filter((a) => a.addr.family === family && (a.flags & IFA_F_DEPRECATED) === 0)
    .filter((a) => a.addr.ip.isGlobalUnicast || a.addr.ip.isLinkLocalUnicast)
    .map((a, i) => ({ ip: a.addr.ip, key: rank(a.addr.ip, a.flags), i }))
    .sort((x, y) => x.key - y.key || x.i - y.i)
    .map((x) => x.ip);
}

/** Compiles a Go (RE2) pattern as a JavaScript RegExp, translating leading flag groups like `(?i)`. */
export function compileGoRegex(pattern: string): RegExp {
  let source = pattern;
  let flags = "";
  const m = /^\(\?([ims]+)\)/.exec(source);
  if (m) {
    flags = [...new Set(m[1])].join("");
    source = source.slice(m[0].length);
  }
  try {
    return new RegExp(source, flags);
  } catch (err) {
    throw new Error(`could not compile the IP address regex '${pattern}': ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

type Rule =
  | { by: "default" }
  | { by: "name-or-ip"; value: string }
  | { by: "regex"; pattern: string }
  | { by: "can-reach"; dst: string };

interface Ctx {
  kernel: Kernel;
  stack: Stack;
  opts: ExtIfaceOptions;
  logger: Logger;
}

interface Found {
  link: Link;
  v4: IpAddr | null;
  v6: IpAddr | null;
}

/** One candidate rule → the interface and addresses, or an Error with upstream's inner message. */
function lookup(ctx: Ctx, rule: Rule): ExternalInterface {
  const { kernel, stack, opts, logger } = ctx;
  let found: Found;
  switch (rule.by) {
    case "name-or-ip":
      found = byNameOrIp(ctx, rule.value);
      break;
    case "regex":
      found = byRegex(ctx, rule.pattern);
      break;
    case "can-reach":
      found = byCanReach(ctx, rule.dst);
      break;
    case "default":
      found = byDefaultRoute(ctx);
      break;
  }

  // Only the enabled families; a missing one comes from the chosen interface itself.
  let v4 = stack.v4 ? found.v4 : null;
  let v6 = stack.v6 ? found.v6 : null;
  const name = found.link.name;
  if (stack.v4 && v4 === null) {
    v4 = interfaceAddrs(kernel, found.link.index, 4)[0] ?? null;
    if (v4 === null) throw new Error(`failed to find IPv4 address for interface ${name}`);
  }
  if (stack.v6 && v6 === null) {
    v6 = interfaceAddrs(kernel, found.link.index, 6)[0] ?? null;
    if (v6 === null) throw new Error(`failed to find IPv6 address for interface ${name}`);
  }
  if (v4 !== null) logger.info(`Using interface with name ${name} and address ${v4.toString()}`);
  if (v6 !== null) logger.info(`Using interface with name ${name} and v6 address ${v6.toString()}`);

  if (found.link.mtu === 0) {
    throw new Error(`failed to determine MTU for ${(v4 ?? v6 ?? name).toString()} interface`);
  }

  let extAddr: IpAddr | null = null;
  if (opts.publicIp !== "") {
    extAddr = IpAddr.tryParse(opts.publicIp) ?? null;
    if (extAddr === null) throw new Error(`invalid public IP address: ${opts.publicIp}`);
    logger.info(`Using ${extAddr.toString()} as external address`);
  } else if (stack.v4) {
    logger.info(`Defaulting external address to interface address (${String(v4)})`);
    extAddr = v4;
  }
  let extV6Addr: IpAddr | null = null;
  if (opts.publicIpv6 !== "") {
    extV6Addr = IpAddr.tryParse(opts.publicIpv6) ?? null;
    if (extV6Addr === null) throw new Error(`invalid public IPv6 address: ${opts.publicIpv6}`);
    logger.info(`Using ${extV6Addr.toString()} as external address`);
  } else if (stack.v6) {
    logger.info(`Defaulting external v6 address to interface address (${String(v6)})`);
    extV6Addr = v6;
  }

  return { iface: found.link, ifaceAddr: v4, ifaceV6Addr: v6, extAddr, extV6Addr };
}

/** Links in kernel (index) order, as Go's net.Interfaces(). */
function linksInOrder(kernel: Kernel): Link[] {
  return kernel.links.list().sort((a, b) => a.index - b.index);
}

/** The first link that has `ip` as one of its addresses (any scope or flags, as upstream). */
function ownerOf(kernel: Kernel, ip: IpAddr): Link | undefined {
  const owners = new Set(
    kernel.addrs
      .list({ family: ip.family })
      .filter((a) => a.addr.ip.equals(ip))
      .map((a) => a.linkIndex),
  );
  return linksInOrder(kernel).find((l) => owners.has(l.index));
}

function byNameOrIp(ctx: Ctx, value: string): Found {
  const { kernel, stack, opts, logger } = ctx;
  const ip = IpAddr.tryParse(value);
  if (ip === undefined) {
    const link = kernel.links.get(value);
    if (link === undefined)
      throw new Error(`error looking up interface ${value}: route ip+net: no such network interface`);
    return { link, v4: null, v6: null };
  }

  logger.info(`Searching for interface using ${ip.toString()}`);
  const link = ownerOf(kernel, ip);
  if (link === undefined) {
    throw new Error(
      ip.family === 4
        ? `error looking up interface ${value}: no interface with given IP found`
        : `error looking up v6 interface ${value}: no interface with given IPv6 found`,
    );
  }
  const found: Found = { link, v4: ip.family === 4 ? ip : null, v6: ip.family === 6 ? ip : null };
  // Dual stack chosen by an IPv4 address: a given --public-ipv6 must live on the same interface.
  if (stack.v4 && stack.v6 && ip.family === 4 && opts.publicIpv6 !== "") {
    const v6 = IpAddr.tryParse(opts.publicIpv6);
    if (v6 !== undefined) {
      const v6Link = ownerOf(kernel, v6);
      if (v6Link === undefined) {
        throw new Error(
          `error looking up v6 interface ${opts.publicIpv6}: no interface with given IPv6 found`,
        );
      }
      if (v6Link.name !== link.name) {
        throw new Error(`v6 interface ${v6Link.name} must be the same with v4 interface ${link.name}`);
      }
      found.v6 = v6;
    }
  }
  return found;
}

function byRegex(ctx: Ctx, pattern: string): Found {
  const { kernel, stack } = ctx;
  const re = compileGoRegex(pattern);
  const links = linksInOrder(kernel);
  const match = (ips: IpAddr[]): IpAddr | null => ips.find((ip) => re.test(ip.toString())) ?? null;

  // First the addresses: in dual stack an interface must match with one address of each family.
  for (const link of links) {
    const v4s = stack.v4 ? interfaceAddrs(kernel, link.index, 4) : [];
    const v6s = stack.v6 ? interfaceAddrs(kernel, link.index, 6) : [];
    if ((stack.v4 && v4s.length === 0) || (stack.v6 && v6s.length === 0)) continue;
    const v4 = stack.v4 ? match(v4s) : null;
    const v6 = stack.v6 ? match(v6s) : null;
    if ((stack.v4 && v4 === null) || (stack.v6 && v6 === null)) continue;
    return { link, v4, v6 };
  }
  // Then the names.
  const byName = links.find((l) => re.test(l.name));
  if (byName !== undefined) return { link: byName, v4: null, v6: null };

  const family: Family = stack.v4 ? 4 : 6;
  const available = links.map(
    (l) =>
      `${l.name}:[${interfaceAddrs(kernel, l.index, family)
        .map((ip) => ip.toString())
        .join(" ")}]`,
  );
  throw new Error(
    `could not match pattern ${pattern} to any of the available network interfaces (${available.join(", ")})`,
  );
}

function byCanReach(ctx: Ctx, dst: string): Found {
  const { kernel, logger } = ctx;
  logger.info(`Determining interface to use based on given ifcanreach: ${dst}`);
  const ip = IpAddr.tryParse(dst);
  if (ip === undefined)
    throw new Error(`failed to get ifcanreach based interface: invalid IP address: ${dst}`);
  let route: Route;
  try {
    route = kernel.routes.get(ip);
  } catch (err) {
    throw new Error(
      `failed to get ifcanreach based interface: couldn't lookup route to ${ip.toString()}: ${errorMessage(err)}`,
      { cause: err },
    );
  }
  const link = route.linkIndex === undefined ? undefined : kernel.links.getByIndex(route.linkIndex);
  if (link === undefined) {
    throw new Error(
      `failed to get ifcanreach based interface: couldn't lookup interface: route to ${ip.toString()} has no interface`,
    );
  }
  const src = route.src ?? null;
  return { link, v4: src?.family === 4 ? src : null, v6: src?.family === 6 ? src : null };
}

function defaultRouteLink(kernel: Kernel, family: Family): Link {
  const v6 = family === 6 ? " v6" : "";
  const route = kernel.routes
    .list({ family, table: RT_TABLE_MAIN })
    .find((r) => r.dst === null || r.dst.prefixLen === 0);
  if (route === undefined) throw new Error(`unable to find default${v6} route`);
  const link =
    route.linkIndex === undefined || route.linkIndex <= 0
      ? undefined
      : kernel.links.getByIndex(route.linkIndex);
  if (link === undefined) throw new Error(`found default${v6} route but could not determine interface`);
  return link;
}

function byDefaultRoute(ctx: Ctx): Found {
  const { kernel, stack, logger } = ctx;
  logger.info("Determining IP address of default interface");
  let v4Link: Link | undefined;
  let v6Link: Link | undefined;
  if (stack.v4) {
    try {
      v4Link = defaultRouteLink(kernel, 4);
    } catch (err) {
      throw new Error(`failed to get default interface: ${errorMessage(err)}`, { cause: err });
    }
  }
  if (stack.v6) {
    try {
      v6Link = defaultRouteLink(kernel, 6);
    } catch (err) {
      throw new Error(`failed to get default v6 interface: ${errorMessage(err)}`, { cause: err });
    }
  }
  if (v4Link !== undefined && v6Link !== undefined && v4Link.name !== v6Link.name) {
    throw new Error(
      `v6 default route interface ${v6Link.name} must be the same with v4 default route interface ${v4Link.name}`,
    );
  }
  return { link: (v4Link ?? v6Link) as Link, v4: null, v6: null };
}
