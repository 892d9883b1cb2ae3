// TCP receive coalescing for the udp backend (a small GRO in user space). Segments of one TCP flow that
// arrive back to back in a UDP GRO train are merged into one large packet and written into the TUN device
// with a virtio_net_hdr asking for TCP segmentation (GSO_TCPV4) and a partial checksum. The kernel then
// forwards and delivers that one packet — to the pod's TCP as one receive — instead of up to 64 packets,
// which is where a user-space tunnel spends most of its CPU. The pod sees exactly the segments that were
// sent: the kernel re-segments the packet if it leaves through a device that needs that.
//
// Merging rules follow Linux's own GRO (tcp_gro_receive / inet_gro_receive), so nothing is merged that the
// kernel would not have merged itself: IPv4 without options, not fragmented, same addresses, TOS, TTL and
// DF; same ports, ACK number and TCP options; consecutive sequence numbers; only ACK/PSH flags; every
// payload the size of the first except the last, which may be shorter; a PSH or a short segment ends the
// group. Anything else is written on its own, in arrival order.

import { internetChecksum } from "./packet.ts";

/** sizeof(struct virtio_net_hdr) — the TUN default (TUNSETVNETHDRSZ not used). */
export const VNET_HDR_LEN = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
const IPPROTO_TCP = 6;
const TCP_ACK = 0x10;
const TCP_PSH = 0x08;
/** IP total length of a merged packet stays below 64 KiB. */
const MAX_TOTAL = 65_000;
const MAX_SEGMENTS = 64;

/** Header length (IP 20 + TCP) of a segment that may be merged, or 0. */
export function coalescibleHeaderLen(pkt: Uint8Array, len: number): number {
  if (len < 40 || pkt[0] !== 0x45 || pkt[9] !== IPPROTO_TCP) return 0;
  if ((((pkt[2] ?? 0) << 8) | (pkt[3] ?? 0)) !== len) return 0;
  if (((pkt[6] ?? 0) & 0x3f) !== 0 || pkt[7] !== 0) return 0; // MF or a fragment offset
  const thl = ((pkt[32] ?? 0) >> 4) * 4;
  if (thl < 20 || 20 + thl >= len) return 0; // no payload: pure ACKs are not merged
  const flags = pkt[33] ?? 0;
  if ((flags & TCP_ACK) === 0 || (flags & ~(TCP_ACK | TCP_PSH)) !== 0) return 0;
  return 20 + thl;
}

const u32 = (b: Uint8Array, o: number): number =>
  (((b[o] ?? 0) << 24) | ((b[o + 1] ?? 0) << 16) | ((b[o + 2] ?? 0) << 8) | (b[o + 3] ?? 0)) >>> 0;

function sameBytes(a: Uint8Array, b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class TcpCoalescer {
  private segs: Uint8Array[] = [];
  private offs: number[] = [];
  private hdrLen = 0;
  private mss = 0;
  private nextSeq = 0;
  private total = 0;
  private closed = false;

  constructor(
    /** Where merged packets are built: a vnet header, then the packet. */
    private readonly out: Uint8Array,
    /** Writes one segment on its own (by its offset in the receive buffer and length). */
    private readonly writeSingle: (off: number, len: number) => void,
    /** Writes `out[0, bytes)`, a merged packet of `segments` segments. */
    private readonly writeMerged: (bytes: number, segments: number) => void,
  ) {}

  /**
   * Takes a segment (`pkt`, at `off` in the receive buffer) into the current group, flushing the group
   * first when the segment does not continue it. Returns false, taking nothing, for packets that are
   * never merged (the caller flushes and writes them itself, keeping the order).
   */
  add(pkt: Uint8Array, off: number, len: number): boolean {
    const hdr = coalescibleHeaderLen(pkt, len);
    if (hdr === 0) return false;
    const payload = len - hdr;
    const seq = u32(pkt, 24);
    if (this.segs.length > 0 && !this.continues(pkt, hdr, payload, seq)) this.flush();
    if (this.segs.length === 0) {
      this.hdrLen = hdr;
      this.mss = payload;
      this.total = len;
      this.closed = false;
    } else {
      this.total += payload;
      if (payload < this.mss) this.closed = true;
    }
    if (((pkt[33] ?? 0) & TCP_PSH) !== 0) this.closed = true;
    this.nextSeq = (seq + payload) >>> 0;
    this.segs.push(pkt);
    this.offs.push(off);
    return true;
  }

  private continues(pkt: Uint8Array, hdr: number, payload: number, seq: number): boolean {
    const first = this.segs[0];
    if (first === undefined || this.closed || this.segs.length >= MAX_SEGMENTS) return false;
    if (hdr !== this.hdrLen || payload > this.mss || this.total + payload > MAX_TOTAL) return false;
    if (seq !== this.nextSeq) return false;
    return (
      pkt[1] === first[1] && // TOS
      ((pkt[6] ?? 0) & 0x40) === ((first[6] ?? 0) & 0x40) && // DF
      pkt[8] === first[8] && // TTL
      sameBytes(pkt, first, 12, 24) && // addresses and ports
      sameBytes(pkt, first, 28, 32) && // ACK number
      sameBytes(pkt, first, 40, hdr) // TCP options
    );
  }

  /** Writes the current group: a lone segment as it is, several as one GSO packet. */
  flush(): void {
    const n = this.segs.length;
    const first = this.segs[0];
    if (n === 0 || first === undefined) return;
    if (n === 1) {
      this.writeSingle(this.offs[0] ?? 0, first.length);
      this.reset();
      return;
    }
    const out = this.out;
    const h = this.hdrLen;
    // struct virtio_net_hdr (little endian): flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
    out[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    out[1] = VIRTIO_NET_HDR_GSO_TCPV4;
    const le16 = (o: number, v: number): void => {
      out[o] = v & 0xff;
      out[o + 1] = v >>> 8;
    };
    le16(2, h);
    le16(4, this.mss);
    le16(6, 20);
    le16(8, 16);
    const p = out.subarray(VNET_HDR_LEN);
    p.set(first.subarray(0, h), 0);
    let at = h;
    for (const s of this.segs) {
      p.set(s.subarray(h), at);
      at += s.length - h;
    }
    const total = at;
    const last = this.segs[n - 1] ?? first;
    p[33] = (first[33] ?? 0) | ((last[33] ?? 0) & TCP_PSH);
    p[2] = total >>> 8;
    p[3] = total & 0xff;
    p[10] = 0;
    p[11] = 0;
    const ipCheck = internetChecksum(p, 0, 20);
    p[10] = ipCheck >>> 8;
    p[11] = ipCheck & 0xff;
    // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum; the kernel adds the rest.
    let sum = 0;
    for (let i = 12; i < 20; i += 2) sum += ((p[i] ?? 0) << 8) | (p[i + 1] ?? 0);
    sum += IPPROTO_TCP + (total - 20);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    p[36] = sum >>> 8;
    p[37] = sum & 0xff;
    this.writeMerged(VNET_HDR_LEN + total, n);
    this.reset();
  }

  private reset(): void {
    this.segs = [];
    this.offs = [];
  }
}
