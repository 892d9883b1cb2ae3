import { test } from "node:test";
import assert from "node:assert/strict";
import { IpAddr } from "./addr.ts";
import { IfAddr, IpNet } from "./net.ts";

test("IPv4 parsing follows Go net.ParseIP", () => {
  for (const ok of ["10.244.1.0", "0.0.0.0", "255.255.255.255", "1.20.100.0"]) {
    assert.equal(IpAddr.parse(ok).toString(), ok);
  }
  assert.equal(IpAddr.parse("1.2.3.4").value, 0x01020304n);
  for (const bad of [
    "010.1.2.3",
    "1.2.3.00",
    "1.2.3",
    "1.2.3.256",
    "1.2.3.1000",
    "1.2.3.4.5",
    "1..2.3",
    ".1.2.3",
    "1.2.3.",
    "",
    "a.b.c.d",
    " 1.2.3.4",
    "1.2.3.4 ",
    "1.2.3.-4",
  ]) {
    assert.equal(IpAddr.tryParse(bad), undefined, bad);
  }
});

test("IPv6 parsing and RFC 5952 formatting as Go prints", () => {
  const cases: [string, string][] = [
    ["fc00::", "fc00::"],
    ["fc00:0:0:1::", "fc00:0:0:1::"],
    ["FD00:0012:0013:0000:0000:0000:0000:0000", "fd00:12:13::"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["::1", "::1"],
    ["::", "::"],
    ["1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"],
    ["::ffff:1.2.3.4", "::ffff:102:304"],
  ];
  for (const [input, want] of cases) {
    assert.equal(IpAddr.parse(input).format(), want, input);
    assert.equal(IpAddr.parse(input).toString(), want, input);
  }
  for (const bad of ["1:::2", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "2001::-56", "20011::"]) {
    assert.equal(IpAddr.tryParse(bad), undefined, bad);
  }
});

test("CIDR parsing masks host bits like net.ParseCIDR", () => {
  assert.equal(IpNet.parse("10.3.5.7/16").toString(), "10.3.0.0/16");
  assert.equal(IpNet.parse("fc00::1/64").toString(), "fc00::/64");
  assert.throws(() => IpNet.parse("10.0.0.0/33"), /invalid CIDR address: 10.0.0.0\/33/);
  assert.throws(() => IpNet.parse("garbage"), /invalid CIDR address: garbage/);
  assert.equal(IpNet.tryParse("10.0.0.0/016"), undefined);
});

test("containment, overlap and iteration", () => {
  const n = IpNet.parse("10.244.0.0/16");
  assert.ok(n.containsNet(IpNet.parse("10.244.255.0/24")));
  assert.ok(!n.containsNet(IpNet.parse("10.244.0.0/15")));
  assert.ok(IpNet.parse("2001:0db8:1234::/48").containsNet(IpNet.parse("2001:0db8:1234:ffff::/64")));
  assert.ok(!IpNet.parse("2001:0db8:1234::/48").containsNet(IpNet.parse("fe02::/32")));
  assert.equal(IpNet.parse("10.244.1.0/24").next().toString(), "10.244.2.0/24");
  assert.equal(IpNet.parse("10.244.1.0/24").last.toString(), "10.244.1.255");
  assert.ok(IpNet.parse("10.0.0.0/8").overlaps(IpNet.parse("10.1.0.0/16")));
  assert.ok(!IpNet.parse("10.1.0.0/16").overlaps(IpNet.parse("10.2.0.0/16")));
});

test("address classes", () => {
  assert.ok(IpAddr.parse("10.1.2.3").isPrivate);
  assert.ok(IpAddr.parse("172.16.0.1").isPrivate);
  assert.ok(!IpAddr.parse("172.32.0.1").isPrivate);
  assert.ok(IpAddr.parse("fd00::1").isPrivate);
  assert.ok(IpAddr.parse("fe80::1").isLinkLocalUnicast);
  assert.ok(!IpAddr.parse("fe80::1").isGlobalUnicast);
  assert.ok(IpAddr.parse("192.168.1.1").isGlobalUnicast);
  assert.equal(IpAddr.fromBytes(IpAddr.parse("1.2.3.4").toBytes()).toString(), "1.2.3.4");
  assert.equal(IpAddr.fromV4(0xfffffffe).toString(), "255.255.255.254");
  assert.ok(IpAddr.fromV4(0x0a000001).equals(IpAddr.parse("10.0.0.1")));
  assert.equal(IfAddr.parse("10.244.1.1/24").network.toString(), "10.244.1.0/24");
});

test("IPv4 text, bytes and value agree over the whole range", () => {
  // The IPv4 fast paths use 32-bit number arithmetic; the top bit (addresses from 128.0.0.0) is where
  // signed shifts would go wrong.
  const samples = [0, 1, 0x7fffffff, 0x80000000, 0xa9fe0001, 0xc0a80101, 0xfffffffe, 0xffffffff];
  for (let i = 0; i < 2000; i++) samples.push(Math.floor(Math.random() * 0x100000000));
  for (const n of samples) {
    const bytes = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
    const text = bytes.join(".");
    const ip = IpAddr.parse(text);
    assert.equal(ip.value, BigInt(n), text);
    assert.equal(ip.toString(), text);
    assert.equal(IpAddr.fromBytes(Uint8Array.from(bytes)).value, BigInt(n), text);
    assert.deepEqual([...ip.toBytes()], bytes, text);
  }
});
