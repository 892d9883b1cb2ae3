// A NETLINK_ROUTE socket over koffi (libc socket/bind/sendto/recv/poll/setsockopt/close).
//
// Design notes
// - Requests are synchronous: rtnetlink handles a request inside sendto() and queues the answer, so the
//   following recv() returns at once (~30 µs per route). SO_RCVTIMEO (5 s) guards against a kernel that
//   never answers, so a bug cannot hang the daemon forever.
// - Notifications use a second socket joined to multicast groups. It is read without ever blocking the event
//   loop: koffi's `.async` runs poll() with a short timeout on its worker thread, then the socket is drained
//   with MSG_DONTWAIT on the main thread. The short timeout bounds how long an aborted subscription keeps
//   the process alive.
// - ENOBUFS on the notification socket means the kernel dropped messages; it is reported to the caller
//   (as an `overflow` event upstream of here), never thrown.
// - `drop` attaches a classic BPF socket filter that discards message types in the kernel, before they are
//   queued. A subscriber that needs only deletions would otherwise receive a notification for each of its
//   own adds; 10,000 peers make 30,000 of them while the event loop is busy writing, the receive buffer
//   overflows, and the overflow forces a needless full reconcile pass. `drop.echoes` also discards
//   notifications of given types whose nlmsg_pid is the port id of one of our own request sockets: the
//   kernel puts the requester's port id in RTM_DELROUTE, so our own route deletions need not come back,
//   while one made by anyone else (`ip route del`, pid = its socket's port id) still does. RTM_DELNEIGH
//   carries pid 0 for every deletion (neighbours and vxlan FDB entries, Linux 6.18), so it cannot be told
//   apart this way.

import koffi from "koffi";
import { endianness } from "node:os";

import { KernelError } from "../ports.ts";
import {
  AF_NETLINK,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_OVERRUN,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  NLMSG_HDRLEN,
  MsgCursor,
  decodeError,
  decodeMsgs,
  encodeMsg,
  writeMsgHeader,
  type NlMsg,
} from "./codec.ts";

const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_ROUTE = 0;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const SO_RCVTIMEO = 20;
const SOL_NETLINK = 270;
const NETLINK_EXT_ACK = 11;
const MSG_DONTWAIT = 0x40;
const POLLIN = 0x1;
const NETLINK_CAP_ACK = 10;
const NETLINK_ADD_MEMBERSHIP = 1;
const NETLINK_DROP_MEMBERSHIP = 2;
/** Requests per sendto in requestMany: their error answers (~1 KB of receive buffer each) must fit SO_RCVBUF. */
const MANY_MAX_MSGS = 128;
const MANY_MAX_BYTES = 64 * 1024;

/** struct sock_filter / sock_fprog (linux/filter.h), for SO_ATTACH_FILTER. */
const SO_ATTACH_FILTER = 26;
const BPF_LD_W_ABS = 0x20;
const BPF_LD_H_ABS = 0x28;
const BPF_JEQ_K = 0x15;
const BPF_RET_K = 0x06;
interface SockFilter {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** What a notification socket's filter discards in the kernel. */
export interface DropSpec {
  /** Message types dropped whoever caused them. */
  types?: readonly number[];
  /**
   * Message types dropped when their nlmsg_pid is one of `portIds`: the notifications the kernel sends
   * about the requests of those sockets (only for types whose notifications carry the requester's port id).
   */
  echoes?: { types: readonly number[]; portIds: readonly number[] };
}

interface Libc {
  socket: (domain: number, type: number, proto: number) => number;
  bind: (fd: number, addr: Buffer, len: number) => number;
  getsockname: (fd: number, addr: Buffer, len: Buffer) => number;
  sendto: (fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, alen: number) => number;
  recv: (fd: number, buf: Buffer, len: number, flags: number) => number;
  setsockopt: (fd: number, level: number, name: number, val: Buffer, len: number) => number;
  setsockoptFprog: (
    fd: number,
    level: number,
    name: number,
    val: { len: number; filter: SockFilter[] },
    len: number,
  ) => number;
  fprogSize: number;
  close: (fd: number) => number;
  poll: {
    (fds: Buffer, n: number, timeoutMs: number): number;
    async: (fds: Buffer, n: number, timeoutMs: number, cb: (err: unknown, res: number) => void) => void;
  };
}

let libc: Libc | undefined;
let errnoNames: Map<number, string> | undefined;

function lib(): Libc {
  if (libc) return libc;
  const l = koffi.load("libc.so.6");
  const filter = koffi.struct("nl_sock_filter", { code: "uint16", jt: "uint8", jf: "uint8", k: "uint32" });
  const fprog = koffi.struct("nl_sock_fprog", { len: "uint16", filter: koffi.pointer(filter) });
  libc = {
    socket: l.func("int socket(int, int, int)"),
    bind: l.func("int bind(int, const void *, uint32_t)"),
    getsockname: l.func("int getsockname(int, void *, void *)"),
    sendto: l.func("intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)"),
    recv: l.func("intptr_t recv(int, void *, size_t, int)"),
    setsockopt: l.func("int setsockopt(int, int, int, const void *, uint32_t)"),
    setsockoptFprog: l.func("int setsockopt(int, int, int, const nl_sock_fprog *, uint32_t)"),
    fprogSize: koffi.sizeof(fprog),
    close: l.func("int close(int)"),
    poll: l.func("int poll(void *, uint64_t, int)") as Libc["poll"],
  } as Libc;
  return libc;
}

/** errno number → name ("EEXIST"), from koffi's table of the platform's codes. */
export function errnoName(n: number): string {
  if (!errnoNames) {
    errnoNames = new Map();
    for (const [name, num] of Object.entries(koffi.os.errno))
      if (!errnoNames.has(num)) errnoNames.set(num, name);
    // Aliases koffi may list first; prefer the names iproute2 users know.
    errnoNames.set(11, "EAGAIN");
    errnoNames.set(95, "EOPNOTSUPP");
  }
  return errnoNames.get(n) ?? "EUNKNOWN";
}

/**
 * The BPF program that drops datagrams whose (first) message has one of `spec.types`, or one of
 * `spec.echoes.types` with an nlmsg_pid in `spec.echoes.portIds`, and accepts the rest. Notifications carry
 * one message per datagram. BPF loads are big-endian; the netlink header is in host order.
 */
export function dropFilter(spec: DropSpec, littleEndian = endianness() === "LE"): SockFilter[] {
  const h = (t: number): number => (littleEndian ? ((t & 0xff) << 8) | (t >> 8) : t);
  const w = (v: number): number =>
    littleEndian
      ? (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0
      : v >>> 0;
  const types = spec.types ?? [];
  const echoTypes = spec.echoes !== undefined && spec.echoes.portIds.length > 0 ? spec.echoes.types : [];
  const portIds = echoTypes.length > 0 ? (spec.echoes?.portIds ?? []) : [];
  // Layout: load type; type tests; echo-type tests; accept; [load pid; pid tests; accept]; drop.
  const pidAt = 1 + types.length + echoTypes.length + 1; // the pid load, when there are echo tests
  const drop = pidAt + (portIds.length > 0 ? 1 + portIds.length + 1 : 0);
  const prog: SockFilter[] = [{ code: BPF_LD_H_ABS, jt: 0, jf: 0, k: 4 }]; // nlmsg_type
  const jumpTo = (target: number): number => {
    const off = target - (prog.length + 1);
    if (off < 0 || off > 255) throw new RangeError("socket filter too long");
    return off;
  };
  for (const t of types) prog.push({ code: BPF_JEQ_K, jt: jumpTo(drop), jf: 0, k: h(t) });
  for (const t of echoTypes) prog.push({ code: BPF_JEQ_K, jt: jumpTo(pidAt), jf: 0, k: h(t) });
  prog.push({ code: BPF_RET_K, jt: 0, jf: 0, k: 0xffffffff }); // accept the whole datagram
  if (portIds.length > 0) {
    prog.push({ code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 12 }); // nlmsg_pid
    for (const p of portIds) prog.push({ code: BPF_JEQ_K, jt: jumpTo(drop), jf: 0, k: w(p) });
    prog.push({ code: BPF_RET_K, jt: 0, jf: 0, k: 0xffffffff });
  }
  prog.push({ code: BPF_RET_K, jt: 0, jf: 0, k: 0 }); // drop
  return prog;
}

/** What a request does, for its error: a string, or a function that makes one (called only on error). */
export type OpText = string | (() => string);

export function opText(op: OpText): string {
  return typeof op === "string" ? op : op();
}

/** One request of `requestMany`; `okErrnos` are errnos that count as success (a delete's "not there"). */
export interface ManyRequest {
  type: number;
  flags: number;
  body: Buffer;
  op: OpText;
  okErrnos?: readonly string[];
}

function sockaddrNl(groups: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16LE(AF_NETLINK, 0);
  b.writeUInt32LE(0, 4); // nl_pid 0: the kernel assigns one (bind) / addresses the kernel (sendto)
  b.writeUInt32LE(groups >>> 0, 8);
  return b;
}

export class NetlinkSocket {
  private fd: number;
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private readonly rbuf = Buffer.alloc(1 << 18);
  private readonly kernelAddr = sockaddrNl(0);
  /** The port id the kernel assigned (nl_pid): the nlmsg_pid of notifications this socket's requests cause. */
  readonly portId: number;

  /**
   * Opens a NETLINK_ROUTE socket (or `protocol`, e.g. NETLINK_GENERIC 16); `groups` (RTMGRP_* mask) joins
   * notification groups.
   */
  constructor(
    opts: {
      groups?: number;
      rcvbufBytes?: number;
      recvTimeoutMs?: number;
      protocol?: number;
      /** Notifications discarded in the kernel (see the design notes); for notification sockets. */
      drop?: DropSpec;
    } = {},
  ) {
    const c = lib();
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, opts.protocol ?? NETLINK_ROUTE);
    if (fd < 0) throw new KernelError(errnoName(koffi.errno()), "open netlink socket");
    this.fd = fd;
    try {
      if (opts.rcvbufBytes) this.setRcvbuf(opts.rcvbufBytes);
      if (opts.drop !== undefined) this.attachFilter(opts.drop);
      if (opts.recvTimeoutMs) {
        const tv = Buffer.alloc(16);
        tv.writeBigInt64LE(BigInt(Math.floor(opts.recvTimeoutMs / 1000)), 0);
        tv.writeBigInt64LE(BigInt((opts.recvTimeoutMs % 1000) * 1000), 8);
        if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16) < 0) {
          throw new KernelError(errnoName(koffi.errno()), "set netlink socket receive timeout");
        }
      }
      // Extended acks are harmless if unsupported; they only make error messages carry more bytes.
      c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, Buffer.from([0, 0, 0, 0]), 4);
      // Error acks without a copy of the request: smaller acks, so a batch's acks fit the buffer.
      c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, Buffer.from([1, 0, 0, 0]), 4);
      const sa = sockaddrNl(opts.groups ?? 0);
      if (c.bind(fd, sa, sa.length) < 0)
        throw new KernelError(errnoName(koffi.errno()), "bind netlink socket");
      // bind with nl_pid 0 has the kernel assign the port id; read it back.
      const len = Buffer.alloc(4);
      len.writeUInt32LE(sa.length, 0);
      if (c.getsockname(fd, sa, len) < 0)
        throw new KernelError(errnoName(koffi.errno()), "read netlink socket address");
      this.portId = sa.readUInt32LE(4);
    } catch (err) {
      c.close(fd);
      throw err;
    }
  }

  /**
   * Attaches (or replaces: the kernel swaps filters atomically) the socket filter that discards the
   * notifications `spec` names. A closed socket is left alone.
   */
  setDropFilter(spec: DropSpec): void {
    if (this.fd >= 0) this.attachFilter(spec);
  }

  private attachFilter(spec: DropSpec): void {
    const prog = dropFilter(spec);
    const c = lib();
    if (
      c.setsockoptFprog(
        this.fd,
        SOL_SOCKET,
        SO_ATTACH_FILTER,
        { len: prog.length, filter: prog },
        c.fprogSize,
      ) < 0
    )
      throw new KernelError(errnoName(koffi.errno()), "attach netlink socket filter");
  }

  /**
   * SO_RCVBUF is capped at net.core.rmem_max (212992 bytes on most distributions), far below what a burst
   * of notifications needs; SO_RCVBUFFORCE is not, and flanneld has CAP_NET_ADMIN. Without it (tests as
   * non-root), SO_RCVBUF as far as the cap allows.
   */
  private setRcvbuf(bytes: number): void {
    try {
      this.setInt(SOL_SOCKET, SO_RCVBUFFORCE, bytes);
    } catch {
      this.setInt(SOL_SOCKET, SO_RCVBUF, bytes);
    }
  }

  /**
   * Leaves (`false`) or joins again (`true`) notification group `group` (an RTNLGRP_* number, not a mask).
   * While out of it, the kernel delivers nothing of that group to this socket; what is queued stays.
   */
  setGroup(group: number, member: boolean): void {
    if (this.fd >= 0)
      this.setInt(SOL_NETLINK, member ? NETLINK_ADD_MEMBERSHIP : NETLINK_DROP_MEMBERSHIP, group);
  }

  private setInt(level: number, name: number, value: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(value, 0);
    if (lib().setsockopt(this.fd, level, name, b, 4) < 0) {
      throw new KernelError(errnoName(koffi.errno()), `setsockopt ${level}/${name}`);
    }
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  close(): void {
    if (this.fd >= 0) lib().close(this.fd);
    this.fd = -1;
  }

  private send(type: number, flags: number, body: Buffer, op: string): number {
    if (this.fd < 0) throw new KernelError("EBADF", op);
    this.seq = (this.seq + 1) >>> 0;
    const msg = encodeMsg({ type, flags, seq: this.seq, body });
    const n = lib().sendto(this.fd, msg, msg.length, 0, this.kernelAddr, this.kernelAddr.length);
    if (n < 0) throw new KernelError(errnoName(koffi.errno()), op);
    return this.seq;
  }

  /**
   * One blocking recv (bounded by SO_RCVTIMEO) into `rbuf`; returns the datagram's length, 0 when
   * interrupted, -1 when nothing is queued with MSG_DONTWAIT.
   */
  private recvRaw(op: OpText, flags = 0): number {
    const n = lib().recv(this.fd, this.rbuf, this.rbuf.length, flags);
    if (n >= 0) return n;
    const e = errnoName(koffi.errno());
    if (e === "EAGAIN" && flags & MSG_DONTWAIT) return -1;
    if (e === "EINTR") return 0;
    throw new KernelError(e === "EAGAIN" ? "ETIMEDOUT" : e, opText(op));
  }

  /** One blocking recv (bounded by SO_RCVTIMEO); returns the messages of one datagram. */
  private recvOnce(op: OpText, flags = 0): NlMsg[] | undefined {
    const n = this.recvRaw(op, flags);
    if (n < 0) return undefined;
    // Copy: rbuf is reused by the next recv.
    return decodeMsgs(Buffer.from(this.rbuf.subarray(0, n)));
  }

  /** Sends a request with NLM_F_ACK and waits for its ACK; throws KernelError with the errno name. */
  request(type: number, flags: number, body: Buffer, op: string): void {
    const seq = this.send(type, NLM_F_REQUEST | NLM_F_ACK | flags, body, op);
    for (;;) {
      for (const m of this.recvOnce(op) ?? []) {
        if (m.seq !== seq) continue; // a stale answer to an earlier request that timed out
        if (m.type === NLMSG_ERROR) {
          const err = decodeError(m.body);
          if (err !== 0) throw new KernelError(errnoName(err), op);
          return;
        }
      }
    }
  }

  /**
   * Sends many requests, several per sendto (the kernel handles the messages of one datagram in order), and
   * reads their answers. Returns per request undefined (success) or its KernelError; a failed request does
   * not stop the later ones. `okErrnos` of a request are success (a delete's "not there").
   *
   * Only the last request of a chunk carries NLM_F_ACK: the kernel answers a request without it only when
   * it fails (netlink_rcv_skb acks `NLM_F_ACK || err`), and in order, so once the last request's answer is
   * in, every earlier request without an error answer succeeded. One recv per chunk instead of one per
   * request, and no ack skb per request in the kernel.
   *
   * Chunks stay small enough that their answers fit the receive buffer even if all fail: an answer that
   * does not fit is dropped by the kernel (ENOBUFS), and then every request of the chunk not yet known to
   * have failed is reported as failed with ENOBUFS, since its outcome is unknown.
   */
  requestMany(reqs: readonly ManyRequest[]): (KernelError | undefined)[] {
    const out: (KernelError | undefined)[] = new Array<KernelError | undefined>(reqs.length);
    for (let start = 0; start < reqs.length;) {
      // One chunk: at most MANY_MAX_MSGS messages and MANY_MAX_BYTES bytes, encoded into one buffer.
      const seqOf = new Map<number, number>(); // seq → index into reqs
      let bytes = 0;
      let end = start;
      while (end < reqs.length && end - start < MANY_MAX_MSGS && bytes < MANY_MAX_BYTES) {
        bytes += (NLMSG_HDRLEN + reqs[end]!.body.length + 3) & ~3;
        end++;
      }
      const buf = Buffer.allocUnsafe(bytes);
      let off = 0;
      for (let i = start; i < end; i++) {
        const r = reqs[i]!;
        this.seq = (this.seq + 1) >>> 0;
        const len = NLMSG_HDRLEN + r.body.length;
        const ack = i === end - 1 ? NLM_F_ACK : 0; // see above: only the last one is acked
        writeMsgHeader(buf, off, len, r.type, NLM_F_REQUEST | ack | r.flags, this.seq);
        buf.set(r.body, off + NLMSG_HDRLEN);
        const padded = (len + 3) & ~3;
        for (let p = off + len; p < off + padded; p++) buf[p] = 0;
        off += padded;
        seqOf.set(this.seq, i);
      }
      const first = reqs[start]!;
      if (this.fd < 0) {
        for (let i = start; i < end; i++) out[i] = new KernelError("EBADF", opText(reqs[i]!.op));
        start = end;
        continue;
      }
      const n = lib().sendto(this.fd, buf, buf.length, 0, this.kernelAddr, this.kernelAddr.length);
      if (n < 0) {
        const e = errnoName(koffi.errno());
        for (let i = start; i < end; i++) out[i] = new KernelError(e, opText(reqs[i]!.op));
        start = end;
        continue;
      }
      const lastSeq = this.seq;
      try {
        // Answers are read in place: no copy, no decoded messages.
        const rb = this.rbuf;
        for (let done = false; !done;) {
          const n = this.recvRaw(first.op);
          for (let off = 0; off + NLMSG_HDRLEN <= n;) {
            const len = rb.readUInt32LE(off);
            if (len < NLMSG_HDRLEN || off + len > n) break;
            const seq = rb.readUInt32LE(off + 8);
            const i = rb.readUInt16LE(off + 4) === NLMSG_ERROR ? seqOf.get(seq) : undefined;
            if (i !== undefined) {
              seqOf.delete(seq);
              if (seq === lastSeq) done = true;
              const err = len >= NLMSG_HDRLEN + 4 ? -rb.readInt32LE(off + NLMSG_HDRLEN) : 0;
              const req = reqs[i]!;
              if (err !== 0) {
                const name = errnoName(err);
                if (req.okErrnos?.includes(name) !== true) out[i] = new KernelError(name, opText(req.op));
              }
            } // else a stale answer to an earlier request
            off += (len + 3) & ~3;
          }
        }
      } catch (err) {
        // ENOBUFS (answers lost) or a timeout: the outcome of every request without an answer is unknown,
        // so each counts as failed.
        const e = err instanceof KernelError ? err.errno : "EUNKNOWN";
        for (const i of seqOf.values()) out[i] = new KernelError(e, opText(reqs[i]!.op));
      }
      start = end;
    }
    return out;
  }

  /** Sends a request that is answered by one message (e.g. RTM_GETROUTE, RTM_GETLINK by name). */
  query(type: number, body: Buffer, op: string): NlMsg {
    const seq = this.send(type, NLM_F_REQUEST, body, op);
    for (;;) {
      for (const m of this.recvOnce(op) ?? []) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_ERROR) {
          const err = decodeError(m.body);
          throw new KernelError(err === 0 ? "ENODATA" : errnoName(err), op);
        }
        return m;
      }
    }
  }

  /** NLM_F_DUMP request: every message until NLMSG_DONE. A dump interrupted by changes is retried. */
  dump(type: number, body: Buffer, op: string): NlMsg[] {
    const out: NlMsg[] = [];
    const c = this.dumpCursor(type, body, op);
    while (c.next()) {
      const h = c.body - NLMSG_HDRLEN;
      out.push({
        type: c.type,
        flags: c.buf.readUInt16LE(h + 6),
        seq: c.buf.readUInt32LE(h + 8),
        pid: c.buf.readUInt32LE(h + 12),
        body: c.buf.subarray(c.body, c.end),
      });
    }
    return out;
  }

  /**
   * `dump` as a cursor over its messages in place, for listings of tens of thousands of entries: the whole
   * dump is read first (its datagrams kept as they came, so that an interrupted dump can be retried), and no
   * object or Buffer view is made per message.
   */
  dumpCursor(type: number, body: Buffer, op: string): MsgCursor {
    const { seq, datagrams } = this.dumpDatagrams(type, body, op);
    return new MsgCursor(datagrams, seq);
  }

  /** Reads one dump to its NLMSG_DONE (retried up to three times when interrupted); its datagrams, copied. */
  private dumpDatagrams(type: number, body: Buffer, op: string): { seq: number; datagrams: Buffer[] } {
    for (let attempt = 0; ; attempt++) {
      const seq = this.send(type, NLM_F_REQUEST | NLM_F_DUMP, body, op);
      const datagrams: Buffer[] = [];
      let interrupted = false;
      for (let done = false; !done;) {
        const n = this.recvRaw(op);
        const rb = this.rbuf;
        let ours = false;
        // The headers are read in place; only a datagram with messages of this dump is copied.
        for (let off = 0; off + NLMSG_HDRLEN <= n;) {
          const len = rb.readUInt32LE(off);
          if (len < NLMSG_HDRLEN || off + len > n) break;
          if (rb.readUInt32LE(off + 8) === seq) {
            const t = rb.readUInt16LE(off + 4);
            if (rb.readUInt16LE(off + 6) & 0x10) interrupted = true; // NLM_F_DUMP_INTR: state changed meanwhile
            if (t === NLMSG_DONE) {
              done = true;
              break;
            }
            if (t === NLMSG_ERROR) {
              const err = len >= NLMSG_HDRLEN + 4 ? -rb.readInt32LE(off + NLMSG_HDRLEN) : 0;
              if (err !== 0) throw new KernelError(errnoName(err), op);
            } else if (t === NLMSG_OVERRUN) throw new KernelError("ENOBUFS", op);
            else ours = true;
          }
          off += (len + 3) & ~3;
        }
        if (ours) datagrams.push(Buffer.from(rb.subarray(0, n)));
      }
      if (!interrupted || attempt >= 3) return { seq, datagrams };
    }
  }

  /**
   * Reads notifications without blocking the event loop until `signal` aborts, then closes the socket.
   * `onMsgs` gets each datagram's messages; `onOverflow` is called on ENOBUFS (messages were lost).
   */
  readLoop(onMsgs: (msgs: NlMsg[]) => void, onOverflow: () => void, signal: AbortSignal, pollMs = 100): void {
    const pfd = Buffer.alloc(8);
    pfd.writeInt32LE(this.fd, 0);
    pfd.writeInt16LE(POLLIN, 4);
    const drain = (): void => {
      for (;;) {
        let msgs: NlMsg[] | undefined;
        try {
          msgs = this.recvOnce("read netlink notifications", MSG_DONTWAIT);
        } catch (err) {
          // ENOBUFS: the socket stays usable after reporting the overflow. Anything else (never seen) is
          // treated the same way, so that the caller re-reads the state instead of the process crashing.
          onOverflow();
          if (err instanceof KernelError && err.errno === "ENOBUFS") continue;
          return;
        }
        if (msgs === undefined) return;
        onMsgs(msgs);
      }
    };
    const step = (): void => {
      if (signal.aborted || this.fd < 0) {
        this.close();
        return;
      }
      lib().poll.async(pfd, 1, pollMs, (err, res) => {
        if (signal.aborted) {
          this.close();
          return;
        }
        if (!err && res > 0) drain();
        setImmediate(step);
      });
    };
    step();
  }
}
