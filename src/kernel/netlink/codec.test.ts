import assert from "node:assert/strict";
import { test } from "node:test";

import * as nl from "./codec.ts";

/** An IPv4 unicast route of the main table and protocol boot, as `ip route` makes it. */
function bootRoute(dstLen: number, attrs: nl.Attr[], flags = 0): Buffer {
  const h = { family: nl.AF_INET, dstLen, srcLen: 0, tos: 0, table: 254, protocol: 3, scope: 0, type: 1 };
  return nl.encodeRtMsg({ ...h, flags }, attrs);
}

test("a route replace encodes as iproute2 sends it", () => {
  // ip route replace 10.244.2.0/24 via 10.244.2.0 dev #3 onlink
  const body = bootRoute(
    24,
    [
      nl.bytes(nl.RTA_DST, Buffer.from([10, 244, 2, 0])),
      nl.bytes(nl.RTA_GATEWAY, Buffer.from([10, 244, 2, 0])),
      nl.u32(nl.RTA_OIF, 3),
    ],
    nl.RTNH_F_ONLINK,
  );
  const msg = nl.encodeMsg({ type: nl.RTM_NEWROUTE, flags: 0x1 | 0x4 | 0x400 | 0x100, seq: 7, body });
  assert.equal(
    msg.toString("hex"),
    [
      "34000000" + "1800" + "0505" + "07000000" + "00000000", // nlmsghdr: len 52, RTM_NEWROUTE, REQUEST|ACK|CREATE|REPLACE
      "02180000" + "fe030001" + "04000000", // rtmsg: AF_INET /24, main, boot, universe, unicast, ONLINK
      "0800" + "0100" + "0af40200", // RTA_DST
      "0800" + "0500" + "0af40200", // RTA_GATEWAY
      "0800" + "0400" + "03000000", // RTA_OIF
    ].join(""),
  );
  const [m] = nl.decodeMsgs(msg);
  const { hdr, attrs } = nl.decodeRtMsg(m!.body);
  assert.equal(hdr.dstLen, 24);
  assert.equal(hdr.flags, nl.RTNH_F_ONLINK);
  assert.deepEqual(
    attrs.map((a) => a.type),
    [nl.RTA_DST, nl.RTA_GATEWAY, nl.RTA_OIF],
  );
});

test("attributes pad to 4 bytes, nest, and strings are NUL-terminated", () => {
  const enc = nl.encodeAttrs([
    nl.str(nl.IFLA_IFNAME, "flannel.1"),
    nl.nested(nl.IFLA_LINKINFO, [nl.str(nl.IFLA_INFO_KIND, "vxlan"), nl.flag(nl.IFLA_VXLAN_GBP)]),
  ]);
  assert.equal(enc.length % 4, 0);
  const a = nl.attrMap(nl.decodeAttrs(enc));
  assert.equal(nl.readStr(a.get(nl.IFLA_IFNAME)), "flannel.1");
  const inner = nl.decodeAttrs(a.get(nl.IFLA_LINKINFO)!);
  assert.equal(nl.readStr(inner[0]!.data), "vxlan");
  assert.deepEqual(inner[1], { type: nl.IFLA_VXLAN_GBP, data: Buffer.alloc(0) });
  // NLA_F_NESTED (0x8000) set by newer kernels is masked off.
  const flagged = nl.encodeAttrs([{ type: nl.IFLA_LINKINFO | 0x8000, data: Buffer.alloc(0) }]);
  assert.equal(nl.decodeAttrs(flagged)[0]!.type, nl.IFLA_LINKINFO);
  assert.equal(nl.u16be(nl.IFLA_VXLAN_PORT, 8472).data.toString("hex"), "2118");
});

test("several messages in one datagram; a truncated tail is ignored; errors decode", () => {
  const err = Buffer.alloc(20);
  err.writeInt32LE(-17, 0); // -EEXIST
  const dg = Buffer.concat([
    nl.encodeMsg({ type: nl.NLMSG_ERROR, flags: 0, seq: 1, body: err }),
    nl.encodeMsg({ type: nl.NLMSG_DONE, flags: 2, seq: 2, body: Buffer.alloc(4) }),
    Buffer.from([0xff, 0, 0, 0, 1]),
  ]);
  const msgs = nl.decodeMsgs(dg);
  assert.deepEqual(
    msgs.map((m) => [m.type, m.seq]),
    [
      [nl.NLMSG_ERROR, 1],
      [nl.NLMSG_DONE, 2],
    ],
  );
  assert.equal(nl.decodeError(msgs[0]!.body), 17);
});

test("MsgCursor walks the messages of one dump in place, as decodeMsgs splits them", () => {
  const body = (n: number): Buffer => Buffer.from([n, n, n, n]);
  const msg = (type: number, seq: number, b: Buffer): Buffer =>
    nl.encodeMsg({ type, flags: 2, seq, body: b });
  const datagrams = [
    Buffer.concat([msg(24, 7, body(1)), msg(24, 8, body(9)), msg(24, 7, Buffer.alloc(6, 2))]),
    Buffer.concat([
      msg(nl.NLMSG_ERROR, 7, Buffer.alloc(4)),
      msg(26, 7, body(3)),
      msg(nl.NLMSG_DONE, 7, body(0)),
    ]),
    Buffer.alloc(0),
    Buffer.concat([msg(24, 7, body(4)), Buffer.from([0xff, 0, 0, 0, 1])]), // a truncated tail
  ];
  const c = new nl.MsgCursor(datagrams, 7);
  const seen: [number, string][] = [];
  while (c.next()) seen.push([c.type, c.buf.subarray(c.body, c.end).toString("hex")]);
  const want = datagrams
    .flatMap((d) => nl.decodeMsgs(d))
    .filter((m) => m.seq === 7 && m.type !== nl.NLMSG_DONE && m.type !== nl.NLMSG_ERROR)
    .map((m): [number, string] => [m.type, m.body.toString("hex")]);
  assert.deepEqual(seen, want);
  assert.deepEqual(seen, [
    [24, "01010101"],
    [24, "020202020202"],
    [26, "03030303"],
    [24, "04040404"],
  ]);
  assert.equal(c.next(), false, "and it stays at the end");
});

test("findAttr finds an attribute's data without decoding the others", () => {
  const body = Buffer.concat([
    Buffer.alloc(12),
    nl.encodeAttrs([
      nl.str(nl.IFLA_IFNAME, "x"),
      { type: nl.NDA_LLADDR | 0x8000, data: Buffer.from([1, 2, 3, 4, 5, 6]) },
      nl.bytes(nl.NDA_DST, Buffer.from([10, 0, 0, 1])),
    ]),
  ]);
  const dst = nl.findAttr(body, 12, nl.NDA_DST);
  assert.deepEqual(dst && [...body.subarray(dst.off, dst.off + dst.len)], [10, 0, 0, 1]);
  assert.deepEqual(nl.findAttr(body, 12, nl.NDA_LLADDR), { off: 12 + 8 + 4, len: 6 });
  assert.equal(nl.findAttr(body, 12, 99), undefined);
  const bad = Buffer.from(body);
  bad.writeUInt16LE(200, 12); // the first attribute claims more bytes than there are
  assert.equal(nl.findAttr(bad, 12, nl.NDA_DST), undefined);
});

test("MAC addresses", () => {
  assert.equal(nl.bytesToMac(nl.macToBytes("0E:2A:00:01:02:ff")), "0e:2a:00:01:02:ff");
  assert.equal(nl.bytesToMac(Buffer.alloc(4)), "");
  assert.throws(() => nl.macToBytes("0e:2a:00:01:02"), /Invalid MAC address "0e:2a:00:01:02"/);
  for (const bad of [
    "0e:2a:00:01:02:0g",
    "0e-2a-00-01-02-03",
    "0e:2a:00:01:02:03:",
    "e:2a:00:01:02:03",
    "",
    // Characters next to the hex ranges, and a separator one off from ':'.
    "0e:2a:00:01:02:@0",
    "0e:2a:00:01:02:`0",
    "0e:2a:00:01:02:/0",
    "0e;2a:00:01:02:03",
    "0e:2a:00:01:02:03 ",
  ])
    assert.throws(() => nl.macToBytes(bad), /Invalid MAC address/, bad);
  assert.deepEqual([...nl.macToBytes("ff:00:7f:80:a5:5a")], [0xff, 0, 0x7f, 0x80, 0xa5, 0x5a]);
});

test("an ipip link add encodes per linux/if_link.h and if_tunnel.h", () => {
  // ip link add flannel.ipip type ipip local 192.168.0.1 (remote any, ttl/tos inherit, pmtudisc)
  const body = nl.encodeIpipLinkBody("flannel.ipip", Buffer.from([192, 168, 0, 1]));
  const hex = (s: string): string => Buffer.from(s, "latin1").toString("hex");
  assert.equal(
    body.toString("hex"),
    [
      "00000000" + "00000000" + "00000000" + "00000000", // ifinfomsg: AF_UNSPEC, no index/flags
      "1100" + "0300" + hex("flannel.ipip") + "00" + "000000", // IFLA_IFNAME (17 bytes, padded to 20)
      "3c00" + "1200", // IFLA_LINKINFO, 60 bytes
      "0900" + "0100" + hex("ipip") + "00" + "000000", // IFLA_INFO_KIND "ipip"
      "2c00" + "0200", // IFLA_INFO_DATA, 44 bytes
      "0800" + "0200" + "c0a80001", // IFLA_IPTUN_LOCAL 192.168.0.1
      "0800" + "0300" + "00000000", // IFLA_IPTUN_REMOTE any
      "0500" + "0400" + "00" + "000000", // IFLA_IPTUN_TTL 0 (inherit)
      "0500" + "0500" + "00" + "000000", // IFLA_IPTUN_TOS 0 (inherit)
      "0500" + "0a00" + "01" + "000000", // IFLA_IPTUN_PMTUDISC 1
    ].join(""),
  );
  const { attrs } = nl.decodeIfInfo(body);
  const info = nl.attrMap(nl.decodeAttrs(nl.attrMap(attrs).get(nl.IFLA_LINKINFO)!));
  assert.equal(nl.readStr(info.get(nl.IFLA_INFO_KIND)), "ipip");
});

test("AttrIndex: the first attribute of each type, as decodeAttrs and attrMap see it, message after message", () => {
  const a = new nl.AttrIndex();
  const first = bootRoute(24, [
    { type: nl.RTA_DST, data: Buffer.from([10, 1, 2, 0]) },
    nl.u32(nl.RTA_TABLE, 1000),
    nl.u32(nl.RTA_TABLE, 7), // a second of the same type: the first one counts
    { type: nl.RTA_GATEWAY | 0x8000, data: Buffer.from([10, 1, 2, 9]) }, // NLA_F_NESTED masked off
    { type: 100, data: Buffer.from([1, 2, 3, 4]) }, // beyond the types kept
    { type: nl.RTA_PREFSRC, data: Buffer.from([1, 2, 3]) }, // not an address
  ]);
  a.scan(first, 12);
  const map = nl.attrMap(nl.decodeRtMsg(first).attrs);
  assert.equal(a.u32(nl.RTA_TABLE), nl.readU32(map.get(nl.RTA_TABLE)));
  assert.equal(a.u32(nl.RTA_TABLE), 1000);
  assert.equal(a.be32(nl.RTA_DST), (10 << 24) + (1 << 16) + (2 << 8));
  assert.deepEqual(a.bytes(nl.RTA_GATEWAY), Buffer.from([10, 1, 2, 9]));
  assert.equal(a.length(100), -1);
  assert.equal(a.length(nl.RTA_PREFSRC), 3);
  assert.equal(a.be32(nl.RTA_PREFSRC), -1, "three bytes are not an IPv4 address");
  assert.equal(a.u32(nl.RTA_PREFSRC), undefined);

  // The next message: nothing of the first one is left, and a truncated attribute ends the walk.
  const second = bootRoute(0, [nl.u32(nl.RTA_OIF, 3), nl.u32(nl.RTA_PRIORITY, 5)]);
  a.scan(second.subarray(0, second.length - 2), 12);
  assert.equal(a.u32(nl.RTA_OIF), 3);
  assert.equal(a.length(nl.RTA_PRIORITY), -1);
  assert.equal(a.length(nl.RTA_DST), -1);
  assert.equal(a.bytes(nl.RTA_TABLE), undefined);

  // A message inside a bigger buffer: the walk stops at its end, not at the buffer's.
  const both = Buffer.concat([second, nl.encodeAttrs([nl.u32(nl.RTA_TABLE, 42)])]);
  a.scan(both, 12, second.length);
  assert.equal(a.u32(nl.RTA_PRIORITY), 5);
  assert.equal(a.length(nl.RTA_TABLE), -1, "what follows the message is not read");
  a.scan(both, 12);
  assert.equal(a.u32(nl.RTA_TABLE), 42);
});

test("AttrIndex.mac reads a six-byte attribute in place, as bytesToMac reads its bytes", () => {
  const a = new nl.AttrIndex();
  const mac = Buffer.from([0x0e, 0x2a, 0x00, 0xf1, 0x02, 0xff]);
  const msg = bootRoute(24, [
    { type: 2, data: mac },
    { type: 3, data: Buffer.from([1, 2, 3, 4]) },
  ]);
  a.scan(msg, 12);
  assert.equal(a.mac(2), "0e:2a:00:f1:02:ff");
  assert.equal(a.mac(2), nl.bytesToMac(a.bytes(2)));
  assert.equal(a.mac(3), "", "four bytes are not a MAC");
  assert.equal(a.mac(4), "", "absent");
  for (let i = 0; i < 256; i += 17)
    assert.equal(
      nl.macAt(Buffer.from([i, 0, 0, 0, 0, 255 - i]), 0).slice(0, 2),
      i.toString(16).padStart(2, "0"),
    );
});
