// A minimal rtnetlink codec: just the messages and attributes flannel needs (links incl. vxlan, addresses,
// routes, neighbours and bridge FDB). Pure functions over Buffers, no I/O, so it is unit-tested without root.
//
// Design notes
// - Netlink uses host byte order; every machine we run on is little-endian (x86_64, arm64), so the codec
//   writes LE and refuses to load on a big-endian host rather than silently produce garbage.
//   The exceptions are network-order fields defined as such: IFLA_VXLAN_PORT is big-endian.
// - Attributes are a flat `{ type, data }` list; nested ones (IFLA_LINKINFO, IFLA_INFO_DATA) are encoded by
//   calling `encodeAttrs` on the children. Unknown attributes are kept, not rejected: the kernel adds new
//   ones all the time and a decoder must skip what it does not know.

import { endianness } from "node:os";

if (endianness() !== "LE") throw new Error("The netlink codec supports little-endian hosts only");

// Message types (linux/rtnetlink.h, linux/netlink.h).
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;
export const RTM_NEWNEXTHOP = 104;
export const RTM_DELNEXTHOP = 105;
export const RTM_GETNEXTHOP = 106;

// nlmsghdr flags.
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;

// Address families.
export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;

// Multicast groups (RTMGRP_* bit masks for sockaddr_nl.nl_groups).
export const RTMGRP_LINK = 0x1;
export const RTMGRP_NEIGH = 0x4;
/** The neighbour group's number (RTMGRP_NEIGH is its mask), for NETLINK_ADD/DROP_MEMBERSHIP. */
export const RTNLGRP_NEIGH = 3;
export const RTMGRP_IPV4_ROUTE = 0x40;
export const RTMGRP_IPV6_ROUTE = 0x400;

// Links.
export const IFF_UP = 0x1;
export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_MASTER = 10;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
export const IFLA_VXLAN_ID = 1;
export const IFLA_VXLAN_GROUP = 2;
export const IFLA_VXLAN_LINK = 3;
export const IFLA_VXLAN_LOCAL = 4;
export const IFLA_VXLAN_LEARNING = 7;
export const IFLA_VXLAN_L2MISS = 13;
export const IFLA_VXLAN_L3MISS = 14;
export const IFLA_VXLAN_PORT = 15;
export const IFLA_VXLAN_GROUP6 = 16;
export const IFLA_VXLAN_LOCAL6 = 17;
export const IFLA_VXLAN_GBP = 23;
// ipip (IFLA_IPTUN_*, linux/if_tunnel.h).
export const IFLA_IPTUN_LINK = 1;
export const IFLA_IPTUN_LOCAL = 2;
export const IFLA_IPTUN_REMOTE = 3;
export const IFLA_IPTUN_TTL = 4;
export const IFLA_IPTUN_TOS = 5;
export const IFLA_IPTUN_PMTUDISC = 10;
export const OPERSTATES = ["unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"];

// Addresses.
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_FLAGS = 8;

// Routes.
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_TABLE = 15;
export const RTA_NH_ID = 30;
// linux/nexthop.h
export const NHA_ID = 1;
export const NHA_OIF = 5;
export const NHA_GATEWAY = 6;
export const RTNH_F_ONLINK = 0x4;
export const RTM_F_CLONED = 0x200;
export const RT_SCOPE_NOWHERE = 255;
/** rtm_type values, indexed by number. */
export const RTN_NAMES = [
  "unspec",
  "unicast",
  "local",
  "broadcast",
  "anycast",
  "multicast",
  "blackhole",
  "unreachable",
  "prohibit",
];

// Neighbours.
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NTF_SELF = 0x2;

export const NLMSG_HDRLEN = 16;

export interface Attr {
  type: number;
  data: Buffer;
}

export interface NlMsg {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** The payload after the nlmsghdr (family header + attributes). */
  body: Buffer;
}

const align4 = (n: number): number => (n + 3) & ~3;

/** The encoded size of `attrs`, each padded to 4 bytes. */
function attrsLength(attrs: readonly Attr[]): number {
  let n = 0;
  for (const a of attrs) n += align4(4 + a.data.length);
  return n;
}

/** Writes `attrs` into `buf` at `off` (padding zeroed); returns the offset after them. */
function writeAttrs(buf: Buffer, off: number, attrs: readonly Attr[]): number {
  // Byte stores and TypedArray#set rather than Buffer's checked writers: thousands of requests are encoded
  // per batch, once each, mostly before the JIT has optimised this code.
  for (let i = 0; i < attrs.length; i++) {
    const a = attrs[i] as Attr;
    const len = 4 + a.data.length;
    buf[off] = len & 0xff;
    buf[off + 1] = len >>> 8;
    buf[off + 2] = a.type & 0xff;
    buf[off + 3] = a.type >>> 8;
    buf.set(a.data, off + 4);
    const end = off + align4(len);
    for (let p = off + len; p < end; p++) buf[p] = 0;
    off = end;
  }
  return off;
}

/**
 * A family header of `hdrLen` bytes (zeroed, for the caller to fill) followed by `attrs`, in one
 * allocation: write requests are encoded thousands at a time.
 */
function withAttrs(hdrLen: number, attrs: readonly Attr[]): Buffer {
  const b = Buffer.allocUnsafe(hdrLen + attrsLength(attrs));
  for (let i = 0; i < hdrLen; i++) b[i] = 0;
  writeAttrs(b, hdrLen, attrs);
  return b;
}

/** Encodes attributes with 4-byte padding. The NLA_F_NESTED/BYTEORDER bits are masked off on decode. */
export function encodeAttrs(attrs: readonly Attr[]): Buffer {
  return withAttrs(0, attrs);
}

export function decodeAttrs(buf: Buffer): Attr[] {
  const out: Attr[] = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) break; // malformed tail: stop rather than read garbage
    out.push({ type: buf.readUInt16LE(off + 2) & 0x3fff, data: buf.subarray(off + 4, off + len) });
    off += align4(len);
  }
  return out;
}

/**
 * Where the first attribute of `type` in `buf` (from offset `start`) has its data, without decoding the
 * others: for notifications, which arrive by the thousand. Undefined when absent or malformed.
 */
export function findAttr(buf: Buffer, start: number, type: number): { off: number; len: number } | undefined {
  let off = start;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) return undefined;
    if ((buf.readUInt16LE(off + 2) & 0x3fff) === type) return { off: off + 4, len: len - 4 };
    off += align4(len);
  }
  return undefined;
}

/** Attribute types an AttrIndex keeps (higher ones are skipped): above every RTA_*, NDA_* and NHA_* type. */
const ATTR_INDEX_TYPES = 64;

/**
 * The first attribute of each type in one message, as offsets into it: no Buffer, object or Map per
 * attribute. For kernel dumps, which parse tens of thousands of messages per reconcile pass. One instance
 * serves message after message: `scan` forgets the previous one. Malformed tails are ignored, as in
 * decodeAttrs.
 */
export class AttrIndex {
  private buf: Buffer = Buffer.alloc(0);
  private readonly off = new Int32Array(ATTR_INDEX_TYPES);
  private readonly len = new Int32Array(ATTR_INDEX_TYPES);
  private readonly seen = new Uint32Array(ATTR_INDEX_TYPES);
  private gen = 0;

  /** Indexes the attributes of `buf` from offset `start` to `end` (a message inside a datagram). */
  scan(buf: Buffer, start: number, end = buf.length): this {
    this.gen = (this.gen + 1) >>> 0 || 1;
    this.buf = buf;
    let off = start;
    while (off + 4 <= end) {
      const len = buf.readUInt16LE(off);
      if (len < 4 || off + len > end) break;
      const type = buf.readUInt16LE(off + 2) & 0x3fff;
      if (type < ATTR_INDEX_TYPES && this.seen[type] !== this.gen) {
        this.seen[type] = this.gen;
        this.off[type] = off + 4;
        this.len[type] = len - 4;
      }
      off += align4(len);
    }
    return this;
  }

  /** The data length of the first attribute of `type`; -1 when there is none. */
  length(type: number): number {
    return type < ATTR_INDEX_TYPES && this.seen[type] === this.gen ? (this.len[type] as number) : -1;
  }

  /** Its data as a MAC address text ("" unless it is six bytes long), read in place. */
  mac(type: number): string {
    return this.length(type) === 6 ? macAt(this.buf, this.off[type] as number) : "";
  }

  /** Its data as a view of the message (`readU32`, `readStr` and the like take it). */
  bytes(type: number): Buffer | undefined {
    const n = this.length(type);
    if (n < 0) return undefined;
    const at = this.off[type] as number;
    return this.buf.subarray(at, at + n);
  }

  /** Its first four bytes as a host-order u32 (as readU32); undefined when shorter or absent. */
  u32(type: number): number | undefined {
    return this.length(type) >= 4 ? this.buf.readUInt32LE(this.off[type] as number) : undefined;
  }

  /** Its four bytes as a big-endian number (an IPv4 address); -1 unless it has exactly four. */
  be32(type: number): number {
    return this.length(type) === 4 ? this.buf.readUInt32BE(this.off[type] as number) : -1;
  }
}

/** The first attribute of that type as a map lookup helper. */
export function attrMap(attrs: readonly Attr[]): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  for (const a of attrs) if (!m.has(a.type)) m.set(a.type, a.data);
  return m;
}

export function encodeMsg(m: {
  type: number;
  flags: number;
  seq: number;
  pid?: number;
  body: Buffer;
}): Buffer {
  const b = Buffer.allocUnsafe(NLMSG_HDRLEN + m.body.length);
  writeMsgHeader(b, 0, NLMSG_HDRLEN + m.body.length, m.type, m.flags, m.seq, m.pid ?? 0);
  m.body.copy(b, NLMSG_HDRLEN);
  return b;
}

/** Writes an nlmsghdr at `off`. */
export function writeMsgHeader(
  b: Buffer,
  off: number,
  len: number,
  type: number,
  flags: number,
  seq: number,
  pid = 0,
): void {
  b.writeUInt32LE(len, off);
  b.writeUInt16LE(type, off + 4);
  b.writeUInt16LE(flags, off + 6);
  b.writeUInt32LE(seq, off + 8);
  b.writeUInt32LE(pid, off + 12);
}

/** Splits a datagram into messages. Bodies are views into `buf`: copy them to keep past the next recv. */
export function decodeMsgs(buf: Buffer): NlMsg[] {
  const out: NlMsg[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      body: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/**
 * Walks the messages of datagrams in place: `next()` moves to the next message of sequence `seq` (other than
 * NLMSG_DONE and NLMSG_ERROR), whose type is `type` and whose body is `buf` from `body` to `end`. One cursor
 * serves a whole dump: no object or Buffer view per message.
 */
export class MsgCursor {
  buf: Buffer = Buffer.alloc(0);
  type = 0;
  body = 0;
  end = 0;
  private d = 0;
  private off = 0;

  constructor(
    private readonly datagrams: readonly Buffer[],
    private readonly seq: number,
  ) {}

  next(): boolean {
    for (; this.d < this.datagrams.length; this.d++, this.off = 0) {
      const b = this.datagrams[this.d]!;
      while (this.off + NLMSG_HDRLEN <= b.length) {
        const at = this.off;
        const len = b.readUInt32LE(at);
        if (len < NLMSG_HDRLEN || at + len > b.length) break;
        this.off = at + align4(len);
        const type = b.readUInt16LE(at + 4);
        if (b.readUInt32LE(at + 8) !== this.seq || type === NLMSG_DONE || type === NLMSG_ERROR) continue;
        this.buf = b;
        this.type = type;
        this.body = at + NLMSG_HDRLEN;
        this.end = at + len;
        return true;
      }
    }
    return false;
  }
}

/** NLMSG_ERROR payload: 0 is an ACK, otherwise a positive errno number. */
export function decodeError(body: Buffer): number {
  return body.length >= 4 ? -body.readInt32LE(0) : 0;
}

// ---------------------------------------------------------------- family headers

export interface IfInfoMsg {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}

export function encodeIfInfo(h: Partial<IfInfoMsg>, attrs: readonly Attr[] = []): Buffer {
  const b = withAttrs(16, attrs);
  b.writeUInt8(h.family ?? AF_UNSPEC, 0);
  b.writeUInt16LE(h.type ?? 0, 2);
  b.writeInt32LE(h.index ?? 0, 4);
  b.writeUInt32LE(h.flags ?? 0, 8);
  b.writeUInt32LE(h.change ?? 0, 12);
  return b;
}

export function decodeIfInfo(body: Buffer): { hdr: IfInfoMsg; attrs: Attr[] } {
  return {
    hdr: {
      family: body.readUInt8(0),
      type: body.readUInt16LE(2),
      index: body.readInt32LE(4),
      flags: body.readUInt32LE(8),
      change: body.readUInt32LE(12),
    },
    attrs: decodeAttrs(body.subarray(16)),
  };
}

export interface IfAddrMsg {
  family: number;
  prefixLen: number;
  flags: number;
  scope: number;
  index: number;
}

export function encodeIfAddr(h: IfAddrMsg, attrs: readonly Attr[] = []): Buffer {
  const b = withAttrs(8, attrs);
  b.writeUInt8(h.family, 0);
  b.writeUInt8(h.prefixLen, 1);
  b.writeUInt8(h.flags & 0xff, 2);
  b.writeUInt8(h.scope, 3);
  b.writeUInt32LE(h.index, 4);
  return b;
}

export function decodeIfAddr(body: Buffer): { hdr: IfAddrMsg; attrs: Attr[] } {
  return {
    hdr: {
      family: body.readUInt8(0),
      prefixLen: body.readUInt8(1),
      flags: body.readUInt8(2),
      scope: body.readUInt8(3),
      index: body.readUInt32LE(4),
    },
    attrs: decodeAttrs(body.subarray(8)),
  };
}

export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}

/**
 * The body of an RTM_GETROUTE request: with no `dstLen` and no attributes a dump of every route of `family`
 * (AF_*) in every table; with RTA_DST and its length, the route the kernel would use (`ip route get`).
 */
export function encodeRtRequest(family: number, dstLen = 0, attrs: readonly Attr[] = []): Buffer {
  return encodeRtMsg(
    { family, dstLen, srcLen: 0, tos: 0, table: 0, protocol: 0, scope: 0, type: 0, flags: 0 },
    attrs,
  );
}

export function encodeRtMsg(h: RtMsg, attrs: readonly Attr[] = []): Buffer {
  const b = withAttrs(12, attrs);
  b.writeUInt8(h.family, 0);
  b.writeUInt8(h.dstLen, 1);
  b.writeUInt8(h.srcLen, 2);
  b.writeUInt8(h.tos, 3);
  b.writeUInt8(h.table, 4);
  b.writeUInt8(h.protocol, 5);
  b.writeUInt8(h.scope, 6);
  b.writeUInt8(h.type, 7);
  b.writeUInt32LE(h.flags, 8);
  return b;
}

export function decodeRtMsg(body: Buffer): { hdr: RtMsg; attrs: Attr[] } {
  return {
    hdr: {
      family: body.readUInt8(0),
      dstLen: body.readUInt8(1),
      srcLen: body.readUInt8(2),
      tos: body.readUInt8(3),
      table: body.readUInt8(4),
      protocol: body.readUInt8(5),
      scope: body.readUInt8(6),
      type: body.readUInt8(7),
      flags: body.readUInt32LE(8),
    },
    attrs: decodeAttrs(body.subarray(12)),
  };
}

/** struct nhmsg (linux/nexthop.h): the header of RTM_*NEXTHOP messages. */
export interface NhMsg {
  family: number;
  scope: number;
  protocol: number;
  /** RTNH_F_* (onlink, dead, ...). */
  flags: number;
}

export function encodeNhMsg(h: NhMsg, attrs: readonly Attr[] = []): Buffer {
  const b = withAttrs(8, attrs);
  b.writeUInt8(h.family, 0);
  b.writeUInt8(h.scope, 1);
  b.writeUInt8(h.protocol, 2);
  b.writeUInt8(0, 3);
  b.writeUInt32LE(h.flags, 4);
  return b;
}

export function decodeNhMsg(body: Buffer): { hdr: NhMsg; attrs: Attr[] } {
  return {
    hdr: {
      family: body.readUInt8(0),
      scope: body.readUInt8(1),
      protocol: body.readUInt8(2),
      flags: body.readUInt32LE(4),
    },
    attrs: decodeAttrs(body.subarray(8)),
  };
}

export interface NdMsg {
  family: number;
  index: number;
  state: number;
  flags: number;
  type: number;
}

export function encodeNdMsg(h: NdMsg, attrs: readonly Attr[] = []): Buffer {
  const b = withAttrs(12, attrs);
  b.writeUInt8(h.family, 0);
  b.writeInt32LE(h.index, 4);
  b.writeUInt16LE(h.state, 8);
  b.writeUInt8(h.flags, 10);
  b.writeUInt8(h.type, 11);
  return b;
}

export function decodeNdMsg(body: Buffer): { hdr: NdMsg; attrs: Attr[] } {
  return {
    hdr: {
      family: body.readUInt8(0),
      index: body.readInt32LE(4),
      state: body.readUInt16LE(8),
      flags: body.readUInt8(10),
      type: body.readUInt8(11),
    },
    attrs: decodeAttrs(body.subarray(12)),
  };
}

// ---------------------------------------------------------------- attribute value helpers

export const u8 = (type: number, v: number): Attr => ({ type, data: Buffer.from([v & 0xff]) });

export function u16be(type: number, v: number): Attr {
  const data = Buffer.alloc(2);
  data.writeUInt16BE(v, 0);
  return { type, data };
}

export function u32(type: number, v: number): Attr {
  const data = Buffer.allocUnsafe(4);
  data[0] = v & 0xff;
  data[1] = (v >>> 8) & 0xff;
  data[2] = (v >>> 16) & 0xff;
  data[3] = v >>> 24;
  return { type, data };
}

export const flag = (type: number): Attr => ({ type, data: Buffer.alloc(0) });

export const str = (type: number, s: string): Attr => ({ type, data: Buffer.from(`${s}\0`, "utf8") });

export const bytes = (type: number, data: Buffer): Attr => ({ type, data });

export const nested = (type: number, children: readonly Attr[]): Attr => ({
  type,
  data: encodeAttrs(children),
});

export function readStr(b: Buffer | undefined): string {
  if (!b) return "";
  const nul = b.indexOf(0);
  return b.subarray(0, nul === -1 ? b.length : nul).toString("utf8");
}

export function readU32(b: Buffer | undefined): number | undefined {
  return b && b.length >= 4 ? b.readUInt32LE(0) : undefined;
}

/** The value of one hex digit's character code, or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  const l = c | 0x20;
  return l >= 97 && l <= 102 ? l - 87 : -1; // a-f, A-F
}

export function macToBytes(mac: string): Buffer {
  const b = Buffer.allocUnsafe(6);
  let ok = mac.length === 17;
  for (let i = 0; ok && i < 6; i++) {
    const hi = hexDigit(mac.charCodeAt(3 * i));
    const lo = hexDigit(mac.charCodeAt(3 * i + 1));
    ok = hi >= 0 && lo >= 0 && (i === 5 || mac.charCodeAt(3 * i + 2) === 58); // ':'
    b[i] = (hi << 4) | lo;
  }
  if (!ok) {
    throw new Error(
      `Invalid MAC address ${JSON.stringify(mac)}: expected six hex octets like 0e:2a:01:02:03:04`,
    );
  }
  return b;
}

export function bytesToMac(b: Buffer | undefined): string {
  if (!b || b.length !== 6) return "";
  return macAt(b, 0);
}

const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * The six bytes at `off` as "aa:bb:cc:dd:ee:ff". Joined from a table of byte texts into one flat string: the
 * hex text and its slices made five strings per MAC, and neighbour and FDB dumps hold one MAC per entry.
 */
export function macAt(b: Uint8Array, off: number): string {
  return [
    HEX2[b[off]!],
    HEX2[b[off + 1]!],
    HEX2[b[off + 2]!],
    HEX2[b[off + 3]!],
    HEX2[b[off + 4]!],
    HEX2[b[off + 5]!],
  ].join(":");
}

/**
 * The ifinfomsg body of `ip link add NAME [mtu M] type ipip local LOCAL` (remote any, ttl inherit, tos
 * inherit, pmtudisc) — what iproute2's link_iptnl sends for those options. `local` is 4 bytes or absent.
 */
export function encodeIpipLinkBody(name: string, local: Buffer | null, mtu?: number): Buffer {
  const data: Attr[] = [];
  if (local !== null) data.push(bytes(IFLA_IPTUN_LOCAL, local));
  data.push(bytes(IFLA_IPTUN_REMOTE, Buffer.alloc(4)));
  data.push(u8(IFLA_IPTUN_TTL, 0), u8(IFLA_IPTUN_TOS, 0), u8(IFLA_IPTUN_PMTUDISC, 1));
  const attrs: Attr[] = [str(IFLA_IFNAME, name)];
  if (mtu !== undefined) attrs.push(u32(IFLA_MTU, mtu));
  attrs.push(nested(IFLA_LINKINFO, [str(IFLA_INFO_KIND, "ipip"), nested(IFLA_INFO_DATA, data)]));
  return encodeIfInfo({}, attrs);
}
