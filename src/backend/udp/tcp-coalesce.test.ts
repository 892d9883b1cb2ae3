import assert from "node:assert/strict";
import { test } from "node:test";

import { internetChecksum } from "./packet.ts";
import { coalescibleHeaderLen, TcpCoalescer, VNET_HDR_LEN } from "./tcp-coalesce.ts";

const ACK = 0x10;
const PSH = 0x08;

/** A TCP/IPv4 segment 10.244.2.2:5201 → 10.244.1.2:40000 with a timestamp option and `payload` bytes. */
function segment(
  seq: number,
  payload: number,
  opts: { flags?: number; ack?: number; tsval?: number; proto?: number } = {},
): Buffer {
  const thl = 32;
  const p = Buffer.alloc(20 + thl + payload);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p.writeUInt16BE(0x4000, 6); // DF
  p[8] = 63;
  p[9] = opts.proto ?? 6;
  Buffer.from([10, 244, 2, 2, 10, 244, 1, 2]).copy(p, 12);
  p.writeUInt16BE(internetChecksum(p, 0, 20), 10);
  p.writeUInt16BE(5201, 20);
  p.writeUInt16BE(40000, 22);
  p.writeUInt32BE(seq >>> 0, 24);
  p.writeUInt32BE(opts.ack ?? 777, 28);
  p[32] = (thl / 4) << 4;
  p[33] = opts.flags ?? ACK;
  p.writeUInt16BE(500, 34);
  Buffer.from([1, 1, 8, 10]).copy(p, 40); // NOP NOP TS
  p.writeUInt32BE(opts.tsval ?? 1000, 44);
  p.writeUInt32BE(2000, 48);
  for (let i = 0; i < payload; i++) p[52 + i] = (seq + i) & 0xff;
  return p;
}

interface Written {
  singles: number[];
  merged: { bytes: Buffer; segments: number }[];
}

function rig(): { c: TcpCoalescer; w: Written; feed: (segs: Buffer[]) => boolean[] } {
  const out = Buffer.alloc(VNET_HDR_LEN + 131072);
  const w: Written = { singles: [], merged: [] };
  const c = new TcpCoalescer(
    out,
    (off) => w.singles.push(off),
    (bytes, segments) => w.merged.push({ bytes: Buffer.from(out.subarray(0, bytes)), segments }),
  );
  const feed = (segs: Buffer[]): boolean[] => segs.map((s, i) => c.add(s, i, s.length));
  return { c, w, feed };
}

/** What the kernel does with CHECKSUM_PARTIAL: sum from csum_start and store the result at csum_offset. */
function completeChecksum(pkt: Buffer): void {
  const c = internetChecksum(pkt, 20, pkt.length - 20);
  pkt.writeUInt16BE(c, 36);
}

function tcpChecksumOk(pkt: Buffer): boolean {
  const pseudo = Buffer.alloc(12 + pkt.length - 20);
  pkt.copy(pseudo, 0, 12, 20);
  pseudo[9] = 6;
  pseudo.writeUInt16BE(pkt.length - 20, 10);
  pkt.copy(pseudo, 12, 20);
  return internetChecksum(pseudo, 0, pseudo.length) === 0;
}

test("only ACK/PSH TCP segments with payload, unfragmented and without IP options, are merged", () => {
  assert.equal(coalescibleHeaderLen(segment(1, 100), 152), 52);
  assert.equal(coalescibleHeaderLen(segment(1, 0), 52), 0); // pure ACK
  assert.equal(coalescibleHeaderLen(segment(1, 100, { proto: 17 }), 152), 0);
  assert.equal(coalescibleHeaderLen(segment(1, 100, { flags: ACK | 0x01 }), 152), 0); // FIN
  assert.equal(coalescibleHeaderLen(segment(1, 100, { flags: 0x02 }), 152), 0); // SYN
  const frag = segment(1, 100);
  frag.writeUInt16BE(0x2000, 6); // MF
  assert.equal(coalescibleHeaderLen(frag, 152), 0);
  assert.equal(coalescibleHeaderLen(segment(1, 100), 151), 0); // length disagrees with the header
});

test("a train of one flow becomes one GSO packet with a valid header and a partial checksum", () => {
  const { c, w, feed } = rig();
  const segs = [
    segment(1000, 1400),
    segment(2400, 1400),
    segment(3800, 1400),
    segment(5200, 600, { flags: ACK | PSH }),
  ];
  assert.deepEqual(feed(segs), [true, true, true, true]);
  c.flush();
  assert.deepEqual(w.singles, []);
  assert.equal(w.merged.length, 1);
  const { bytes, segments } = w.merged[0]!;
  assert.equal(segments, 4);
  // virtio_net_hdr: NEEDS_CSUM, GSO_TCPV4, hdr_len 52, gso_size 1400, csum_start 20, csum_offset 16
  assert.deepEqual([...bytes.subarray(0, VNET_HDR_LEN)], [1, 1, 52, 0, 0x78, 0x05, 20, 0, 16, 0]);
  const pkt = Buffer.from(bytes.subarray(VNET_HDR_LEN));
  assert.equal(pkt.length, 52 + 3 * 1400 + 600);
  assert.equal(pkt.readUInt16BE(2), pkt.length);
  assert.equal(internetChecksum(pkt, 0, 20), 0);
  assert.equal(pkt.readUInt32BE(24), 1000);
  assert.equal(pkt[33], ACK | PSH);
  // The payload is the four payloads in order.
  assert.deepEqual(pkt.subarray(52), Buffer.concat(segs.map((s) => s.subarray(52))));
  completeChecksum(pkt);
  assert.ok(tcpChecksumOk(pkt));
});

test("a gap, another ACK number, other options or a PSH end the group; others are left to the caller", () => {
  const { c, w, feed } = rig();
  const taken = feed([
    segment(1000, 1400),
    segment(2400, 1400),
    segment(9999, 1400), // sequence gap: new group
    segment(11399, 1400, { ack: 778 }), // other ACK: new group
    segment(12799, 1400, { ack: 778, tsval: 1001 }), // other timestamp: new group
    segment(14199, 1400, { ack: 778, tsval: 1001, flags: ACK | PSH }),
    segment(15599, 1400, { ack: 778, tsval: 1001 }), // after a PSH: new group
    segment(1, 100, { proto: 17 }),
  ]);
  assert.deepEqual(taken, [true, true, true, true, true, true, true, false]);
  c.flush();
  assert.deepEqual(
    w.merged.map((m) => m.segments),
    [2, 2],
  );
  // Lone segments are written as they are, by their position in the receive buffer.
  assert.deepEqual(w.singles, [2, 3, 6]);
});

test("a shorter segment ends the group and a longer one starts a new one", () => {
  const { c, w, feed } = rig();
  feed([segment(0, 1000), segment(1000, 500), segment(1500, 1000), segment(2500, 1200), segment(3700, 1200)]);
  c.flush();
  assert.deepEqual(
    w.merged.map((m) => m.segments),
    [2, 2],
  );
  assert.deepEqual(w.singles, [2]);
});

test("groups stop at 64 segments", () => {
  const { c, w, feed } = rig();
  feed(Array.from({ length: 70 }, (_, i) => segment(i * 100, 100)));
  c.flush();
  assert.deepEqual(
    w.merged.map((m) => m.segments),
    [64, 6],
  );
});
