// The real Tun port: /dev/net/tun + TUNSETIFF over koffi (libc open/ioctl/close).
//
// Design notes:
// - The fd is opened O_NONBLOCK: nothing may ever sit in a blocking read() on it, because a thread blocked
//   in read() on a TUN fd cannot be interrupted and would hang shutdown (architecture note "TUN").
//   Readers wait with poll() (the udp proxy worker) and drain with non-blocking reads.
// - The device is not persistent (no TUNSETPERSIST): it disappears when the fd is closed, also when the
//   process dies, exactly like upstream's udp backend.

import koffi from "koffi";

import { errnoName } from "./netlink/socket.ts";
import { KernelError, type Tun, type TunDevice } from "./ports.ts";

const O_RDWR = 0x2;
const O_NONBLOCK = 0x800;
const O_CLOEXEC = 0x80000;
const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const IFNAMSIZ = 16;
const SIOCSIFTXQLEN = 0x8943;
const AF_INET = 2;
const SOCK_DGRAM = 2;
const IFREQ_BYTES = 40;

interface TunLibc {
  open: (path: string, flags: number) => number;
  socket: (domain: number, type: number, proto: number) => number;
  ioctl: (fd: number, req: number, ...rest: unknown[]) => number;
  close: (fd: number) => number;
}

let libc: TunLibc | undefined;

function lib(): TunLibc {
  if (libc) return libc;
  const l = koffi.load("libc.so.6");
  libc = {
    open: l.func("int open(const char *, int)"),
    socket: l.func("int socket(int, int, int)"),
    // ioctl is variadic in libc; declared so, koffi passes the ifreq pointer with the variadic convention.
    ioctl: l.func("int ioctl(int, unsigned long, ...)"),
    close: l.func("int close(int)"),
  } as TunLibc;
  return libc;
}

/** Encodes a `struct ifreq` for TUNSETIFF: the name, then the flags (short) at offset 16. */
export function encodeIfreq(name: string, flags: number): Buffer {
  const b = Buffer.alloc(IFREQ_BYTES);
  const nameBytes = Buffer.from(name, "utf8");
  if (nameBytes.length >= IFNAMSIZ) {
    throw new Error(`TUN device name ${JSON.stringify(name)} is longer than 15 bytes; choose a shorter name`);
  }
  nameBytes.copy(b, 0);
  b.writeUInt16LE(flags, IFNAMSIZ);
  return b;
}

/** The device name the kernel wrote back into a `struct ifreq`. */
export function decodeIfreqName(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end === -1 || end > IFNAMSIZ ? IFNAMSIZ : end).toString("utf8");
}

/** `ip link set <name> txqueuelen <n>` through SIOCSIFTXQLEN on a throwaway socket. */
function setTxQueueLen(c: TunLibc, name: string, len: number): void {
  const sock = c.socket(AF_INET, SOCK_DGRAM | O_CLOEXEC, 0);
  if (sock < 0) throw new KernelError(errnoName(koffi.errno()), "open socket for SIOCSIFTXQLEN");
  try {
    const ifr = encodeIfreq(name, 0);
    ifr.writeInt32LE(len, IFNAMSIZ);
    if (c.ioctl(sock, SIOCSIFTXQLEN, "void *", ifr) < 0) {
      throw new KernelError(errnoName(koffi.errno()), `set txqueuelen ${len} on ${name}`);
    }
  } finally {
    c.close(sock);
  }
}

export class KoffiTun implements Tun {
  open(name: string, opts: { txQueueLen?: number; vnetHdr?: boolean } = {}): TunDevice {
    const c = lib();
    const vnetHdr = opts.vnetHdr === true;
    const ifr = encodeIfreq(name, IFF_TUN | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0));
    const fd = c.open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw new KernelError(errnoName(koffi.errno()), "open /dev/net/tun");
    if (c.ioctl(fd, TUNSETIFF, "void *", ifr) < 0) {
      const errno = errnoName(koffi.errno());
      c.close(fd);
      throw new KernelError(errno, `create TUN device ${name} (TUNSETIFF)`);
    }
    const devName = decodeIfreqName(ifr);
    if (opts.txQueueLen !== undefined) {
      try {
        setTxQueueLen(c, devName, opts.txQueueLen);
      } catch (err) {
        c.close(fd);
        throw err;
      }
    }
    let open = true;
    return {
      name: devName,
      fd,
      vnetHdr,
      close(): void {
        if (!open) return;
        open = false;
        c.close(fd);
      },
    };
  }
}
