// The vxlan `Backend` object of net-conf.json, decoded as Go's encoding/json decodes upstream's anonymous
// config struct: keys match case-insensitively, unknown keys are ignored, `null` keeps the default, and a
// value of the wrong JSON type is an error naming the field.

import { decodeBackendField } from "../../config/config.ts";

export interface VxlanConfig {
  /** VXLAN network identifier; the device is `flannel.<vni>`. */
  vni: number;
  /** UDP destination port; 0 lets the kernel use its default (8472). */
  port: number;
  gbp: boolean;
  learning: boolean;
  directRouting: boolean;
  /** Base MTU (the external interface's unless configured); devices get base − encapsulation overhead. */
  mtu: number;
}

const DEFAULT_VNI = 1;
/** The smallest MTU IPv4 allows (RFC 791); a device MTU below it is refused by the kernel. */
const MIN_DEVICE_MTU = 68;

/**
 * Decodes the vxlan backend config with upstream's defaults (VNI 1, Port 0, MTU = `extMtu`).
 * Throws `error decoding VXLAN backend config: …` for wrongly typed fields, and a sentence-case error for
 * values the kernel would refuse later with a less helpful errno.
 */
export function decodeVxlanConfig(backend: Record<string, unknown>, extMtu: number): VxlanConfig {
  const int = (name: string): number | undefined => decodeBackendField(backend, name, "int", "VXLAN");
  const bool = (name: string): boolean => decodeBackendField(backend, name, "bool", "VXLAN") ?? false;
  const cfg: VxlanConfig = {
    vni: int("VNI") ?? DEFAULT_VNI,
    port: int("Port") ?? 0,
    gbp: bool("GBP"),
    learning: bool("Learning"),
    directRouting: bool("DirectRouting"),
    mtu: int("MTU") ?? extMtu,
  };
  if (cfg.vni < 0 || cfg.vni > 0xffffff) {
    throw new Error(`Invalid VXLAN VNI ${cfg.vni}: set Backend.VNI to a value from 0 to 16777215`);
  }
  if (cfg.port < 0 || cfg.port > 65535) {
    throw new Error(
      `Invalid VXLAN port ${cfg.port}: set Backend.Port to a value from 1 to 65535, or 0 for 8472`,
    );
  }
  if (cfg.mtu - VXLAN_OVERHEAD[6] < MIN_DEVICE_MTU) {
    throw new Error(
      `Invalid VXLAN MTU ${cfg.mtu}: the base MTU must be at least ${MIN_DEVICE_MTU + VXLAN_OVERHEAD[6]}; ` +
        `set Backend.MTU or the external interface's MTU higher`,
    );
  }
  return cfg;
}

/**
 * Encapsulation overhead per underlay family: outer Ethernet 14 + outer IP (20 / 40) + UDP 8 + VXLAN 8.
 * Upstream uses 50 for both (appendix A12); an IPv6 underlay needs 70 or full-size packets do not fit.
 */
export const VXLAN_OVERHEAD = { 4: 50, 6: 70 } as const;

/** Upstream's log line for the decoded config. */
export function describeVxlanConfig(cfg: VxlanConfig): string {
  return `VXLAN config: VNI=${cfg.vni} Port=${cfg.port} GBP=${cfg.gbp} Learning=${cfg.learning} DirectRouting=${cfg.directRouting}`;
}
