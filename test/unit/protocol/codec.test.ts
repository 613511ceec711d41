import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  ErrorCode,
  errorCodeName,
  FrameDecoder,
  HELLO_MAGIC,
  MAX_NICK,
  parseClientFrame,
  parseServerFrame,
  ProtocolError,
} from '../../../src/protocol/index.js';
import type { ClientFrame, ServerFrame } from '../../../src/protocol/index.js';
import { Writer } from '../../../src/protocol/bytes.js';
import { clientFrames, serverFrames } from './frames.fixture.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

function decodeOne(bytes: Uint8Array): Uint8Array {
  const frames = new FrameDecoder().push(bytes);
  expect(frames).toHaveLength(1);
  return frames[0] as Uint8Array;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ProtocolError) return err.code;
    throw err;
  }
  return 'no error';
}

describe('frame codec', () => {
  it('round-trips every client frame type', () => {
    for (const f of clientFrames) expect(parseClientFrame(decodeOne(encodeFrame(f)))).toEqual(f);
  });

  it('round-trips every server frame type', () => {
    for (const f of serverFrames) expect(parseServerFrame(decodeOne(encodeFrame(f)))).toEqual(f);
  });

  // The worked examples of doc/PROTOCOL.md §5: the spec and the code must agree byte for byte.
  it('matches the golden bytes in doc/PROTOCOL.md', () => {
    expect(hex(encodeFrame({ type: 'hello', version: 1, agent: 'confab/0.1.0' }))).toBe(
      '00000016' + '01' + '434f4e464142' + '0001' + '0c' + hex(Buffer.from('confab/0.1.0')),
    );
    const room = unhex('00112233445566778899aabbccddeeff');
    const key = new Uint8Array(32).fill(0xaa);
    const proof = new Uint8Array(64).fill(0xbb);
    expect(hex(encodeFrame({ type: 'join', rid: 1, room, nick: 'bob', key, proof }))).toBe(
      '00000079' +
        '02' +
        '00000001' +
        '00112233445566778899aabbccddeeff' +
        '03' +
        '626f62' +
        'aa'.repeat(32) +
        'bb'.repeat(64),
    );
    expect(
      hex(
        encodeFrame({
          type: 'deliver',
          room,
          seq: 42,
          ts: 1_800_000_000_000,
          nick: 'bob',
          body: unhex('cafe'),
        }),
      ),
    ).toBe(
      '00000027' +
        '86' +
        '00112233445566778899aabbccddeeff' +
        '000000000000002a' +
        '000001a3185c5000' +
        '03626f62' +
        'cafe',
    );
    expect(hex(encodeFrame({ type: 'error', rid: 5, code: ErrorCode.NICK_TAKEN, fatal: false, message: 'x' }))).toBe(
      '0000000b' + 'ff' + '00000005' + '000a' + '00' + '0001' + '78',
    );
  });

  it('round-trips arbitrary frames (property)', () => {
    const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
    const nick = fc.stringMatching(/^[A-Za-z0-9_.-]{1,24}$/);
    const u32 = fc.nat({ max: 0xffff_ffff });
    const seq = fc.nat({ max: Number.MAX_SAFE_INTEGER });
    const client: fc.Arbitrary<ClientFrame> = fc.oneof(
      fc.record({
        type: fc.constant('join' as const),
        rid: u32,
        room: bytes(16),
        nick,
        key: bytes(32),
        proof: bytes(64),
      }),
      fc.record({ type: fc.constant('leave' as const), rid: u32, room: bytes(16) }),
      fc.record({
        type: fc.constant('send' as const),
        rid: u32,
        room: bytes(16),
        mid: bytes(16),
        body: fc.uint8Array({ maxLength: 300 }),
      }),
      fc.record({
        type: fc.constant('fetch' as const),
        rid: u32,
        room: bytes(16),
        after: seq,
        limit: fc.nat({ max: 0xffff }),
      }),
      fc.record({ type: fc.constant('ping' as const), token: u32 }),
      fc.record({
        type: fc.constant('error' as const),
        rid: u32,
        code: fc.nat({ max: 0xffff }),
        fatal: fc.boolean(),
        message: fc.string({ maxLength: 200 }),
      }),
    );
    const server: fc.Arbitrary<ServerFrame> = fc.oneof(
      fc.record({
        type: fc.constant('joined' as const),
        rid: u32,
        room: bytes(16),
        nick,
        seq,
        numbering: bytes(8),
        members: fc.array(fc.record({ nick, key: bytes(32) }), { maxLength: 20 }),
      }),
      fc.record({
        type: fc.constant('deliver' as const),
        room: bytes(16),
        seq,
        ts: seq,
        nick,
        body: fc.uint8Array({ maxLength: 300 }),
      }),
      fc.record({ type: fc.constant('ack' as const), rid: u32, room: bytes(16), seq, ts: seq }),
      fc.record({
        type: fc.constant('history' as const),
        rid: u32,
        room: bytes(16),
        seq,
        ts: seq,
        nick,
        body: fc.uint8Array({ maxLength: 300 }),
      }),
      fc.record({
        type: fc.constant('fetched' as const),
        rid: u32,
        room: bytes(16),
        oldest: seq,
        latest: seq,
        count: fc.nat({ max: 0xffff }),
      }),
      fc.record({ type: fc.constant('member-left' as const), room: bytes(16), nick, reason: fc.nat({ max: 255 }) }),
    );
    fc.assert(
      fc.property(client, (f) => {
        expect(parseClientFrame(decodeOne(encodeFrame(f)))).toEqual(f);
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(server, (f) => {
        expect(parseServerFrame(decodeOne(encodeFrame(f)))).toEqual(f);
      }),
      { numRuns: 3000 },
    );
  });

  it('rejects another protocol version in HELLO with UNSUPPORTED_VERSION and says which', () => {
    const raw = decodeOne(encodeFrame({ type: 'hello', version: 2, agent: 'future' }));
    expect(() => parseClientFrame(raw)).toThrow(/v2; this server speaks v1/);
    expect(codeOf(() => parseClientFrame(raw))).toBe('UNSUPPORTED_VERSION');
  });

  it('rejects another version in WELCOME', () => {
    const raw = decodeOne(
      encodeFrame({
        type: 'welcome',
        version: 9,
        agent: 's',
        maxFrame: 1,
        maxBody: 1,
        heartbeatMs: 1,
        challenge: new Uint8Array(32),
        rateBurst: 1,
        rateIntervalMs: 1,
      }),
    );
    expect(codeOf(() => parseServerFrame(raw))).toBe('UNSUPPORTED_VERSION');
  });

  it('rejects a HELLO without the magic', () => {
    const raw = decodeOne(encodeFrame({ type: 'hello', version: 1, agent: 'x' })).slice();
    raw[1] = 0x00;
    expect(raw.subarray(1, 7)).not.toEqual(HELLO_MAGIC);
    expect(codeOf(() => parseClientFrame(raw))).toBe('BAD_FRAME');
  });

  it('rejects unknown types, and types sent in the wrong direction', () => {
    expect(codeOf(() => parseClientFrame(new Uint8Array([0x42])))).toBe('UNKNOWN_FRAME_TYPE');
    expect(codeOf(() => parseClientFrame(decodeOne(encodeFrame(serverFrames[0] as ServerFrame))))).toBe(
      'UNKNOWN_FRAME_TYPE',
    );
    expect(codeOf(() => parseServerFrame(decodeOne(encodeFrame(clientFrames[1] as ClientFrame))))).toBe(
      'UNKNOWN_FRAME_TYPE',
    );
  });

  it('rejects truncated payloads and trailing bytes', () => {
    const join = decodeOne(
      encodeFrame({
        type: 'join',
        rid: 1,
        room: new Uint8Array(16),
        nick: 'bob',
        key: new Uint8Array(32),
        proof: new Uint8Array(64),
      }),
    );
    for (let i = 1; i < join.length; i++) expect(codeOf(() => parseClientFrame(join.subarray(0, i)))).toBe('BAD_FRAME');
    const longer = new Uint8Array(join.length + 1);
    longer.set(join);
    expect(codeOf(() => parseClientFrame(longer))).toBe('BAD_FRAME');
  });

  it('rejects invalid UTF-8 and over-long nicks', () => {
    const raw = decodeOne(
      encodeFrame({
        type: 'join',
        rid: 1,
        room: new Uint8Array(16),
        nick: 'bob',
        key: new Uint8Array(32),
        proof: new Uint8Array(64),
      }),
    ).slice();
    raw[1 + 4 + 16 + 1 + 2] = 0xff; // last byte of the nick
    expect(codeOf(() => parseClientFrame(raw))).toBe('BAD_FRAME');
    const room = new Uint8Array(16);
    const long = decodeOne(
      encodeFrame({ type: 'deliver', room, seq: 1, ts: 1, nick: 'x'.repeat(MAX_NICK + 1), body: room }),
    );
    expect(codeOf(() => parseServerFrame(long))).toBe('BAD_FRAME');
  });

  it('keeps a leading byte order mark in a text field', () => {
    // EF BB BF is U+FEFF like any other: dropped, "\uFEFFalice" would read as "alice".
    const join = {
      type: 'join',
      rid: 1,
      room: new Uint8Array(16),
      key: new Uint8Array(32),
      proof: new Uint8Array(64),
    } as const;
    const raw = decodeOne(encodeFrame({ ...join, nick: '\uFEFFalice' }));
    expect(hex(raw.subarray(1 + 4 + 16, 1 + 4 + 16 + 4))).toBe('08efbbbf');
    expect(parseClientFrame(raw)).toMatchObject({ type: 'join', nick: '\uFEFFalice' });
    const hello = decodeOne(encodeFrame({ type: 'hello', version: 1, agent: '\uFEFF\uFEFFx' }));
    expect(parseClientFrame(hello)).toMatchObject({ agent: '\uFEFF\uFEFFx' });
  });

  it('refuses to encode a field too long for its length prefix', () => {
    const room = new Uint8Array(16);
    const join = { type: 'join', rid: 1, room, key: new Uint8Array(32), proof: new Uint8Array(64) } as const;
    // 256 bytes would go out with a length byte of 0 and the decoder would misread the rest.
    expect(() => encodeFrame({ ...join, nick: 'x'.repeat(256) })).toThrow(RangeError);
    expect(encodeFrame({ ...join, nick: 'x'.repeat(255) }).length).toBe(4 + 1 + 4 + 16 + 1 + 255 + 32 + 64);
    expect(() => encodeFrame({ type: 'error', rid: 0, code: 1, fatal: false, message: 'e'.repeat(0x10000) })).toThrow(
      RangeError,
    );
  });

  it('throws on a frame written short of, or past, its planned size', () => {
    // Integers past the end would be dropped silently by the typed array.
    expect(() => new Writer(3).u32(1).end()).toThrow(/planned as 3 bytes, 4 written/);
    expect(() => new Writer(5).u16(1).end()).toThrow(/planned as 5 bytes, 2 written/);
    expect(Array.from(new Writer(6).u16(0x0102).u32(0x03040506).end())).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('rejects sequence numbers beyond 2^53', () => {
    const raw = decodeOne(encodeFrame({ type: 'ack', rid: 1, room: new Uint8Array(16), seq: 1, ts: 1 })).slice();
    raw[1 + 4 + 16] = 0xff; // high byte of seq
    expect(codeOf(() => parseServerFrame(raw))).toBe('BAD_FRAME');
  });

  it('names every error code, and unknown ones', () => {
    for (const [name, code] of Object.entries(ErrorCode)) expect(errorCodeName(code)).toBe(name);
    expect(errorCodeName(999)).toBe('UNKNOWN_999');
    expect(new Set(Object.values(ErrorCode)).size).toBe(Object.keys(ErrorCode).length);
  });
});
