// IP addresses for both families in one type: the value is a bigint (32 bits for IPv4, 128 for IPv6),
// so every operation is written once and is generic over the family.
//
// Parsing follows Go's net.ParseIP, not the WHATWG/inet_aton rules: "010.1.2.3" is rejected (Go rejects
// leading zeros since 1.17), "1.2.3" is rejected, and IPv6 text is printed in the RFC 5952 form Go uses.

export type Family = 4 | 6;

const BITS: Record<Family, number> = { 4: 32, 6: 128 };
const MAX_V4 = (1n << 32n) - 1n;
const MAX_V6 = (1n << 128n) - 1n;

export class IpAddr {
  /** The text, made on first use: keys and log lines then share one flat string per address. */
  #text: string | undefined = undefined;

  private constructor(
    readonly family: Family,
    readonly value: bigint,
  ) {}

  static of(family: Family, value: bigint): IpAddr {
    if (value < 0n || value > (family === 4 ? MAX_V4 : MAX_V6))
      throw new RangeError(`Value ${value} does not fit an IPv${family} address`);
    return new IpAddr(family, value);
  }

  /** Parses an IPv4 or IPv6 address; returns undefined when the text is not one. */
  static tryParse(text: string): IpAddr | undefined {
    if (text.includes(":")) {
      const v = parseIPv6(text);
      return v === undefined ? undefined : new IpAddr(6, v);
    }
    const v = parseIPv4(text);
    return v === undefined ? undefined : new IpAddr(4, v);
  }

  /** Parses an IPv4 or IPv6 address; throws `invalid IP address: <text>` otherwise. */
  static parse(text: string): IpAddr {
    const ip = IpAddr.tryParse(text);
    if (ip === undefined) throw new Error(`invalid IP address: ${text}`);
    return ip;
  }

  /** An IPv4 address from its 32-bit value (its four bytes read big-endian). */
  static fromV4(n: number): IpAddr {
    return new IpAddr(4, BigInt(n >>> 0));
  }

  static fromBytes(bytes: Uint8Array): IpAddr {
    if (bytes.length !== 4 && bytes.length !== 16)
      throw new RangeError(`IP address of ${bytes.length} bytes`);
    if (bytes.length === 4) {
      // One BigInt per address instead of one per byte: kernel dumps parse tens of thousands of these.
      return IpAddr.fromV4((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!);
    }
    let v = 0n;
    for (const b of bytes) v = (v << 8n) | BigInt(b);
    return new IpAddr(6, v);
  }

  static zero(family: Family): IpAddr {
    return new IpAddr(family, 0n);
  }

  get bits(): number {
    return BITS[this.family];
  }

  get isUnspecified(): boolean {
    return this.value === 0n;
  }

  /** fe80::/10 for IPv6, 169.254.0.0/16 for IPv4. */
  get isLinkLocalUnicast(): boolean {
    return this.family === 4 ? this.value >> 16n === 0xa9fen : this.value >> 118n === 0x3fan;
  }

  get isLoopback(): boolean {
    return this.family === 4 ? this.value >> 24n === 127n : this.value === 1n;
  }

  get isMulticast(): boolean {
    return this.family === 4 ? this.value >> 28n === 0xen : this.value >> 120n === 0xffn;
  }

  /** Go's IP.IsGlobalUnicast: not unspecified, loopback, multicast, link-local or (v4) broadcast. */
  get isGlobalUnicast(): boolean {
    if (this.isUnspecified || this.isLoopback || this.isMulticast || this.isLinkLocalUnicast) return false;
    return !(this.family === 4 && this.value === 0xffffffffn);
  }

  /** RFC 1918 (v4) or ULA fc00::/7 (v6), as Go's IP.IsPrivate. */
  get isPrivate(): boolean {
    if (this.family === 6) return this.value >> 121n === 0x7en;
    const v = this.value;
    return v >> 24n === 10n || v >> 20n === 0xac1n || v >> 16n === 0xc0a8n;
  }

  toBytes(): Buffer {
    const n = this.bits / 8;
    const out = Buffer.alloc(n);
    let v = this.value;
    for (let i = n - 1; i >= 0; i--) {
      out[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    return out;
  }

  add(n: bigint | number): IpAddr {
    return IpAddr.of(this.family, this.value + BigInt(n));
  }

  equals(other: IpAddr | null | undefined): boolean {
    return other != null && other.family === this.family && other.value === this.value;
  }

  compare(other: IpAddr): number {
    if (this.family !== other.family) return this.family - other.family;
    return this.value < other.value ? -1 : this.value > other.value ? 1 : 0;
  }

  toString(): string {
    return (this.#text ??= this.format());
  }

  /** The text, made anew and not kept: for a text made once (a log line, a network's own text). */
  format(): string {
    return this.#text ?? (this.family === 4 ? formatIPv4(this.value) : formatIPv6(this.value));
  }

  toJSON(): string {
    return this.toString();
  }
}

function parseIPv4(text: string): bigint | undefined {
  // Character codes rather than split and a regex per part: lease values and keys are parsed by the
  // thousand at start-up, before V8 optimizes anything. Four parts of 1-3 digits, each ≤ 255, no leading zero.
  let v = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return undefined;
      v = v * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits === 3 || (digits === 1 && part === 0)) return undefined;
      part = part * 10 + (c - 48);
      if (part > 255) return undefined;
      digits++;
    } else return undefined;
  }
  if (digits === 0 || dots !== 3) return undefined;
  return BigInt(v * 256 + part);
}

function parseIPv6(text: string): bigint | undefined {
  if (text.includes("%")) return undefined; // zones are not addresses for flannel's purposes
  let head = text;
  let v4Tail: bigint | undefined;
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    v4Tail = parseIPv4(text.slice(lastColon + 1));
    if (v4Tail === undefined) return undefined;
    head = text.slice(0, lastColon + 1) + "0:0"; // placeholder groups, replaced below
  }
  const dbl = head.indexOf("::");
  if (dbl !== -1 && head.indexOf("::", dbl + 1) !== -1) return undefined;
  const toGroups = (s: string): string[] => (s === "" ? [] : s.split(":"));
  let groups: string[];
  if (dbl === -1) {
    groups = toGroups(head);
    if (groups.length !== 8) return undefined;
  } else {
    const left = toGroups(head.slice(0, dbl));
    const right = toGroups(head.slice(dbl + 2));
    const missing = 8 - left.length - right.length;
    if (missing < 1) return undefined;
    groups = [...left, ...Array<string>(missing).fill("0"), ...right];
  }
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  if (v4Tail !== undefined) v = (v & ~0xffffffffn) | v4Tail;
  return v;
}

function formatIPv4(v: bigint): string {
  // Plain number arithmetic: map keys and log lines format every address, and BigInt shifts allocate.
  const n = Number(v);
  // join builds one flat string; a template literal would build a chain of concatenated strings.
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join(".");
}

function formatIPv6(v: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((v >> BigInt(i * 16)) & 0xffffn));
  // Longest run of two or more zero groups (first one on a tie) becomes "::" (RFC 5952, as Go prints).
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(":");
  if (bestStart === -1) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}
