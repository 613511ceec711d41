import { ProtocolError } from './errors.js';

const utf8Encoder = new TextEncoder();
// fatal: invalid UTF-8 in a text field is a malformed frame, not U+FFFD soup.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

const TWO_32 = 0x1_0000_0000;

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/**
 * Sequential writer over a buffer whose size the caller computed up front, so
 * that every frame is one allocation.
 */
export class Writer {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  private pos = 0;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }

  u8(value: number): this {
    this.view.setUint8(this.pos, value);
    this.pos += 1;
    return this;
  }

  u16(value: number): this {
    this.view.setUint16(this.pos, value);
    this.pos += 2;
    return this;
  }

  u32(value: number): this {
    this.view.setUint32(this.pos, value);
    this.pos += 4;
    return this;
  }

  /** An integer in 0..2^53-1 as 8 big-endian bytes, without BigInt on the hot path. */
  u64(value: number): this {
    this.view.setUint32(this.pos, Math.floor(value / TWO_32));
    this.view.setUint32(this.pos + 4, value >>> 0);
    this.pos += 8;
    return this;
  }

  raw(data: Uint8Array): this {
    this.bytes.set(data, this.pos);
    this.pos += data.length;
    return this;
  }

  /** Bytes with a one-byte length prefix. */
  str8(data: Uint8Array): this {
    return this.u8(data.length).raw(data);
  }

  /** Bytes with a two-byte length prefix. */
  str16(data: Uint8Array): this {
    return this.u16(data.length).raw(data);
  }

  /** Bytes written so far; equals the planned size once a frame is complete. */
  get offset(): number {
    return this.pos;
  }
}

/**
 * Sequential reader that throws `BAD_FRAME` on any read past the end, so a short
 * or lying payload can never read another frame's bytes or throw a RangeError.
 */
export class Reader {
  private readonly view: DataView;
  private readonly bytes: Uint8Array;
  private readonly what: string;
  private pos = 0;

  constructor(bytes: Uint8Array, what: string) {
    this.bytes = bytes;
    this.what = what;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(n: number, field: string): void {
    if (this.pos + n > this.bytes.length) {
      throw new ProtocolError('BAD_FRAME', `${this.what}: "${field}" is cut short`);
    }
  }

  u8(field: string): number {
    this.need(1, field);
    const v = this.view.getUint8(this.pos);
    this.pos += 1;
    return v;
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  u64(field: string): number {
    this.need(8, field);
    const hi = this.view.getUint32(this.pos);
    const lo = this.view.getUint32(this.pos + 4);
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
