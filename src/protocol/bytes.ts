import { ProtocolError } from './errors.js';

const utf8Encoder = new TextEncoder();
// fatal: invalid UTF-8 in a text field is a malformed frame, not U+FFFD soup.
// ignoreBOM: a leading EF BB BF is part of the field; dropped, a nick with one
// would pass the nick rule as another nick than the bytes its proof signed.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const TWO_32 = 0x1_0000_0000;

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/**
 * Sequential writer over a buffer whose size the caller computed up front, so
 * that every frame is one allocation. Integers are written byte by byte, not
 * through a DataView: a view needs the array's ArrayBuffer, and asking for it
 * moves a small array V8 keeps on its heap (ACKs, most frames but messages)
 * out to a separately allocated store.
 */
export class Writer {
  readonly bytes: Uint8Array;
  private pos = 0;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }

  u8(value: number): this {
    this.bytes[this.pos++] = value;
    return this;
  }

  u16(value: number): this {
    const b = this.bytes;
    b[this.pos] = value >>> 8;
    b[this.pos + 1] = value;
    this.pos += 2;
    return this;
  }

  u32(value: number): this {
    const b = this.bytes;
    const p = this.pos;
    b[p] = value >>> 24;
    b[p + 1] = value >>> 16;
    b[p + 2] = value >>> 8;
    b[p + 3] = value;
    this.pos = p + 4;
    return this;
  }

  /** An integer in 0..2^53-1 as 8 big-endian bytes, without BigInt on the hot path. */
  u64(value: number): this {
    return this.u32(Math.floor(value / TWO_32)).u32(value >>> 0);
  }

  raw(data: Uint8Array): this {
    this.bytes.set(data, this.pos);
    this.pos += data.length;
    return this;
  }

  /** Bytes with a one-byte length prefix (at most 255). */
  str8(data: Uint8Array): this {
    if (data.length > 0xff) throw new RangeError(`field of ${data.length} bytes does not fit a one-byte length`);
    return this.u8(data.length).raw(data);
  }

  /** Bytes with a two-byte length prefix (at most 65,535). */
  str16(data: Uint8Array): this {
    if (data.length > 0xffff) throw new RangeError(`field of ${data.length} bytes does not fit a two-byte length`);
    return this.u16(data.length).raw(data);
  }

  /** Bytes written so far; equals the planned size once a frame is complete. */
  get offset(): number {
    return this.pos;
  }

  /**
   * The buffer, once exactly its planned size is written. Integers written past
   * the end are dropped by the typed array, not reported, and a short write
   * would leave zeros; either is an encoder's sizing bug, thrown here.
   */
  end(): Uint8Array {
    if (this.pos !== this.bytes.length) {
      throw new RangeError(`frame planned as ${this.bytes.length} bytes, ${this.pos} written`);
    }
    return this.bytes;
  }
}

/**
 * Sequential reader that throws `BAD_FRAME` on any read past the end, so a short
 * or lying payload can never read another frame's bytes or throw a RangeError.
 */
export class Reader {
  private readonly bytes: Uint8Array;
  private readonly what: string;
  private pos = 0;

  constructor(bytes: Uint8Array, what: string) {
    this.bytes = bytes;
    this.what = what;
  }

  private need(n: number, field: string): void {
    if (this.pos + n > this.bytes.length) {
      throw new ProtocolError('BAD_FRAME', `${this.what}: "${field}" is cut short`);
    }
  }

  u8(field: string): number {
    this.need(1, field);
    return this.bytes[this.pos++] as number;
  }

  u16(field: string): number {
    this.need(2, field);
    const b = this.bytes;
    const v = ((b[this.pos] as number) << 8) | (b[this.pos + 1] as number);
    this.pos += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = readU32(this.bytes, this.pos);
    this.pos += 4;
    return v;
  }

  u64(field: string): number {
    this.need(8, field);
    const hi = readU32(this.bytes, this.pos);
    const lo = readU32(this.bytes, this.pos + 4);
    if (hi > 0x1f_ffff) {
      throw new ProtocolError('BAD_FRAME', `${this.what}: "${field}" exceeds 2^53-1`);
    }
    this.pos += 8;
    return hi * TWO_32 + lo;
  }

  /** A view (no copy) of the next `n` bytes. */
  raw(n: number, field: string): Uint8Array {
    this.need(n, field);
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  str8(field: string): Uint8Array {
    return this.raw(this.u8(field), field);
  }

  str16(field: string): Uint8Array {
    return this.raw(this.u16(field), field);
  }

  text8(field: string, max: number): string {
    return this.decodeText(this.str8(field), field, max);
  }

  text16(field: string, max: number): string {
    return this.decodeText(this.str16(field), field, max);
  }

  private decodeText(data: Uint8Array, field: string, max: number): string {
    if (data.length > max) {
      throw new ProtocolError('BAD_FRAME', `${this.what}: "${field}" is longer than ${max} bytes`);
    }
    try {
      return utf8Decoder.decode(data);
    } catch {
      throw new ProtocolError('BAD_FRAME', `${this.what}: "${field}" is not valid UTF-8`);
    }
  }

  /** A view (no copy) of everything not yet read. */
  rest(): Uint8Array {
    const v = this.bytes.subarray(this.pos);
    this.pos = this.bytes.length;
    return v;
  }

  /** Rejects trailing bytes: every layout is exact. */
  end(): void {
    if (this.pos !== this.bytes.length) {
      throw new ProtocolError('BAD_FRAME', `${this.what}: ${this.bytes.length - this.pos} unexpected trailing bytes`);
    }
  }
}

/** The big-endian u32 at `at`; four byte reads beat a DataView per call on small frames. */
export function readU32(bytes: Uint8Array, at: number): number {
  return (
    ((bytes[at] ?? 0) * 0x100_0000 +
      (((bytes[at + 1] ?? 0) << 16) | ((bytes[at + 2] ?? 0) << 8) | (bytes[at + 3] ?? 0))) >>>
    0
  );
}
