// The vxlan device (flannel.<VNI> / flannel-v6.<VNI>): create-or-reuse with upstream's compatibility rules,
// its single host address, and the MAC check. Used at registration and again by the repair pass when the
// device was deleted or changed by hand.

import { randomBytes } from "node:crypto";
import { errorMessage } from "../../errors.ts";
import type { Family } from "../../ip/addr.ts";
import type { IfAddr, IpNet } from "../../ip/net.ts";
import { KernelError, type Kernel, type Link, type VxlanSpec } from "../../kernel/ports.ts";
import type { Logger } from "../../log/logger.ts";

/** A random locally administered unicast MAC (upstream pkg/mac: `b[0] = (b[0] & 0xfe) | 0x02`). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = ((b[0] ?? 0) & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

/**
 * Why an existing link cannot serve as the vxlan device described by `want`, or "" when it can (upstream
 * `vxlanLinksIncompat`). MTU, MAC and learning are deliberately not compared: a restart must reuse the
 * device so existing flows are not disturbed.
 */
export function vxlanLinkIncompat(want: VxlanSpec, have: Link): string {
  if (have.kind !== "vxlan" || have.vxlan === undefined) return `link type: vxlan vs ${have.kind || "none"}`;
  const v = have.vxlan;
  if (want.vni !== v.vni) return `vni: ${want.vni} vs ${v.vni}`;
  if (want.vtepIndex > 0 && v.vtepIndex > 0 && want.vtepIndex !== v.vtepIndex) {
    return `vtep (external) interface: ${want.vtepIndex} vs ${v.vtepIndex}`;
  }
  if (want.local !== null && v.local !== null && !want.local.equals(v.local)) {
    return `vtep (external) IP: ${want.local.toString()} vs ${v.local.toString()}`;
  }
  // We never ask for a group or l2miss, so an existing device with either is incompatible.
  if (v.l2miss) return `l2miss: false vs true`;
  if (want.port > 0 && v.port > 0 && want.port !== v.port) return `port: ${want.port} vs ${v.port}`;
  if (want.gbp !== v.gbp) return `gbp: ${want.gbp} vs ${v.gbp}`;
  return "";
}

/**
 * Creates the vxlan device, or reuses an existing compatible one as it is; an incompatible one is deleted
 * and recreated (logged with upstream's warning). Returns the link as the kernel reports it, and whether it
 * was an existing device (which keeps its MAC).
 */
export function ensureVxlanLink(
  kernel: Kernel,
  spec: VxlanSpec,
  logger: Logger,
): { link: Link; reused: boolean } {
  try {
    kernel.links.addVxlan(spec);
  } catch (err) {
    if (!(err instanceof KernelError) || err.errno !== "EEXIST") throw err;
    const existing = kernel.links.get(spec.name);
    if (existing === undefined) {
      // EEXIST without a link of that name: another vxlan device already uses this VNI and port.
      throw new Error(
        `Cannot create ${spec.name}: another vxlan device already uses VNI ${spec.vni} and port ${spec.port || 8472}; delete it or change Backend.VNI`,
        { cause: err },
      );
    }
    logger.v(1)?.info("VXLAN device already exists");
    const incompat = vxlanLinkIncompat(spec, existing);
    if (incompat === "") {
      logger.v(1)?.info("Returning existing device");
      return { link: existing, reused: true };
    }
    logger.warn(
      `${JSON.stringify(spec.name)} already exists with incompatible configuration: ${incompat}; recreating device`,
    );
    try {
      kernel.links.delete(spec.name);
    } catch (delErr) {
      throw new Error(`failed to delete interface: ${errorMessage(delErr)}`, { cause: delErr });
    }
    try {
      kernel.links.addVxlan(spec);
    } catch (addErr) {
      throw new Error(`failed to create vxlan interface: ${errorMessage(addErr)}`, { cause: addErr });
    }
  }
  const link = kernel.links.get(spec.name);
  if (link === undefined) throw new Error(`can't locate created vxlan device ${spec.name}`);
  if (link.kind !== "vxlan") throw new Error(`created vxlan device with index ${link.index} is not vxlan`);
  // Router advertisements on the overlay would add routes flannel does not manage; best effort, as upstream.
  try {
    kernel.sysctl.set(`net/ipv6/conf/${spec.name}/accept_ra`, "0");
  } catch {
    // IPv6 may be disabled on this host; nothing to turn off then.
  }
  return { link, reused: false };
}

export interface ConfigureOptions {
  family: Family;
  /** The single address: the lease subnet's network address as /32 (/128). */
  addr: IfAddr;
  /** The cluster network: other addresses inside it are removed (IPv4). Null when unknown. */
  network: IpNet | null;
  /** The MAC the device must have. */
  mac: string;
  /** Repair mode sets a wrong MAC back instead of failing (at registration a mismatch is an error). */
  fixMac: boolean;
}

/**
 * Gives the device exactly its flannel address (upstream EnsureV4/V6AddressOnLink), brings it up and checks
 * its MAC (systemd's MACAddressPolicy=random may have replaced it: upstream #1795). Idempotent.
 */
export function configureVxlanDevice(
  kernel: Kernel,
  link: Link,
  opts: ConfigureOptions,
  logger: Logger,
): void {
  const { family, addr } = opts;
  let hasAddr = false;
  for (const a of kernel.addrs.list({ linkIndex: link.index, family })) {
    if (a.addr.equals(addr)) {
      hasAddr = true;
      continue;
    }
    const stale = family === 4 ? opts.network?.contains(a.addr.ip) === true : !a.addr.ip.isLinkLocalUnicast;
    if (!stale) continue;
    try {
      kernel.addrs.delete(link.index, a.addr);
    } catch (err) {
      throw new Error(
        `failed to ensure ${family === 6 ? "v6 " : ""}address of interface ${link.name}: failed to remove IP address ${a.addr.toString()} from ${link.name}: ${errorMessage(err)}`,
        { cause: err },
      );
    }
  }
  if (!hasAddr) {
    try {
      kernel.addrs.add(link.index, addr);
    } catch (err) {
      throw new Error(
        `failed to ensure ${family === 6 ? "v6 " : ""}address of interface ${link.name}: failed to add IP address ${addr.toString()} to ${link.name}: ${errorMessage(err)}`,
        { cause: err },
      );
    }
  }
  if (!link.up) {
    try {
      kernel.links.setUp(link.name);
    } catch (err) {
      throw new Error(
        `failed to set ${family === 6 ? "v6 " : ""}interface ${link.name} to UP state: ${errorMessage(err)}`,
        { cause: err },
      );
    }
  }
  const now = kernel.links.get(link.name);
  if (now !== undefined && now.mac !== opts.mac.toLowerCase()) {
    if (!opts.fixMac) {
      throw new Error(
        `${link.name}'s ${family === 6 ? "v6 " : ""}mac address wanted: ${opts.mac}, but got: ${now.mac}`,
      );
    }
    logger.warn(`${link.name}'s mac address changed to ${now.mac}; setting it back to ${opts.mac}`);
    kernel.links.setMac(link.name, opts.mac);
  }
}
