// The wireguard `Backend` object of net-conf.json, decoded like Go's encoding/json decodes upstream's
// anonymous config struct (case-insensitive keys, unknown keys ignored, `null` keeps the default).

import { decodeBackendField } from "../../config/config.ts";

export type WireguardMode = "separate" | "auto" | "ipv4" | "ipv6";

export interface WireguardConfig {
  /** UDP port of flannel-wg (the only device in the single-device modes). */
  listenPort: number;
  /** UDP port of flannel-wg-v6 (separate mode). */
  listenPortV6: number;
  /** Base MTU; devices get base − 80. */
  mtu: number;
  /** Preshared key, base64 of 32 bytes; undefined when none. */
  psk: string | undefined;
  /** Persistent keepalive in seconds; 0 is off. */
  keepaliveSec: number;
  mode: WireguardMode;
}

/** Outer IPv6 header 40 + UDP 8 + WireGuard 32 (upstream uses 80 for both underlay families). */
export const WIREGUARD_OVERHEAD = 80;
const MODES: readonly string[] = ["separate", "auto", "ipv4", "ipv6"];

/**
 * Decodes the wireguard config with upstream's defaults (ports 51820/51821, Mode separate, MTU = `extMtu`).
 * Errors: `could not parse psk: …`, `no valid Mode configured`, and Go's type errors per field.
 */
export function decodeWireguardConfig(backend: Record<string, unknown>, extMtu: number): WireguardConfig {
  const int = (name: string): number | undefined => decodeBackendField(backend, name, "int", "WireGuard");
  const str = (name: string): string | undefined => decodeBackendField(backend, name, "string", "WireGuard");
  const mode = str("Mode") ?? "separate";
  if (!MODES.includes(mode)) throw new Error("no valid Mode configured");
  const psk = str("PSK");
  if (psk !== undefined) parsePsk(psk);
  const cfg: WireguardConfig = {
    listenPort: int("ListenPort") ?? 51820,
    listenPortV6: int("ListenPortV6") ?? 51821,
    mtu: int("MTU") ?? extMtu,
    psk: psk === undefined || psk === "" ? undefined : psk,
    keepaliveSec: int("PersistentKeepaliveInterval") ?? 0,
    mode: mode as WireguardMode,
  };
  for (const [name, port] of [
    ["ListenPort", cfg.listenPort],
    ["ListenPortV6", cfg.listenPortV6],
  ] as const) {
    if (port < 0 || port > 65535)
      throw new Error(`Invalid WireGuard ${name} ${port}: set Backend.${name} to a value from 1 to 65535`);
  }
  if (cfg.keepaliveSec < 0 || cfg.keepaliveSec > 65535) {
    throw new Error(
      `Invalid WireGuard PersistentKeepaliveInterval ${cfg.keepaliveSec}: set it to seconds from 0 (off) to 65535`,
    );
  }
  if (cfg.mtu - WIREGUARD_OVERHEAD < 1280) {
    throw new Error(
      `Invalid WireGuard MTU ${cfg.mtu}: the base MTU must be at least ${1280 + WIREGUARD_OVERHEAD} (IPv6 needs 1280 inside the tunnel); set Backend.MTU or the external interface's MTU higher`,
    );
  }
  return cfg;
}

/** Checks a base64 preshared key (`wg genpsk`): `could not parse psk: …` otherwise. "" means none. */
export function parsePsk(psk: string): void {
  if (psk === "") return;
  const b = Buffer.from(psk, "base64");
  if (b.toString("base64") !== psk)
    throw new Error(`could not parse psk: illegal base64 data in ${JSON.stringify(psk)}`);
  if (b.length !== 32) throw new Error(`could not parse psk: wgtypes: incorrect key size: ${b.length}`);
}

/** Upstream's BackendData: `{"PublicKey":"<b64>","Port":<port>}`, compact, in this key order. */
export function wireguardBackendData(publicKey: string, port: number): string {
  return JSON.stringify({ PublicKey: publicKey, Port: port });
}

/** A peer's BackendData; Go decodes keys case-insensitively. Throws on a missing or malformed key. */
export function parseWireguardBackendData(raw: string | undefined): { publicKey: string; port: number } {
  if (raw === undefined) throw new Error("lease has no backend data");
  const obj: unknown = JSON.parse(raw);
  if (typeof obj !== "object" || obj === null || Array.isArray(obj))
    throw new Error(`backend data is not an object: ${raw}`);
  let publicKey: string | undefined;
  let port = 0;
  for (const [k, v] of Object.entries(obj)) {
    if (k.toLowerCase() === "publickey" && typeof v === "string") publicKey = v;
    if (k.toLowerCase() === "port" && typeof v === "number" && Number.isInteger(v)) port = v;
  }
  if (publicKey === undefined || Buffer.from(publicKey, "base64").length !== 32)
    throw new Error(`invalid PublicKey in backend data: ${raw}`);
  return { publicKey, port };
}
