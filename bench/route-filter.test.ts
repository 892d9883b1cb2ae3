import assert from "node:assert/strict";
import { test } from "node:test";
import * as nl from "../src/kernel/netlink/codec.ts";
import { peerRouteDst } from "./route-filter.ts";

const ip4 = (type: number, a: string): nl.Attr => ({ type, data: Buffer.from(a.split(".").map(Number)) });

/** An RTM_NEWROUTE body as the kernel sends it: rtmsg, then RTA_TABLE, RTA_DST, RTA_GATEWAY, RTA_OIF. */
function route(o: { family?: number; dstLen?: number; table?: number; dst?: string; gw?: string | null }) {
  const attrs: nl.Attr[] = [nl.u32(nl.RTA_TABLE, o.table ?? 254), ip4(nl.RTA_DST, o.dst ?? "10.100.3.0")];
  if (o.gw !== null) attrs.push(ip4(nl.RTA_GATEWAY, o.gw ?? "10.100.3.0"));
  attrs.push(nl.u32(4 /* RTA_OIF */, 3));
  return nl.encodeRtMsg(
    {
      family: o.family ?? nl.AF_INET,
      dstLen: o.dstLen ?? 24,
      srcLen: 0,
      tos: 0,
      table: Math.min(o.table ?? 254, 255),
      protocol: 3,
      scope: 0,
      type: 1,
      flags: 0,
    },
    attrs,
  );
}

test("peerRouteDst: a peer's /24 via a gateway in the main table, as its address", () => {
  assert.equal(peerRouteDst(route({})), (10 << 24) + (100 << 16) + (3 << 8));
  assert.equal(peerRouteDst(route({ dst: "10.0.0.0" })), 10 << 24);
});

test("peerRouteDst: every other route is -1", () => {
  assert.equal(peerRouteDst(route({ dstLen: 16 })), -1, "not a /24");
  assert.equal(peerRouteDst(route({ dst: "192.168.3.0" })), -1, "outside 10.0.0.0/8");
  assert.equal(peerRouteDst(route({ gw: null })), -1, "no gateway: a device route");
  assert.equal(peerRouteDst(route({ table: 255 })), -1, "local table");
  assert.equal(peerRouteDst(route({ table: 1000 })), -1, "a table beyond 255, named by RTA_TABLE only");
  assert.equal(peerRouteDst(route({ family: nl.AF_INET6 })), -1, "IPv6");
  assert.equal(peerRouteDst(Buffer.alloc(8)), -1, "shorter than an rtmsg");
});

test("peerRouteDst: a truncated attribute ends the walk instead of reading past the message", () => {
  const body = route({});
  assert.equal(peerRouteDst(body.subarray(0, body.length - 10)), -1);
});
