// The messages and shared counters between the udp proxy (main thread) and its worker.

import type { MessagePort } from "node:worker_threads";

import type { PeerRoute } from "./packet.ts";

export interface ProxyWorkerData {
  tunFd: number;
  udpFd: number;
  wakeFd: number;
  /** The TUN device's own address (uint32): the source of ICMP answers. */
  tunAddr: number;
  port: MessagePort;
  /** The TUN fd was opened with IFF_VNET_HDR: every read and write starts with a virtio_net_hdr. */
  vnetHdr: boolean;
  /** Int32Array: [0] stop flag, [1] message sequence bumped by the main thread. */
  control: SharedArrayBuffer;
  /** Float64Array of STAT_* counters, written only here. */
  stats: SharedArrayBuffer;
}

export type ProxyMessage = { op: "set"; route: PeerRoute } | { op: "delete"; net: number; prefixLen: number };

export const STAT = {
  tunRx: 0,
  udpTx: 1,
  udpRx: 2,
  tunTx: 3,
  droppedNotPeer: 4,
  noRoute: 5,
  ttlExpired: 6,
  sendErrors: 7,
  malformed: 8,
} as const;
export const STAT_COUNT = 9;
