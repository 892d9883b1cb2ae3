// CIDR networks for both families. Parsing masks the host bits, as Go's net.ParseCIDR does:
// "10.3.5.7/16" is the network 10.3.0.0/16. Use IfAddr when the host part matters (interface addresses).

import { IpAddr, type Family } from "./addr.ts";

export class IpNet {
  /** The text, made on first use (one flat string per network, shared by every key and log line). */
  #text: string | undefined = undefined;

  private constructor(
    /** The network address (host bits zero). */
    readonly ip: IpAddr,
    readonly prefixLen: number,
  ) {}

  static of(ip: IpAddr, prefixLen: number): IpNet {
    if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > ip.bits) {
      throw new RangeError(`Prefix length ${prefixLen} is out of range for IPv${ip.family}`);
    }
    const v = ip.value & maskOf(ip.family, prefixLen);
    // IpAddr is immutable: an address that is already the network's (a listed route's) is kept.
    return new IpNet(v === ip.value ? ip : IpAddr.of(ip.family, v), prefixLen);
  }

  /** Parses "a.b.c.d/n" or "x::/n"; returns undefined when the text is not a CIDR. */
  static tryParse(text: string): IpNet | undefined {
    const slash = text.indexOf("/");
    if (slash === -1) return undefined;
    const ip = IpAddr.tryParse(text.slice(0, slash));
    const lenText = text.slice(slash + 1);
    if (ip === undefined || !/^\d{1,3}$/.test(lenText)) return undefined;
    // Go accepts no leading zeros in the prefix length ("/016" is invalid) except "0" itself.
    if (lenText.length > 1 && lenText[0] === "0") return undefined;
    const len = Number(lenText);
    if (len > ip.bits) return undefined;
    return IpNet.of(ip, len);
  }

  /** Parses a CIDR; throws Go's `invalid CIDR address: <text>` otherwise. */
  static parse(text: string): IpNet {
    const n = IpNet.tryParse(text);
    if (n === undefined) throw new Error(`invalid CIDR address: ${text}`);
    return n;
  }

  get family(): Family {
    return this.ip.family;
  }

  get mask(): bigint {
    return maskOf(this.family, this.prefixLen);
  }

  /** Number of addresses in the network. */
  get size(): bigint {
    return 1n << BigInt(this.ip.bits - this.prefixLen);
  }

  /** The last address of the network. */
  get last(): IpAddr {
    return IpAddr.of(this.family, this.ip.value + this.size - 1n);
  }

  /** The network that follows this one, of the same size. */
  next(): IpNet {
    return IpNet.of(this.ip.add(this.size), this.prefixLen);
  }

  contains(ip: IpAddr): boolean {
    return ip.family === this.family && (ip.value & this.mask) === this.ip.value;
  }

  /** True when `other` lies wholly inside this network. */
  containsNet(other: IpNet): boolean {
    return other.family === this.family && other.prefixLen >= this.prefixLen && this.contains(other.ip);
  }

  overlaps(other: IpNet): boolean {
    return this.containsNet(other) || other.containsNet(this);
  }

  equals(other: IpNet | null | undefined): boolean {
    return other != null && other.prefixLen === this.prefixLen && this.ip.equals(other.ip);
  }

  toString(): string {
    return (this.#text ??= [this.ip.format(), this.prefixLen].join("/"));
  }

  toJSON(): string {
    return this.toString();
  }
}

/** An address with its prefix length, host bits kept: what `ip addr` shows ("10.244.1.1/24"). */
export class IfAddr {
  constructor(
    readonly ip: IpAddr,
    readonly prefixLen: number,
  ) {
    if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > ip.bits) {
      throw new RangeError(`Prefix length ${prefixLen} is out of range for IPv${ip.family}`);
    }
  }

  static parse(text: string): IfAddr {
    const slash = text.indexOf("/");
    const ip = IpAddr.parse(slash === -1 ? text : text.slice(0, slash));
    const len = slash === -1 ? ip.bits : Number(text.slice(slash + 1));
    if (!Number.isInteger(len)) throw new Error(`invalid CIDR address: ${text}`);
    return new IfAddr(ip, len);
  }

  get family(): Family {
    return this.ip.family;
  }

  get network(): IpNet {
    return IpNet.of(this.ip, this.prefixLen);
  }

  equals(other: IfAddr): boolean {
    return this.prefixLen === other.prefixLen && this.ip.equals(other.ip);
  }

  toString(): string {
    return `${this.ip.toString()}/${this.prefixLen}`;
  }
}

export function maskOf(family: Family, prefixLen: number): bigint {
  const table = family === 4 ? MASKS_V4 : MASKS_V6;
  const m = table[prefixLen];
  if (m === undefined) throw new RangeError(`Prefix length ${prefixLen} is out of range for IPv${family}`);
  return m;
}

function masks(bits: number): readonly bigint[] {
  const all = (1n << BigInt(bits)) - 1n;
  return Array.from({ length: bits + 1 }, (_, n) => (all << BigInt(bits - n)) & all);
}

// Every mask made once: a periodic pass checks tens of thousands of routes against the network, and each
// mask made per check was a BigInt or three to collect.
const MASKS_V4 = masks(32);
const MASKS_V6 = masks(128);
