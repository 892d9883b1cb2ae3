// What the bench's probe (agent.ts) counts: peer routes, read straight from route messages.

import * as nl from "../src/kernel/netlink/codec.ts";
import { RT_TABLE_MAIN } from "../src/kernel/ports.ts";

const attrs = new nl.AttrIndex();

/**
 * The destination of a peer route (a /24 inside 10.0.0.0/8 in the main table, with a gateway: vxlan via
 * flannel.1 onlink, host-gw via eth0) as a 32-bit number, or -1 for any other route. Read straight from the
 * rtmsg and its attributes, without building a Route: the probe shares the machine's two cores with flanneld,
 * etcd and the writer, so what it spends per notification is taken from what it measures.
 */
export function peerRouteDst(body: Buffer): number {
  // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type (u8 each), flags (u32)
  if (body.length < 12 || body[0] !== nl.AF_INET || body[1] !== 24) return -1;
  const a = attrs.scan(body, 12);
  const table = a.u32(nl.RTA_TABLE) ?? (body[4] as number);
  const dst = a.be32(nl.RTA_DST);
  if (table !== RT_TABLE_MAIN || a.length(nl.RTA_GATEWAY) < 0 || dst < 0 || dst >>> 24 !== 10) return -1;
  return dst;
}
