// The udp backend's packet loop, run in a worker thread (started by proxy.ts). It owns nothing: the TUN
// fd, the UDP socket and the wake-up eventfd are opened by the main thread and closed by it after this
// worker has ended.
//
// Design notes:
// - Throughput: packets are moved with direct libc calls (read/write on the TUN fd, recvfrom/sendto on the
//   UDP socket) into one preallocated buffer, with no allocation per packet and no event-loop turn per
//   packet. The loop drains both fds alternately in batches while there is work, and only when both are
//   empty blocks in poll() (TUN, socket, eventfd). The per-packet work is one Map probe (longest prefix
//   over the few distinct prefix lengths), a TTL decrement with an incremental checksum fix, one syscall.
// - Not stalling the daemon: everything here runs on the worker's own thread; the main thread only posts
//   route changes. Route changes are read with receiveMessageOnPort when the main thread has bumped the
//   shared sequence number (checked once per batch, so it costs nothing per packet) and wakes the poll
//   through the eventfd.
// - Stopping within a second under load: the stop flag is checked after every batch (≤ 2×BATCH packets),
//   and the eventfd wakes an idle poll at once; poll's own timeout (250 ms) bounds the wait if the
//   eventfd write were ever lost.
// - Security (better than upstream, which accepts any datagram): a datagram whose source address is not a
//   known peer's public IP is dropped and counted, so nobody off-cluster can inject packets into pods
//   through port 8285.

import koffi from "koffi";
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";

import { decrementTtl, ipv4Dst, isIpv4, PeerTable, writeNetUnreachable, type PeerRoute } from "./packet.ts";
import { STAT, type ProxyMessage, type ProxyWorkerData } from "./proxy-protocol.ts";

const POLLIN = 0x1;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;
const EAGAIN = 11;
const EINTR = 4;
const MSG_DONTWAIT = 0x40;
const AF_INET = 2;
const BATCH = 64;
const POLL_TIMEOUT_MS = 250;
const BUF_BYTES = 65536;

interface Libc {
  poll: (fds: Buffer, n: number, timeoutMs: number) => number;
  read: (fd: number, buf: Buffer, len: number) => number;
  write: (fd: number, buf: Buffer, len: number) => number;
  recvfrom: (fd: number, buf: Buffer, len: number, flags: number, from: Buffer, fromLen: Buffer) => number;
  sendto: (fd: number, buf: Buffer, len: number, flags: number, to: Buffer, toLen: number) => number;
}

function loadLibc(): Libc {
  const l = koffi.load("libc.so.6");
  return {
    poll: l.func("int poll(void *, uint64_t, int)"),
    read: l.func("intptr_t read(int, void *, size_t)"),
    write: l.func("intptr_t write(int, const void *, size_t)"),
    recvfrom: l.func("intptr_t recvfrom(int, void *, size_t, int, void *, void *)"),
    sendto: l.func("intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)"),
  } as Libc;
}

function sockaddrIn(ip: number, port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(AF_INET, 0);
  b.writeUInt16BE(port, 2);
  b.writeUInt32BE(ip >>> 0, 4);
  return b;
}

function runLoop(data: ProxyWorkerData): string | undefined {
  const c = loadLibc();
  const control = new Int32Array(data.control);
  const stats = new Float64Array(data.stats);
  const table = new PeerTable();
  const sockaddrs = new Map<number, Buffer>();
  const buf = Buffer.alloc(BUF_BYTES);
  const icmp = Buffer.alloc(128);
  const from = Buffer.alloc(16);
  const fromLen = Buffer.alloc(4);
  const wakeBuf = Buffer.alloc(8);
  const pfds = Buffer.alloc(24);
  [data.tunFd, data.udpFd, data.wakeFd].forEach((fd, i) => {
    pfds.writeInt32LE(fd, i * 8);
    pfds.writeInt16LE(POLLIN, i * 8 + 4);
  });
  let seenSeq = 0;

  const applyMessages = (): void => {
    seenSeq = Atomics.load(control, 1);
    for (;;) {
      const m = receiveMessageOnPort(data.port);
      if (m === undefined) return;
      const msg = m.message as ProxyMessage;
      if (msg.op === "set") table.set(msg.route);
      else table.delete(msg.net, msg.prefixLen);
    }
  };
  const sockaddrFor = (r: PeerRoute): Buffer => {
    const key = r.nextHop * 65536 + r.port;
    let sa = sockaddrs.get(key);
    if (sa === undefined) {
      if (sockaddrs.size > 4096) sockaddrs.clear();
      sa = sockaddrIn(r.nextHop, r.port);
      sockaddrs.set(key, sa);
    }
    return sa;
  };

  /** Moves up to BATCH packets TUN → UDP; returns how many were read, or -1 on a fatal error. */
  const fromTun = (): number => {
    let i = 0;
    for (; i < BATCH; i++) {
      const n = c.read(data.tunFd, buf, BUF_BYTES);
      if (n < 0) {
        const e = koffi.errno();
        if (e === EAGAIN || e === EINTR) return i;
        return -1;
      }
      stats[STAT.tunRx]! += 1;
      if (!isIpv4(buf, n)) {
        // IPv6 router solicitations and the like: the udp backend carries IPv4 only.
        stats[STAT.malformed]! += 1;
        continue;
      }
      const r = table.lookup(ipv4Dst(buf));
      if (r === undefined) {
        stats[STAT.noRoute]! += 1;
        const m = writeNetUnreachable(buf, n, data.tunAddr, icmp);
        if (m > 0) c.write(data.tunFd, icmp, m);
        continue;
      }
      if (!decrementTtl(buf)) {
        stats[STAT.ttlExpired]! += 1;
        continue;
      }
      const sa = sockaddrFor(r);
      if (c.sendto(data.udpFd, buf, n, MSG_DONTWAIT, sa, 16) < 0) stats[STAT.sendErrors]! += 1;
      else stats[STAT.udpTx]! += 1;
    }
    return i;
  };

  /** Moves up to BATCH datagrams UDP → TUN; returns how many were received. */
  const fromUdp = (): number => {
    let i = 0;
    for (; i < BATCH; i++) {
      fromLen.writeUInt32LE(16, 0);
      const n = c.recvfrom(data.udpFd, buf, BUF_BYTES, MSG_DONTWAIT, from, fromLen);
      if (n < 0) return i; // EAGAIN; other errors (ICMP port unreachable reported as ECONNREFUSED) too
      stats[STAT.udpRx]! += 1;
      if (!table.isPeer(from.readUInt32BE(4))) {
        stats[STAT.droppedNotPeer]! += 1;
        continue;
      }
      if (!isIpv4(buf, n)) {
        stats[STAT.malformed]! += 1;
        continue;
      }
      if (!decrementTtl(buf)) {
        stats[STAT.ttlExpired]! += 1;
        continue;
      }
      if (c.write(data.tunFd, buf, n) < 0) stats[STAT.sendErrors]! += 1;
      else stats[STAT.tunTx]! += 1;
    }
    return i;
  };

  applyMessages();
  for (;;) {
    if (Atomics.load(control, 0) !== 0) return undefined;
    if (Atomics.load(control, 1) !== seenSeq) applyMessages();
    const a = fromTun();
    if (a < 0) return `Reading the TUN device failed: errno ${koffi.errno()}`;
    const b = fromUdp();
    if (a > 0 || b > 0) continue;
    // Both empty: sleep in poll until a packet, a wake-up or the timeout.
    for (let i = 0; i < 3; i++) pfds.writeInt16LE(0, i * 8 + 6);
    const r = c.poll(pfds, 3, POLL_TIMEOUT_MS);
    if (r < 0 && koffi.errno() !== EINTR) return `poll failed: errno ${koffi.errno()}`;
    if ((pfds.readInt16LE(6) & (POLLERR | POLLHUP | POLLNVAL)) !== 0) {
      return "The TUN device was closed or deleted";
    }
    if ((pfds.readInt16LE(22) & POLLIN) !== 0) c.read(data.wakeFd, wakeBuf, 8);
  }
}

if (parentPort !== null) {
  const data = workerData as ProxyWorkerData;
  let failure: string | undefined;
  try {
    failure = runLoop(data);
  } catch (err) {
    failure = err instanceof Error ? err.message : String(err);
  }
  parentPort.postMessage({ done: true, ...(failure === undefined ? {} : { error: failure }) });
  data.port.close();
}
