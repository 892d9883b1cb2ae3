// Pure packet logic of the udp data path (used by proxy-worker.ts, tested without a kernel): the peer
// table with longest-prefix lookup, the TTL decrement with an incremental checksum fix, and the ICMP
// "network unreachable" answer. IPv4 only (the udp backend is IPv4-only, as upstream). Addresses are
// uint32 numbers in host order; packets are raw IPv4 datagrams starting at offset 0 (IFF_NO_PI).

export const IPPROTO_ICMP = 1;
const IPV4_MIN_HEADER = 20;

/** A peer subnet and where its packets go: the peer's public IP and UDP port. */
export interface PeerRoute {
  /** Network address (host bits zero), uint32. */
  net: number;
  prefixLen: number;
  nextHop: number;
  port: number;
}

export function maskOfLen(prefixLen: number): number {
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

export function ipv4ToNumber(text: string): number {
  const parts = text.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`Invalid IPv4 address ${JSON.stringify(text)}`);
  }
  return (((parts[0] ?? 0) << 24) | ((parts[1] ?? 0) << 16) | ((parts[2] ?? 0) << 8) | (parts[3] ?? 0)) >>> 0;
}

export function numberToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}

/**
 * Peer subnets by prefix length. A lookup tries each distinct prefix length, longest first, with one
 * Map probe each: in a flannel cluster every lease has the same length, so a lookup is one probe whatever
 * the number of nodes. Public IPs are counted per route so that a shared next hop stays known until its
 * last route goes.
 */
export class PeerTable {
  private readonly byLen = new Map<number, Map<number, PeerRoute>>();
  private lens: number[] = [];
  private readonly publicIps = new Map<number, number>();

  get size(): number {
    let n = 0;
    for (const m of this.byLen.values()) n += m.size;
    return n;
  }

  /** Adds or replaces the route for `route.net/route.prefixLen`. */
  set(route: PeerRoute): void {
    const net = (route.net & maskOfLen(route.prefixLen)) >>> 0;
    this.delete(net, route.prefixLen);
    let m = this.byLen.get(route.prefixLen);
    if (m === undefined) {
      m = new Map();
      this.byLen.set(route.prefixLen, m);
      this.lens = [...this.byLen.keys()].sort((a, b) => b - a);
    }
    m.set(net, { ...route, net });
    this.publicIps.set(route.nextHop, (this.publicIps.get(route.nextHop) ?? 0) + 1);
  }

  /** Removes the route for that subnet; nothing happens when there is none. */
  delete(net: number, prefixLen: number): void {
    const m = this.byLen.get(prefixLen);
    const key = (net & maskOfLen(prefixLen)) >>> 0;
    const old = m?.get(key);
    if (m === undefined || old === undefined) return;
    m.delete(key);
    const n = (this.publicIps.get(old.nextHop) ?? 1) - 1;
    if (n === 0) this.publicIps.delete(old.nextHop);
    else this.publicIps.set(old.nextHop, n);
    if (m.size === 0) {
      this.byLen.delete(prefixLen);
      this.lens = [...this.byLen.keys()].sort((a, b) => b - a);
    }
  }

  /** The most specific route containing `dst`, or undefined. */
  lookup(dst: number): PeerRoute | undefined {
    for (const len of this.lens) {
      const r = this.byLen.get(len)?.get((dst & maskOfLen(len)) >>> 0);
      if (r !== undefined) return r;
    }
    return undefined;
  }

  /** Whether `ip` is the public IP of some peer (datagrams from anyone else are dropped). */
  isPeer(ip: number): boolean {
    return this.publicIps.has(ip);
  }
}

/** The Internet checksum (RFC 1071) of `buf[off, off+len)`. */
export function internetChecksum(buf: Uint8Array, off: number, len: number): number {
  let sum = 0;
  let i = off;
  const end = off + len;
  for (; i + 1 < end; i += 2) sum += ((buf[i] ?? 0) << 8) | (buf[i + 1] ?? 0);
  if (i < end) sum += (buf[i] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Whether `pkt[0, len)` starts with a plausible IPv4 header (version 4, header and total length fit). */
export function isIpv4(pkt: Uint8Array, len: number): boolean {
  if (len < IPV4_MIN_HEADER) return false;
  const b0 = pkt[0] ?? 0;
  return b0 >> 4 === 4 && (b0 & 0x0f) * 4 >= IPV4_MIN_HEADER && (b0 & 0x0f) * 4 <= len;
}

export function ipv4Dst(pkt: Uint8Array): number {
  return (((pkt[16] ?? 0) << 24) | ((pkt[17] ?? 0) << 16) | ((pkt[18] ?? 0) << 8) | (pkt[19] ?? 0)) >>> 0;
}

/**
 * Decrements the TTL and patches the header checksum incrementally (RFC 1624, eqn. 3) instead of summing
 * the whole header again. Returns false when the TTL reaches 0: the packet must be dropped.
 */
export function decrementTtl(pkt: Uint8Array): boolean {
  const ttl = pkt[8] ?? 0;
  if (ttl <= 1) return false;
  const oldWord = (ttl << 8) | (pkt[9] ?? 0);
  const newWord = ((ttl - 1) << 8) | (pkt[9] ?? 0);
  pkt[8] = ttl - 1;
  let sum = (~(((pkt[10] ?? 0) << 8) | (pkt[11] ?? 0)) & 0xffff) + (~oldWord & 0xffff) + newWord;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  const check = ~sum & 0xffff;
  pkt[10] = check >>> 8;
  pkt[11] = check & 0xff;
  return true;
}

/**
 * Writes into `out` an ICMP destination-unreachable / network-unreachable (type 3, code 0) answering the
 * packet `pkt[0, len)`, from `src` to the packet's source, quoting its IP header and first 8 data bytes
 * (RFC 792). Returns the length written, or 0 when no answer is due: never for ICMP packets (no ICMP
 * storms) nor for fragments other than the first (RFC 1122 §3.2.2).
 */
export function writeNetUnreachable(pkt: Uint8Array, len: number, src: number, out: Uint8Array): number {
  if (!isIpv4(pkt, len)) return 0;
  if (pkt[9] === IPPROTO_ICMP) return 0;
  const fragOffset = (((pkt[6] ?? 0) & 0x1f) << 8) | (pkt[7] ?? 0);
  if (fragOffset !== 0) return 0;
  const ihl = ((pkt[0] ?? 0) & 0x0f) * 4;
  const quoted = Math.min(len, ihl + 8);
  const total = IPV4_MIN_HEADER + 8 + quoted;
  if (out.length < total) return 0;
  out.fill(0, 0, total);
  // IP header
  out[0] = 0x45;
  out[2] = total >>> 8;
  out[3] = total & 0xff;
  out[8] = 64; // TTL
  out[9] = IPPROTO_ICMP;
  out[12] = src >>> 24;
  out[13] = (src >>> 16) & 0xff;
  out[14] = (src >>> 8) & 0xff;
  out[15] = src & 0xff;
  out.set(pkt.subarray(12, 16), 16); // to the original source
  const ipCheck = internetChecksum(out, 0, IPV4_MIN_HEADER);
  out[10] = ipCheck >>> 8;
  out[11] = ipCheck & 0xff;
  // ICMP header: type 3 (destination unreachable), code 0 (network unreachable), checksum, unused
  out[20] = 3;
  out[21] = 0;
  out.set(pkt.subarray(0, quoted), 28);
  const icmpCheck = internetChecksum(out, 20, 8 + quoted);
  out[22] = icmpCheck >>> 8;
  out[23] = icmpCheck & 0xff;
  return total;
}
