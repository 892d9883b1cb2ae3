import assert from "node:assert/strict";
import { test } from "node:test";

import {
  decrementTtl,
  internetChecksum,
  ipv4ToNumber,
  isIpv4,
  numberToIpv4,
  PeerTable,
  writeNetUnreachable,
} from "./packet.ts";

const ip = ipv4ToNumber;

function route(net: string, prefixLen: number, nextHop: string, port = 8285) {
  return { net: ip(net), prefixLen, nextHop: ip(nextHop), port };
}

/** An IPv4 packet with a valid header checksum. */
function packet(
  opts: { src?: string; dst?: string; ttl?: number; proto?: number; frag?: number; data?: number[] } = {},
): Buffer {
  const data = Buffer.from(opts.data ?? [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const p = Buffer.alloc(20 + data.length);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p.writeUInt16BE(0x1234, 4);
  p.writeUInt16BE(opts.frag ?? 0, 6);
  p[8] = opts.ttl ?? 64;
  p[9] = opts.proto ?? 17;
  p.writeUInt32BE(ip(opts.src ?? "10.244.1.2"), 12);
  p.writeUInt32BE(ip(opts.dst ?? "10.244.2.2"), 16);
  p.writeUInt16BE(internetChecksum(p, 0, 20), 10);
  data.copy(p, 20);
  return p;
}

test("addresses convert both ways", () => {
  assert.equal(ip("10.244.2.3"), 0x0af40203);
  assert.equal(numberToIpv4(0xc0a80001), "192.168.0.1");
  assert.throws(() => ip("10.244.2"), /Invalid IPv4 address "10.244.2"/);
});

test("the peer table finds the longest matching prefix", () => {
  const t = new PeerTable();
  t.set(route("10.244.0.0", 16, "192.168.0.9"));
  t.set(route("10.244.2.0", 24, "192.168.0.2"));
  t.set(route("10.244.2.128", 25, "192.168.0.3"));
  assert.equal(t.size, 3);
  assert.equal(t.lookup(ip("10.244.2.200"))?.nextHop, ip("192.168.0.3"));
  assert.equal(t.lookup(ip("10.244.2.5"))?.nextHop, ip("192.168.0.2"));
  assert.equal(t.lookup(ip("10.244.7.1"))?.nextHop, ip("192.168.0.9"));
  assert.equal(t.lookup(ip("10.245.0.1")), undefined);
  t.delete(ip("10.244.2.128"), 25);
  assert.equal(t.lookup(ip("10.244.2.200"))?.nextHop, ip("192.168.0.2"));
  // Host bits in the key are masked, as upstream's set_route does.
  t.set(route("10.244.3.77", 24, "192.168.0.4"));
  assert.equal(t.lookup(ip("10.244.3.1"))?.net, ip("10.244.3.0"));
  t.delete(ip("10.244.3.1"), 24);
  assert.equal(t.lookup(ip("10.244.3.1"))?.nextHop, ip("192.168.0.9"));
  t.delete(ip("10.99.0.0"), 16); // absent: nothing happens
});

test("a public IP stays a known peer until its last route is removed", () => {
  const t = new PeerTable();
  t.set(route("10.244.2.0", 24, "192.168.0.2"));
  t.set(route("10.244.3.0", 24, "192.168.0.2"));
  assert.ok(t.isPeer(ip("192.168.0.2")));
  assert.ok(!t.isPeer(ip("192.168.0.66")));
  t.delete(ip("10.244.2.0"), 24);
  assert.ok(t.isPeer(ip("192.168.0.2")));
  // Replacing a route moves its public IP.
  t.set(route("10.244.3.0", 24, "192.168.0.3"));
  assert.ok(!t.isPeer(ip("192.168.0.2")));
  assert.ok(t.isPeer(ip("192.168.0.3")));
});

test("decrementing the TTL keeps the header checksum valid for every TTL and header", () => {
  let checked = 0;
  for (let ttl = 2; ttl <= 255; ttl++) {
    for (const id of [0, 0x1234, 0xfeff, 0xffff]) {
      for (const proto of [1, 6, 17, 255]) {
        const p = packet({ ttl, proto });
        p.writeUInt16BE(id, 4);
        p.writeUInt16BE(0, 10);
        p.writeUInt16BE(internetChecksum(p, 0, 20), 10);
        assert.ok(decrementTtl(p));
        assert.equal(p[8], ttl - 1);
        // A header with a correct checksum sums to zero.
        assert.equal(internetChecksum(p, 0, 20), 0, `ttl ${ttl} id ${id} proto ${proto}`);
        checked++;
      }
    }
  }
  assert.equal(checked, 254 * 16);
});

test("a packet whose TTL would reach 0 is refused and left unchanged", () => {
  const p = packet({ ttl: 1 });
  const before = Buffer.from(p);
  assert.equal(decrementTtl(p), false);
  assert.deepEqual(p, before);
  assert.equal(decrementTtl(packet({ ttl: 0 })), false);
});

test("only plausible IPv4 headers pass", () => {
  assert.ok(isIpv4(packet(), 32));
  assert.ok(!isIpv4(packet(), 19));
  const v6 = packet();
  v6[0] = 0x60;
  assert.ok(!isIpv4(v6, 32));
  const longHeader = packet();
  longHeader[0] = 0x4f; // 60-byte header in a 32-byte packet
  assert.ok(!isIpv4(longHeader, 32));
});

test("net-unreachable quotes the header and 8 data bytes, from the TUN address to the sender", () => {
  const p = packet({ src: "10.244.1.2", dst: "10.244.9.9" });
  const out = Buffer.alloc(128);
  const n = writeNetUnreachable(p, p.length, ip("10.244.1.0"), out);
  assert.equal(n, 20 + 8 + 28);
  const icmp = out.subarray(0, n);
  assert.equal(icmp[0], 0x45);
  assert.equal(icmp.readUInt16BE(2), n);
  assert.equal(icmp[9], 1);
  assert.equal(numberToIpv4(icmp.readUInt32BE(12)), "10.244.1.0");
  assert.equal(numberToIpv4(icmp.readUInt32BE(16)), "10.244.1.2");
  assert.equal(internetChecksum(icmp, 0, 20), 0);
  assert.equal(icmp[20], 3); // destination unreachable
  assert.equal(icmp[21], 0); // network unreachable
  assert.equal(internetChecksum(icmp, 20, n - 20), 0);
  assert.deepEqual(icmp.subarray(28), p.subarray(0, 28));
});

test("net-unreachable quotes less when the packet is shorter, and never answers ICMP or later fragments", () => {
  const out = Buffer.alloc(128);
  const short = packet({ data: [9, 9, 9] });
  assert.equal(writeNetUnreachable(short, short.length, ip("10.244.1.0"), out), 28 + 23);
  assert.equal(writeNetUnreachable(packet({ proto: 1 }), 32, ip("10.244.1.0"), out), 0);
  assert.equal(writeNetUnreachable(packet({ frag: 185 }), 32, ip("10.244.1.0"), out), 0);
  // The first fragment (offset 0, more-fragments set) is answered.
  assert.ok(writeNetUnreachable(packet({ frag: 0x2000 }), 32, ip("10.244.1.0"), out) > 0);
  assert.equal(writeNetUnreachable(packet(), 12, ip("10.244.1.0"), out), 0);
});
