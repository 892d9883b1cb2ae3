// The few protobuf wire-format primitives the etcd v3 messages need (proto3: varint, length-delimited),
// written by hand so flanneld does not load a protobuf runtime (see docs/adr/0004-etcd-client.md).
//
// int64 fields that can exceed 2^53 (etcd lease IDs are random 63-bit numbers) are handled as decimal
// strings; revisions, TTLs and counts stay numbers.

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

export class ProtoWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(size = 64) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** A non-negative integer below 2^53. */
  private varint(v: number): void {
    this.ensure(10);
    while (v >= 0x80) {
      this.buf[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.pos++] = v;
  }

  private varintBig(v: bigint): void {
    let u = BigInt.asUintN(64, v);
    this.ensure(10);
    while (u >= 0x80n) {
      this.buf[this.pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }

  private tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  /** A uint/int/enum/bool field; proto3 leaves out zero. Negative values are written as int64. */
  int(field: number, v: number | boolean): void {
    const n = typeof v === "boolean" ? (v ? 1 : 0) : v;
    if (n === 0) return;
    if (!Number.isSafeInteger(n)) throw new RangeError(`not an integer: ${n}`);
    this.tag(field, WIRE_VARINT);
    if (n < 0) this.varintBig(BigInt(n));
    else this.varint(n);
  }

  /** An int64 field given as a decimal string (e.g. a lease ID); "0" and "" are left out. */
  int64(field: number, v: string): void {
    if (v === "" || v === "0") return;
    this.tag(field, WIRE_VARINT);
    this.varintBig(BigInt(v));
  }

  /** A bytes/string field; proto3 leaves out empty ones. */
  bytes(field: number, v: Uint8Array | string): void {
    const b = typeof v === "string" ? Buffer.from(v, "utf8") : v;
    if (b.length === 0) return;
    this.tag(field, WIRE_LEN);
    this.varint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** A nested message, written even when empty (a set oneof member must be present). */
  message(field: number, write: (w: ProtoWriter) => void): void {
    const inner = new ProtoWriter();
    write(inner);
    const b = inner.finish();
    this.tag(field, WIRE_LEN);
    this.varint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

export class ProtoError extends Error {}

/**
 * Reads fields one by one: `while (r.next()) switch (r.field) { case 1: x = r.uint(); break; default:
 * r.skip(); }`. Bytes are returned as views of the input, not copies.
 */
export class ProtoReader {
  field = 0;
  /** Wire type of the current field (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32). */
  wire = 0;
  private pos: number;
  private readonly end: number;

  constructor(
    private readonly buf: Uint8Array,
    start = 0,
    end = buf.length,
  ) {
    this.pos = start;
    this.end = end;
  }

  next(): boolean {
    if (this.pos >= this.end) return false;
    const key = this.uint();
    this.field = Math.floor(key / 8);
    this.wire = key % 8;
    if (this.field === 0) throw new ProtoError("protobuf: field number 0");
    return true;
  }

  /** A varint as a number; exact below 2^53. */
  uint(): number {
    let r = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ProtoError("protobuf: truncated varint");
      const b = this.buf[this.pos++] as number;
      r += (b & 0x7f) * mul;
      if (b < 0x80) return r;
      mul *= 0x80;
    }
    throw new ProtoError("protobuf: varint longer than 10 bytes");
  }

  bool(): boolean {
    return this.uint() !== 0;
  }

  /** An int64 varint as a number (revisions, TTLs: far below 2^53; negatives are exact too). */
  int(): number {
    const start = this.pos;
    const v = this.uint();
    if (v <= Number.MAX_SAFE_INTEGER) return v;
    this.pos = start;
    return Number(this.bigint());
  }

  /** An int64 varint as a decimal string (lease IDs). */
  int64(): string {
    const start = this.pos;
    const v = this.uint();
    if (v <= Number.MAX_SAFE_INTEGER) return String(v);
    this.pos = start;
    return this.bigint().toString();
  }

  private bigint(): bigint {
    let r = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ProtoError("protobuf: truncated varint");
      const b = this.buf[this.pos++] as number;
      r |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asIntN(64, r);
      shift += 7n;
    }
    throw new ProtoError("protobuf: varint longer than 10 bytes");
  }

  /** A length-delimited field's contents (a view). */
  bytes(): Uint8Array {
    const n = this.uint();
    if (this.pos + n > this.end) throw new ProtoError("protobuf: truncated field");
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  string(): string {
    return asBuffer(this.bytes()).toString("utf8");
  }

  /** A reader over a nested message. */
  message(): ProtoReader {
    const n = this.uint();
    if (this.pos + n > this.end) throw new ProtoError("protobuf: truncated message");
    const r = new ProtoReader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }

  skip(): void {
    switch (this.wire) {
      case WIRE_VARINT:
        this.uint();
        return;
      case WIRE_I64:
        this.pos += 8;
        break;
      case WIRE_LEN: {
        const n = this.uint(); // read first: `pos += uint()` would add to the old position
        this.pos += n;
        break;
      }
      case WIRE_I32:
        this.pos += 4;
        break;
      default:
        throw new ProtoError(`protobuf: unsupported wire type ${this.wire}`);
    }
    if (this.pos > this.end) throw new ProtoError("protobuf: truncated field");
  }
}

/** A Buffer over the same memory (no copy). */
export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
