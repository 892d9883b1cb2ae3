// WireGuard keys with Node's X25519 (RFC 7748), in the formats `wg` uses: 32 raw bytes as standard base64.
// Node has no raw X25519 import, so a raw private key is wrapped in the fixed PKCS#8 prefix for the
// X25519 OID (1.3.101.110) and the public key is the last 32 bytes of the SPKI export.

import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";

const PKCS8_X25519_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

/**
 * A new private key, clamped as `wg genkey` clamps it (clear bits 0-2 and 255, set bit 254), so the file we
 * write looks exactly like one `wg genkey` wrote. X25519 clamps anyway, so the public key is unaffected.
 */
export function generateWireguardPrivateKey(): string {
  const der = generateKeyPairSync("x25519").privateKey.export({ format: "der", type: "pkcs8" });
  const raw = Buffer.from(der.subarray(der.length - 32));
  raw[0] = (raw[0] ?? 0) & 248;
  raw[31] = ((raw[31] ?? 0) & 127) | 64;
  return raw.toString("base64");
}

/** The public key of a base64 private key (`wg pubkey`). Throws when it is not 32 bytes of base64. */
export function wireguardPublicKey(privateKeyB64: string): string {
  const raw = Buffer.from(privateKeyB64.trim(), "base64");
  if (raw.length !== 32) {
    throw new Error("Invalid WireGuard private key: expected 32 bytes in base64 (as `wg genkey` writes)");
  }
  const priv = createPrivateKey({
    key: Buffer.concat([PKCS8_X25519_PREFIX, raw]),
    format: "der",
    type: "pkcs8",
  });
  const spki = createPublicKey(priv).export({ format: "der", type: "spki" });
  return Buffer.from(spki.subarray(spki.length - 32)).toString("base64");
}
