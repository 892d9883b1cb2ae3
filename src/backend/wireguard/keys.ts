// The node's WireGuard private key file (upstream: /run/flannel/wgkey, or WIREGUARD_KEY_FILE): reused when
// present, otherwise generated and written as base64 text with mode 0400. No trailing newline: upstream
// parses the whole file as the key, so a node switched back to upstream flanneld must be able to read it.

import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { generateWireguardPrivateKey, wireguardPublicKey } from "../../kernel/wireguard-key.ts";

export const DEFAULT_WIREGUARD_KEY_FILE = "/run/flannel/wgkey";

/** Reads or creates the key file; returns both keys (base64). The private key is never logged. */
export function loadOrCreateWireguardKey(path: string): { privateKey: string; publicKey: string } {
  let text: string | undefined;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new Error(`could not read the WireGuard private key file ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  if (text !== undefined) {
    const privateKey = text.trim();
    try {
      return { privateKey, publicKey: wireguardPublicKey(privateKey) };
    } catch {
      throw new Error(
        `The WireGuard private key file ${path} does not hold a base64 key: fix it (wg genkey > ${path}) or delete it to have one generated`,
      );
    }
  }
  const privateKey = generateWireguardPrivateKey();
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, privateKey, { mode: 0o400, flag: "wx" });
  chmodSync(path, 0o400); // the umask may have taken bits off; 0400 is what upstream leaves
  return { privateKey, publicKey: wireguardPublicKey(privateKey) };
}
