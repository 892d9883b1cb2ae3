// The generic netlink socket and CTRL_CMD_GETFAMILY against the real kernel, in a test namespace: the
// controller resolves its own family "nlctrl" to GENL_ID_CTRL, and a family the kernel lacks is ENOENT —
// which the wireguard port turns into the missing-module error.

import assert from "node:assert/strict";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { Netns, requireRoot } from "../helpers/netns.ts";

const SCRIPT = fileURLToPath(new URL("./genl-child.ts", import.meta.url));

test("generic netlink: CTRL_CMD_GETFAMILY resolves nlctrl and reports a missing family as ENOENT", (t) => {
  if (!requireRoot(t)) return;
  const ns = Netns.create("fts-w");
  try {
    const out = JSON.parse(ns.runTs(SCRIPT)) as { nlctrl: number; missing: string };
    assert.equal(out.nlctrl, 0x10);
    assert.equal(out.missing, "ENOENT");
  } finally {
    ns.delete();
  }
});
