// What the bench's probe (agent.ts) counts: peer routes, read straight from route messages.

import * as nl from "../src/kernel/netlink/codec.ts";
import { RT_TABLE_MAIN } from "../src/kernel/ports.ts";

/**
 * The destination of a peer route (a /24 inside 10.0.0.0/8 in the main table, with a gateway: vxlan via
 * flannel.1 onlink, host-gw via eth0) as a 32-bit number, or -1 for any other route. Read straight from the
 * rtmsg and its attributes, without building a Route: the probe shares the machine's two cores with flanneld,
 * etcd and the writer, so what it spends per notification is taken from what it measures.
 */
export function peerRouteDst(body: Buffer): number {
  // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type (u8 each), flags (u32)
  if (body.length < 12 || body[0] !== nl.AF_INET || body[1] !== 24) return -1;
  let table = body[4] as number;
  let dst = -1;
  let gateway = false;
  for (let off = 12; off + 4 <= body.length;) {
    const len = body.readUInt16LE(off);
    if (len < 4 || off + len > body.length) break;
    const type = body.readUInt16LE(off + 2) & 0x3fff; // without NLA_F_NESTED / NLA_F_NET_BYTEORDER
    if (type === nl.RTA_DST && len >= 8) dst = body.readUInt32BE(off + 4);
    else if (type === nl.RTA_TABLE && len >= 8) table = body.readUInt32LE(off + 4);
    else if (type === nl.RTA_GATEWAY) gateway = true;
    off += (len + 3) & ~3;
  }
  if (table !== RT_TABLE_MAIN || !gateway || dst < 0 || dst >>> 24 !== 10) return -1;
  return dst;
}
