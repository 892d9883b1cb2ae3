// The udp backend's packet loop, run in a worker thread (started by proxy.ts). It owns nothing: the TUN
// fd, the UDP socket and the wake-up eventfd are opened by the main thread and closed by it after this
// worker has ended.
//
// Design notes:
// - Throughput: the costly part of a user-space tunnel is the per-packet trip through the kernel's UDP
//   stack, so both UDP directions are batched with the kernel's UDP offloads:
//   * TUN → UDP: packets read from the TUN device are laid out back to back in one native buffer; a run of
//     consecutive packets to the same peer with the same size (the last may be shorter) leaves in ONE
//     sendmsg with UDP_SEGMENT (UDP GSO, Linux ≥ 4.18). The kernel (or the NIC) cuts it into ordinary
//     datagrams, one inner packet each — on the wire nothing changes, so upstream peers interoperate.
//   * UDP → TUN: the socket has UDP_GRO (Linux ≥ 5.0): one recvmsg returns a train of datagrams from one
//     peer with their segment size in a cmsg; each segment is one inner packet, written to the TUN device.
//   * Into the TUN device: the fd carries virtio_net_hdr (IFF_VNET_HDR), and the TCP segments of one flow
//     in a GRO train are merged into one GSO packet (tcp-coalesce.ts), so the kernel forwards and delivers
//     one packet instead of up to 64. Measured on this 2-CPU VM (iperf3 pod→pod TCP): per-packet TUN
//     writes 0.4–0.8 Gbit/s, with coalescing 0.8–1.1 Gbit/s; upstream's C proxy 0.28–0.43 Gbit/s.
//   Without GRO support a recvmsg returns one datagram (segment size = its length); if a GSO send is
//   refused, GSO is switched off and runs are sent one datagram at a time.
//   Everything else is per packet but cheap: one Map probe for the longest-prefix match, a TTL decrement
//   with an incremental checksum fix, no allocation (buffers are preallocated native memory).
// - Not stalling the daemon: everything here runs on the worker's own thread; the main thread only posts
//   route changes. Route changes are read with receiveMessageOnPort when the main thread has bumped the
//   shared sequence number (checked once per batch, so it costs nothing per packet) and wake the poll
//   through the eventfd.
// - Stopping within a second under load: the stop flag is checked after every batch (≤ 2×BATCH packets),
//   and the eventfd wakes an idle poll at once; poll's own timeout (250 ms) bounds the wait if the
//   eventfd write were ever lost. No call here ever blocks except poll().
// - Security (better than upstream, which accepts any datagram): a datagram whose source address is not a
//   known peer's public IP is dropped and counted, so nobody off-cluster can inject packets into pods
//   through port 8285.

import koffi from "koffi";
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";

import { decrementTtl, ipv4Dst, isIpv4, PeerTable, writeNetUnreachable, type PeerRoute } from "./packet.ts";
import { TcpCoalescer, VNET_HDR_LEN } from "./tcp-coalesce.ts";
import { STAT, type ProxyMessage, type ProxyWorkerData } from "./proxy-protocol.ts";

const POLLIN = 0x1;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;
const EAGAIN = 11;
const EINTR = 4;
const MSG_DONTWAIT = 0x40;
const AF_INET = 2;
const SOL_UDP = 17;
const UDP_SEGMENT = 103;
const UDP_GRO = 104;
/** Packets per direction before the other direction and the control flags get a turn. */
const BATCH = 64;
/** The kernel's UDP_MAX_SEGMENTS (64 on older kernels). */
const MAX_SEGMENTS = 64;
/** Payload of one GSO send; must stay under 64 KiB minus the IP and UDP headers. */
const MAX_GSO_BYTES = 65_000;
const POLL_TIMEOUT_MS = 250;
const PACKET_MAX = 65_536;
const TX_BYTES = 4 * PACKET_MAX;
const RX_BYTES = 2 * PACKET_MAX;

interface Libc {
  poll: (fds: Buffer, n: number, timeoutMs: number) => number;
  read: (fd: number, buf: Buffer, len: number) => number;
  write: (fd: number, buf: Buffer, len: number) => number;
  sendmsg: (fd: number, msg: unknown, flags: number) => number;
  recvmsg: (fd: number, msg: unknown, flags: number) => number;
  writev: (fd: number, iov: unknown, n: number) => number;
  setsockopt: (fd: number, level: number, name: number, val: Buffer, len: number) => number;
}

function loadLibc(): Libc {
  const l = koffi.load("libc.so.6");
  return {
    poll: l.func("int poll(void *, uint64_t, int)"),
    read: l.func("intptr_t read(int, void *, size_t)"),
    write: l.func("intptr_t write(int, const void *, size_t)"),
    sendmsg: l.func("intptr_t sendmsg(int, void *, int)"),
    recvmsg: l.func("intptr_t recvmsg(int, void *, int)"),
    writev: l.func("intptr_t writev(int, void *, int)"),
    setsockopt: l.func("int setsockopt(int, int, int, const void *, uint32_t)"),
  } as Libc;
}

/** A block of native memory, its address and a Buffer over it (so libc sees stable addresses). */
interface Native {
  ptr: unknown;
  addr: bigint;
  buf: Buffer;
}

function allocNative(bytes: number): Native {
  const ptr = koffi.alloc("uint8_t", bytes);
  return { ptr, addr: koffi.address(ptr), buf: Buffer.from(koffi.view(ptr, bytes)) };
}

// Layout of the message blocks: struct msghdr at 0 (56 bytes), one struct iovec at 64, the sockaddr_in
// at 96, the control buffer at 128.
const MSG_IOV = 64;
const MSG_NAME = 96;
const MSG_CTL = 128;
const MSG_BLOCK = 256;

function initMsghdr(m: Native, data: bigint, dataLen: number, ctlLen: number): void {
  const b = m.buf;
  b.writeBigUInt64LE(m.addr + BigInt(MSG_NAME), 0); // msg_name
  b.writeUInt32LE(16, 8); // msg_namelen
  b.writeBigUInt64LE(m.addr + BigInt(MSG_IOV), 16); // msg_iov
  b.writeBigUInt64LE(1n, 24); // msg_iovlen
  b.writeBigUInt64LE(ctlLen === 0 ? 0n : m.addr + BigInt(MSG_CTL), 32); // msg_control
  b.writeBigUInt64LE(BigInt(ctlLen), 40); // msg_controllen
  b.writeInt32LE(0, 48); // msg_flags
  b.writeBigUInt64LE(data, MSG_IOV); // iov_base
  b.writeBigUInt64LE(BigInt(dataLen), MSG_IOV + 8); // iov_len
}

function runLoop(data: ProxyWorkerData): string | undefined {
  const c = loadLibc();
  const control = new Int32Array(data.control);
  const stats = new Float64Array(data.stats);
  const bump = (i: number, n = 1): void => {
    stats[i] = (stats[i] ?? 0) + n;
  };
  const table = new PeerTable();
  const tx = allocNative(TX_BYTES);
  const rx = allocNative(RX_BYTES);
  const txMsg = allocNative(MSG_BLOCK);
  const rxMsg = allocNative(MSG_BLOCK);
  const zeroHdr = allocNative(16);
  const wv = allocNative(32);
  const groBuf = allocNative(VNET_HDR_LEN + 2 * PACKET_MAX);
  const icmp = Buffer.alloc(128 + VNET_HDR_LEN); // zero vnet header, then the ICMP packet
  const wakeBuf = Buffer.alloc(8);
  const pfds = Buffer.alloc(24);
  [data.tunFd, data.udpFd, data.wakeFd].forEach((fd, i) => {
    pfds.writeInt32LE(fd, i * 8);
    pfds.writeInt16LE(POLLIN, i * 8 + 4);
  });
  const one = Buffer.alloc(4);
  one.writeInt32LE(1, 0);
  // GRO is an optimisation: without it every recvmsg simply returns one datagram.
  c.setsockopt(data.udpFd, SOL_UDP, UDP_GRO, one, 4);
  let gso = true;
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

  // ---------------------------------------------------------------- TUN → UDP

  /** The pending run: packets [start, end) of `tx`, all `seg` bytes but maybe the last, to `peer`. */
  let run:
    { peer: PeerRoute; start: number; end: number; seg: number; count: number; short: boolean } | undefined;
  /** Room kept before the first packet so a vnet header can always be read in front of it. */
  const TX_START = 16;
  let txOff = TX_START;
  const vnet = data.vnetHdr;
  const saved = Buffer.alloc(VNET_HDR_LEN);

  const sendOne = (peer: PeerRoute, off: number, len: number, seg: number): boolean => {
    const b = txMsg.buf;
    b.writeUInt16LE(AF_INET, MSG_NAME);
    b.writeUInt16BE(peer.port, MSG_NAME + 2);
    b.writeUInt32BE(peer.nextHop, MSG_NAME + 4);
    b.fill(0, MSG_NAME + 8, MSG_NAME + 16);
    const useGso = seg > 0 && seg < len;
    if (useGso) {
      // struct cmsghdr { size_t len; int level; int type; } + u16 segment size: CMSG_LEN(2) = 18
      b.writeBigUInt64LE(18n, MSG_CTL);
      b.writeInt32LE(SOL_UDP, MSG_CTL + 8);
      b.writeInt32LE(UDP_SEGMENT, MSG_CTL + 12);
      b.writeUInt16LE(seg, MSG_CTL + 16);
    }
    initMsghdr(txMsg, tx.addr + BigInt(off), len, useGso ? 24 : 0);
    return c.sendmsg(data.udpFd, txMsg.ptr, MSG_DONTWAIT) >= 0;
  };

  const flush = (): void => {
    const r = run;
    run = undefined;
    if (r === undefined) return;
    const len = r.end - r.start;
    if (r.count > 1 && gso) {
      if (sendOne(r.peer, r.start, len, r.seg)) {
        bump(STAT.udpTx, r.count);
        return;
      }
      const e = koffi.errno();
      if (e === EAGAIN) {
        bump(STAT.sendErrors, r.count);
        return;
      }
      // The socket or route refuses GSO (EINVAL, EIO, ...): from now on one datagram per packet.
      gso = false;
    }
    for (let off = r.start; off < r.end; off += r.seg) {
      const n = Math.min(r.seg, r.end - off);
      if (sendOne(r.peer, off, n, 0)) bump(STAT.udpTx);
      else bump(STAT.sendErrors);
    }
  };

  /** Moves up to BATCH packets TUN → UDP; returns how many were read, or -1 on a fatal error. */
  const fromTun = (): number => {
    let i = 0;
    for (; i < BATCH; i++) {
      if (txOff + PACKET_MAX > TX_BYTES) {
        flush();
        txOff = TX_START;
      }
      const view = tx.buf.subarray(txOff);
      let n: number;
      if (vnet) {
        // The vnet header lands on the 10 bytes before the packet (the previous packet's tail): keep them.
        tx.buf.copy(saved, 0, txOff - VNET_HDR_LEN, txOff);
        n = c.read(data.tunFd, tx.buf.subarray(txOff - VNET_HDR_LEN), PACKET_MAX) - VNET_HDR_LEN;
        saved.copy(tx.buf, txOff - VNET_HDR_LEN);
      } else {
        n = c.read(data.tunFd, view, PACKET_MAX);
      }
      if (n < 0) {
        const e = koffi.errno();
        flush();
        txOff = TX_START;
        if (e === EAGAIN || e === EINTR) return i;
        return -1;
      }
      bump(STAT.tunRx);
      if (!isIpv4(view, n)) {
        // IPv6 router solicitations and the like: the udp backend carries IPv4 only.
        bump(STAT.malformed);
        continue;
      }
      const peer = table.lookup(ipv4Dst(view));
      if (peer === undefined) {
        bump(STAT.noRoute);
        const m = writeNetUnreachable(view, n, data.tunAddr, icmp.subarray(VNET_HDR_LEN));
        if (m > 0) {
          if (vnet) c.write(data.tunFd, icmp, m + VNET_HDR_LEN);
          else c.write(data.tunFd, icmp.subarray(VNET_HDR_LEN), m);
        }
        continue;
      }
      if (!decrementTtl(view)) {
        bump(STAT.ttlExpired);
        continue;
      }
      const r = run;
      if (
        r !== undefined &&
        (r.peer !== peer ||
          r.short ||
          n > r.seg ||
          r.count >= MAX_SEGMENTS ||
          r.end + n - r.start > MAX_GSO_BYTES)
      ) {
        flush();
      }
      if (run === undefined) run = { peer, start: txOff, end: txOff + n, seg: n, count: 1, short: false };
      else {
        run.end += n;
        run.count += 1;
        if (n < run.seg) run.short = true;
      }
      txOff += n;
    }
    flush();
    txOff = TX_START;
    return i;
  };

  // ---------------------------------------------------------------- UDP → TUN

  /** Writes rx[off, off+len) into the TUN device (after a zero vnet header when those are on). */
  const writeSingle = (off: number, len: number): void => {
    let r: number;
    if (vnet) {
      const b = wv.buf;
      b.writeBigUInt64LE(zeroHdr.addr, 0);
      b.writeBigUInt64LE(BigInt(VNET_HDR_LEN), 8);
      b.writeBigUInt64LE(rx.addr + BigInt(off), 16);
      b.writeBigUInt64LE(BigInt(len), 24);
      r = c.writev(data.tunFd, wv.ptr, 2);
    } else {
      r = c.write(data.tunFd, rx.buf.subarray(off, off + len), len);
    }
    if (r < 0) bump(STAT.sendErrors);
    else bump(STAT.tunTx);
  };
  const gro = new TcpCoalescer(groBuf.buf, writeSingle, (total, segments) => {
    if (c.write(data.tunFd, groBuf.buf, total) < 0) bump(STAT.sendErrors, segments);
    else bump(STAT.tunTx, segments);
  });

  /** Moves up to BATCH datagram trains UDP → TUN; returns how many were received. */
  const fromUdp = (): number => {
    let i = 0;
    const b = rxMsg.buf;
    for (; i < BATCH; i++) {
      initMsghdr(rxMsg, rx.addr, RX_BYTES, 64);
      const n = c.recvmsg(data.udpFd, rxMsg.ptr, MSG_DONTWAIT);
      if (n < 0) return i; // EAGAIN; also ECONNREFUSED from an ICMP port unreachable: nothing to do
      let seg = n;
      const ctlLen = Number(b.readBigUInt64LE(40));
      if (ctlLen >= 20 && b.readInt32LE(MSG_CTL + 8) === SOL_UDP && b.readInt32LE(MSG_CTL + 12) === UDP_GRO) {
        seg = b.readUInt16LE(MSG_CTL + 16) || n;
      }
      const segments = Math.ceil(n / seg);
      bump(STAT.udpRx, segments);
      if (!table.isPeer(b.readUInt32BE(MSG_NAME + 4))) {
        bump(STAT.droppedNotPeer, segments);
        continue;
      }
      for (let off = 0; off < n; off += seg) {
        const len = Math.min(seg, n - off);
        const pkt = rx.buf.subarray(off, off + len);
        if (!isIpv4(pkt, len)) {
          bump(STAT.malformed);
          continue;
        }
        if (!decrementTtl(pkt)) {
          bump(STAT.ttlExpired);
          continue;
        }
        if (vnet && gro.add(pkt, off, len)) continue;
        if (vnet) gro.flush();
        writeSingle(off, len);
      }
      if (vnet) gro.flush();
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
