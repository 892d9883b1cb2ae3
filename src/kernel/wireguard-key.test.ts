import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";

import { generateWireguardPrivateKey, wireguardPublicKey } from "./wireguard-key.ts";

test("the public key matches RFC 7748 §6.1 (Alice)", () => {
  const priv = Buffer.from("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", "hex");
  assert.equal(
    Buffer.from(wireguardPublicKey(priv.toString("base64")), "base64").toString("hex"),
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  );
});

test("generated keys are clamped like wg genkey and agree with wg pubkey", (t) => {
  const priv = generateWireguardPrivateKey();
  const raw = Buffer.from(priv, "base64");
  assert.equal(raw.length, 32);
  assert.equal(raw[0]! & 7, 0);
  assert.equal(raw[31]! & 0xc0, 0x40);
  const wg = spawnSync("wg", ["pubkey"], { input: priv, encoding: "utf8" });
  if (wg.error !== undefined) {
    t.skip("wg (wireguard-tools) is not installed; the RFC 7748 vector covers the derivation");
    return;
  }
  assert.equal(wg.status, 0, wg.stderr);
  assert.equal(wireguardPublicKey(priv), wg.stdout.trim());
});

test("a private key that is not 32 bytes of base64 is refused", () => {
  assert.throws(() => wireguardPublicKey("c2hvcnQ="), /Invalid WireGuard private key/);
});
