// The main-thread side of the udp data path: opens the UDP socket, starts the packet loop in a worker
// thread (proxy-worker.ts), pushes peer routes to it, reads its counters and stops it.
//
// Design notes:
// - The worker replaces upstream's C proxy (proxy_amd64.c) and its SOCK_SEQPACKET control channel
//   (CMD_SET_ROUTE / CMD_DEL_ROUTE / CMD_STOP): routes go over a MessagePort, "stop" is a shared flag, and
//   an eventfd wakes the worker's poll() so both take effect at once even when the links are idle.
// - The main thread owns every fd (TUN, UDP socket, eventfd) and closes them only after the worker has
//   ended, so the worker can never read a recycled fd number.
// - `stop()` resolves within a second under load: the worker checks the flag after each batch; if it
//   ever did not end in time, the thread is terminated (terminate() cannot interrupt a native call, but
//   the poll timeout bounds that to 250 ms).

import koffi from "koffi";
import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";

import type { IpAddr } from "../../ip/addr.ts";
import { KernelError } from "../../kernel/ports.ts";
import { errnoName } from "../../kernel/netlink/socket.ts";
import type { PeerRoute } from "./packet.ts";
import { STAT, STAT_COUNT, type ProxyMessage, type ProxyWorkerData } from "./proxy-protocol.ts";

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0x800;
const SOCK_CLOEXEC = 0x80000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const EFD_NONBLOCK = 0x800;
const EFD_CLOEXEC = 0x80000;
/** Socket buffers big enough to absorb a burst while the worker is busy with the other direction. */
const SOCKET_BUFFER_BYTES = 4 << 20;

interface Libc {
  socket: (domain: number, type: number, proto: number) => number;
  bind: (fd: number, addr: Buffer, len: number) => number;
  setsockopt: (fd: number, level: number, name: number, val: Buffer, len: number) => number;
  eventfd: (initval: number, flags: number) => number;
  write: (fd: number, buf: Buffer, len: number) => number;
  close: (fd: number) => number;
}

let libc: Libc | undefined;
function lib(): Libc {
  if (libc) return libc;
  const l = koffi.load("libc.so.6");
  libc = {
    socket: l.func("int socket(int, int, int)"),
    bind: l.func("int bind(int, const void *, uint32_t)"),
    setsockopt: l.func("int setsockopt(int, int, int, const void *, uint32_t)"),
    eventfd: l.func("int eventfd(unsigned int, int)"),
    write: l.func("intptr_t write(int, const void *, size_t)"),
    close: l.func("int close(int)"),
  } as Libc;
  return libc;
}

/** Opens a non-blocking UDP socket bound to `addr:port` (upstream listens on IfaceAddr:Port). */
export function openUdpSocket(addr: IpAddr, port: number): number {
  const c = lib();
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new KernelError(errnoName(koffi.errno()), "open UDP socket");
  try {
    const int = Buffer.alloc(4);
    int.writeInt32LE(1, 0);
    c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, int, 4);
    int.writeInt32LE(SOCKET_BUFFER_BYTES, 0);
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, int, 4);
    c.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, int, 4);
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0);
    sa.writeUInt16BE(port, 2);
    sa.writeUInt32BE(Number(addr.value), 4);
    if (c.bind(fd, sa, 16) < 0) {
      throw new KernelError(errnoName(koffi.errno()), `listen on UDP ${addr.toString()}:${port}`);
    }
    return fd;
  } catch (err) {
    c.close(fd);
    throw err;
  }
}

export function closeFd(fd: number): void {
  if (fd >= 0) lib().close(fd);
}

export interface ProxyStats {
  /** Packets read from the TUN device. */
  tunRx: number;
  /** Datagrams sent to peers. */
  udpTx: number;
  /** Datagrams received on the UDP socket (from anyone). */
  udpRx: number;
  /** Packets written into the TUN device. */
  tunTx: number;
  /** Datagrams dropped because their source was not a known peer's public IP. */
  droppedNotPeer: number;
  /** Packets to destinations without a lease (answered with ICMP net-unreachable where allowed). */
  noRoute: number;
  ttlExpired: number;
  sendErrors: number;
  /** Packets that were not IPv4. */
  malformed: number;
}

/** What the udp network needs of its data path; the worker-backed one below, or a fake in tests. */
export interface UdpDataPath {
  setRoute(route: PeerRoute): void;
  deleteRoute(net: number, prefixLen: number): void;
  stats(): ProxyStats;
  /** Resolves when the packet loop has ended on its own; its value is the failure, if any. */
  readonly ended: Promise<string | undefined>;
  /** Stops the packet loop; resolves once it has ended. Idempotent. */
  stop(): Promise<void>;
}

export interface UdpProxyOptions {
  tunFd: number;
  udpFd: number;
  /** The TUN device's address (uint32), source of ICMP answers. */
  tunAddr: number;
  /** The TUN fd carries virtio_net_hdr (received TCP is then coalesced into GSO packets). */
  vnetHdr: boolean;
}

/**
 * The worker's `resourceLimits`. V8 makes a worker's heap when the worker starts, after flanneld's start file
 * has set its Node flags back to V8's defaults (src/cli/node-flags.ts), so the worker is given the main
 * thread's young generation here: two 2 MB semi-spaces, and as much again for large new objects.
 */
export const WORKER_RESOURCE_LIMITS = { maxYoungGenerationSizeMb: 3 * 2 } as const;

/**
 * Starts the worker. Under tsx (tests, development) the worker is a .ts module, and Node 20 does not carry
 * tsx's loader hooks into workers, so a tiny bootstrap registers tsx inside the worker first. A bundled
 * build ships `proxy-worker.js` beside itself and loads it directly.
 */
function startWorker(workerData: ProxyWorkerData, transferList: MessagePort[]): Worker {
  if (import.meta.url.endsWith(".ts")) {
    const api = JSON.stringify(import.meta.resolve("tsx/esm/api"));
    const target = JSON.stringify(new URL("./proxy-worker.ts", import.meta.url).href);
    const boot = `import(${api}).then((m) => { m.register(); return import(${target}); });`;
    return new Worker(boot, { eval: true, workerData, transferList, resourceLimits: WORKER_RESOURCE_LIMITS });
  }
  return new Worker(new URL("./proxy-worker.js", import.meta.url), {
    workerData,
    transferList,
    resourceLimits: WORKER_RESOURCE_LIMITS,
  });
}

export class UdpProxy implements UdpDataPath {
  private readonly worker: Worker;
  private readonly port: MessageChannel["port1"];
  private readonly control = new Int32Array(new SharedArrayBuffer(8));
  private readonly counters = new Float64Array(new SharedArrayBuffer(8 * STAT_COUNT));
  private readonly wakeFd: number;
  private readonly wakeBuf = Buffer.alloc(8);
  private stopping: Promise<void> | undefined;
  private exited = false;
  readonly ended: Promise<string | undefined>;

  constructor(opts: UdpProxyOptions) {
    const c = lib();
    this.wakeFd = c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.wakeFd < 0) throw new KernelError(errnoName(koffi.errno()), "create eventfd");
    this.wakeBuf.writeBigUInt64LE(1n, 0);
    const channel = new MessageChannel();
    this.port = channel.port1;
    const data: ProxyWorkerData = {
      tunFd: opts.tunFd,
      udpFd: opts.udpFd,
      wakeFd: this.wakeFd,
      tunAddr: opts.tunAddr,
      vnetHdr: opts.vnetHdr,
      port: channel.port2,
      control: this.control.buffer as SharedArrayBuffer,
      stats: this.counters.buffer as SharedArrayBuffer,
    };
    this.worker = startWorker(data, [channel.port2]);
    this.ended = new Promise((resolve) => {
      let failure: string | undefined;
      this.worker.on("message", (m: { done?: boolean; error?: string }) => {
        if (m.done === true) failure = m.error;
      });
      this.worker.on("error", (err) => {
        failure = err.message;
      });
      this.worker.on("exit", () => {
        this.exited = true;
        this.port.close();
        closeFd(this.wakeFd);
        resolve(failure);
      });
    });
  }

  private post(msg: ProxyMessage): void {
    this.port.postMessage(msg);
    Atomics.add(this.control, 1, 1);
    this.wake();
  }

  private wake(): void {
    // After the exit the eventfd is closed and its number may already belong to someone else.
    if (this.exited) return;
    lib().write(this.wakeFd, this.wakeBuf, 8);
  }

  setRoute(route: PeerRoute): void {
    this.post({ op: "set", route });
  }

  deleteRoute(net: number, prefixLen: number): void {
    this.post({ op: "delete", net, prefixLen });
  }

  stats(): ProxyStats {
    const s = {} as ProxyStats;
    for (const [k, i] of Object.entries(STAT)) s[k as keyof ProxyStats] = this.counters[i] ?? 0;
    return s;
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      Atomics.store(this.control, 0, 1);
      this.wake();
      const timer = setTimeout(() => void this.worker.terminate(), 1000);
      await this.ended;
      clearTimeout(timer);
    })();
    return this.stopping;
  }
}
