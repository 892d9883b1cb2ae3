import assert from "node:assert/strict";
import { test } from "node:test";

import { IpNet } from "../ip/net.ts";
import {
  buildRestorePayload,
  flannelChainOf,
  forwardRules,
  masqRules,
  splitRuleLine,
  type IptablesRule,
} from "./rules.ts";

const asAppendLines = (rules: IptablesRule[]): string =>
  buildRestorePayload({ x: rules.map((r) => ["-A", r.chain, ...r.spec]) })
    .split("\n")
    .filter((l) => l.startsWith("-A"))
    .join("\n");

// Spec §6.1 golden (upstream dist/functional-test-k8s.sh), without the -P/-N lines that only a listing has.
const GOLDEN_MASQ = `-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.10.1.0/24 -d 10.10.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.10.0.0/16 -d 10.10.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.10.0.0/16 -d 10.10.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.10.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.10.0.0/16 -d 10.10.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`;

const GOLDEN_FWD = `-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FLANNEL-FWD -s 10.10.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.10.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`;

test("masquerade rules equal the upstream golden listing (spec §10.2 item 13)", () => {
  const rules = masqRules({
    network: IpNet.parse("10.10.0.0/16"),
    subnet: IpNet.parse("10.10.1.0/24"),
    randomFully: true,
  });
  assert.equal(asAppendLines(rules), GOLDEN_MASQ);
  assert.ok(rules.every((r) => r.table === "nat"));
});

test("masquerade rules without --random-fully", () => {
  const rules = masqRules({
    network: IpNet.parse("10.10.0.0/16"),
    subnet: IpNet.parse("10.10.1.0/24"),
    randomFully: false,
  });
  assert.equal(asAppendLines(rules), GOLDEN_MASQ.replaceAll(" --random-fully", ""));
});

test("IPv6 masquerade rules use ff00::/8 and the IPv6 network", () => {
  const rules = masqRules({
    network: IpNet.parse("fc00::/48"),
    subnet: IpNet.parse("fc00:0:0:5::/64"),
    randomFully: true,
  });
  assert.deepEqual(rules[5]?.spec, [
    "-s",
    "fc00::/48",
    "!",
    "-d",
    "ff00::/8",
    "-m",
    "comment",
    "--comment",
    "flanneld masq",
    "-j",
    "MASQUERADE",
    "--random-fully",
  ]);
  assert.deepEqual(rules[4]?.spec.slice(0, 5), ["!", "-s", "fc00::/48", "-d", "fc00:0:0:5::/64"]);
});

test("forward rules equal the upstream golden listing", () => {
  const rules = forwardRules(IpNet.parse("10.10.0.0/16"));
  assert.equal(asAppendLines(rules), GOLDEN_FWD);
  assert.ok(rules.every((r) => r.table === "filter"));
});

test("restore payload (upstream TestRules, spec §10.2 item 14)", () => {
  const payload = buildRestorePayload({
    nat: [
      ["-A", "INPUT", "-s", "127.0.0.1", "-d", "127.0.0.1", "-j", "RETURN"],
      [
        "-A",
        "INPUT",
        "-s",
        "127.0.0.1",
        "!",
        "-d",
        "224.0.0.0/4",
        "-m",
        "comment",
        "--comment",
        "flanneld masq",
        "-j",
        "MASQUERADE",
        "--random-fully",
      ],
    ],
  });
  assert.equal(
    payload,
    "*nat\n" +
      "-A INPUT -s 127.0.0.1 -d 127.0.0.1 -j RETURN\n" +
      '-A INPUT -s 127.0.0.1 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully\n' +
      "COMMIT\n",
  );
});

test("restore payload keeps table order of a Map and skips empty tables", () => {
  const payload = buildRestorePayload(
    new Map([
      ["filter", [["-D", "FORWARD", "-j", "X"]]],
      ["mangle", []],
      ["nat", [["-A", "POSTROUTING", "-j", "Y"]]],
    ]),
  );
  assert.equal(payload, "*filter\n-D FORWARD -j X\nCOMMIT\n*nat\n-A POSTROUTING -j Y\nCOMMIT\n");
  assert.equal(buildRestorePayload({}), "");
});

test("flannelChainOf finds the chain a rule lives in or jumps to", () => {
  const [jump, inner] = forwardRules(IpNet.parse("10.0.0.0/8"));
  assert.equal(flannelChainOf(jump!), "FLANNEL-FWD");
  assert.equal(flannelChainOf(inner!), "FLANNEL-FWD");
  assert.equal(flannelChainOf({ table: "nat", chain: "INPUT", spec: ["-j", "RETURN"] }), undefined);
});

test("splitRuleLine reads iptables -S lines back into tokens", () => {
  assert.deepEqual(splitRuleLine('-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG'), [
    "-A",
    "POSTROUTING",
    "-m",
    "comment",
    "--comment",
    "flanneld masq",
    "-j",
    "FLANNEL-POSTRTG",
  ]);
  assert.deepEqual(splitRuleLine('-A X --comment "a \\"b\\""  -j Y '), [
    "-A",
    "X",
    "--comment",
    'a "b"',
    "-j",
    "Y",
  ]);
  assert.deepEqual(splitRuleLine('--comment ""'), ["--comment", ""]);
  // Round trip through the payload format.
  for (const r of masqRules({
    network: IpNet.parse("10.10.0.0/16"),
    subnet: IpNet.parse("10.10.1.0/24"),
    randomFully: true,
  })) {
    const line = buildRestorePayload({ nat: [["-A", r.chain, ...r.spec]] }).split("\n")[1] ?? "";
    assert.deepEqual(splitRuleLine(line), ["-A", r.chain, ...r.spec]);
  }
});
