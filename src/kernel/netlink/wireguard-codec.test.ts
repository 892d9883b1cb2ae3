import assert from "node:assert/strict";
import { test } from "node:test";

import { IpAddr } from "../../ip/addr.ts";
import { IpNet } from "../../ip/net.ts";
import * as nl from "./codec.ts";
import * as wgc from "./wireguard-codec.ts";

const KEY1 = Buffer.alloc(32, 1).toString("base64");
const hex = (s: string): string => Buffer.from(s, "latin1").toString("hex");

test("CTRL_CMD_GETFAMILY for wireguard, and the family id of the answer", () => {
  assert.equal(
    wgc.encodeGetFamily("wireguard").toString("hex"),
    "03010000" + "0e00" + "0200" + hex("wireguard") + "00" + "0000", // genl cmd 3 v1; CTRL_ATTR_FAMILY_NAME
  );
  const answer = wgc.encodeGenl(1, 2, [
    nl.str(wgc.CTRL_ATTR_FAMILY_NAME, "wireguard"),
    { type: 1, data: Buffer.from([0x17, 0]) },
  ]);
  assert.equal(wgc.decodeFamilyId(answer), 0x17);
});

test("WG_CMD_SET_DEVICE with one peer encodes per linux/wireguard.h", () => {
  const body = wgc.encodeSetDevice("flannel-wg", {
    listenPort: 51820,
    peers: [
      {
        publicKey: KEY1,
        endpoint: { ip: IpAddr.parse("192.168.0.2"), port: 51820 },
        persistentKeepaliveSec: 25,
        allowedIps: [IpNet.parse("10.244.2.0/24")],
      },
    ],
  });
  assert.equal(
    body.toString("hex"),
    [
      "01010000", // genlmsghdr: WG_CMD_SET_DEVICE, version 1
      "0f00" + "0200" + hex("flannel-wg") + "00" + "00", // WGDEVICE_A_IFNAME
      "0600" + "0600" + "6cca" + "0000", // WGDEVICE_A_LISTEN_PORT 51820, host order
      "6800" + "0880", // WGDEVICE_A_PEERS | NLA_F_NESTED, 104 bytes
      "6400" + "0080", //   peer 0 | NLA_F_NESTED, 100 bytes
      "2400" + "0100" + "01".repeat(32), //     WGPEER_A_PUBLIC_KEY
      "1400" + "0400" + "0200" + "ca6c" + "c0a80002" + "00".repeat(8), //     WGPEER_A_ENDPOINT sockaddr_in
      "0600" + "0500" + "1900" + "0000", //     WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL 25
      "2000" + "0980", //     WGPEER_A_ALLOWEDIPS | NLA_F_NESTED
      "1c00" + "0080", //       allowed IP 0 | NLA_F_NESTED
      "0600" + "0100" + "0200" + "0000", //         WGALLOWEDIP_A_FAMILY AF_INET
      "0800" + "0200" + "0af40200", //         WGALLOWEDIP_A_IPADDR
      "0500" + "0300" + "18" + "000000", //         WGALLOWEDIP_A_CIDR_MASK 24
    ].join(""),
  );
});

test("flags: replace peers, remove a peer, replace allowed IPs; IPv6 endpoints", () => {
  const body = wgc.encodeSetDevice("wg0", {
    privateKey: KEY1,
    replacePeers: true,
    peers: [
      { publicKey: KEY1, allowedIps: [], remove: true },
      {
        publicKey: KEY1,
        replaceAllowedIps: true,
        presharedKey: KEY1,
        endpoint: { ip: IpAddr.parse("fd00::2"), port: 51821 },
        allowedIps: [IpNet.parse("fd00:2::/64")],
      },
    ],
  });
  const a = nl.attrMap(wgc.decodeGenl(body).attrs);
  assert.equal(a.get(wgc.WGDEVICE_A_PRIVATE_KEY)?.toString("base64"), KEY1);
  assert.equal(a.get(wgc.WGDEVICE_A_FLAGS)?.readUInt32LE(0), wgc.WGDEVICE_F_REPLACE_PEERS);
  const peers = nl.decodeAttrs(a.get(wgc.WGDEVICE_A_PEERS)!).map((p) => nl.attrMap(nl.decodeAttrs(p.data)));
  assert.equal(peers[0]!.get(wgc.WGPEER_A_FLAGS)?.readUInt32LE(0), wgc.WGPEER_F_REMOVE_ME);
  assert.equal(peers[0]!.has(wgc.WGPEER_A_ALLOWEDIPS), false);
  assert.equal(peers[1]!.get(wgc.WGPEER_A_FLAGS)?.readUInt32LE(0), wgc.WGPEER_F_REPLACE_ALLOWEDIPS);
  const ep = peers[1]!.get(wgc.WGPEER_A_ENDPOINT)!;
  assert.equal(ep.length, 28); // sockaddr_in6
  assert.deepEqual(wgc.decodeSockaddr(ep), { ip: IpAddr.parse("fd00::2"), port: 51821 });
  assert.throws(
    () => wgc.encodeSetDevice("wg0", { privateKey: "short" }),
    /Invalid WireGuard private key "short"/,
  );
});

test("a WG_CMD_GET_DEVICE answer split over two messages decodes into one device", () => {
  const peer = (allowed: string[], extra: nl.Attr[] = []): nl.Attr =>
    nl.nested(0x8000, [
      nl.bytes(wgc.WGPEER_A_PUBLIC_KEY, Buffer.alloc(32, 1)),
      ...extra,
      nl.nested(
        wgc.WGPEER_A_ALLOWEDIPS | 0x8000,
        allowed.map((c) => {
          const n = IpNet.parse(c);
          return nl.nested(0x8000, [
            { type: 1, data: Buffer.from([2, 0]) },
            nl.bytes(2, n.ip.toBytes()),
            nl.u8(3, n.prefixLen),
          ]);
        }),
      ),
    ]);
  const m1 = wgc.encodeGenl(0, 1, [
    nl.str(wgc.WGDEVICE_A_IFNAME, "flannel-wg"),
    nl.bytes(wgc.WGDEVICE_A_PUBLIC_KEY, Buffer.alloc(32, 2)),
    { type: wgc.WGDEVICE_A_LISTEN_PORT, data: Buffer.from([0x6c, 0xca]) },
    nl.nested(wgc.WGDEVICE_A_PEERS | 0x8000, [
      peer(["10.244.2.0/24"], [nl.bytes(wgc.WGPEER_A_PRESHARED_KEY, Buffer.alloc(32))]),
    ]),
  ]);
  const m2 = wgc.encodeGenl(0, 1, [nl.nested(wgc.WGDEVICE_A_PEERS | 0x8000, [peer(["10.244.3.0/24"])])]);
  const dev = wgc.decodeDevice([m1, m2]);
  assert.equal(dev.name, "flannel-wg");
  assert.equal(dev.listenPort, 51820);
  assert.equal(dev.publicKey, Buffer.alloc(32, 2).toString("base64"));
  assert.equal(dev.peers.length, 1);
  assert.equal(dev.peers[0]!.presharedKey, undefined); // all-zero PSK means none
  assert.deepEqual(dev.peers[0]!.allowedIps.map(String), ["10.244.2.0/24", "10.244.3.0/24"]);
});
