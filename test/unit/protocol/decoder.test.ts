import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  FrameDecoder,
  MAX_FRAME,
  parseClientFrame,
  parseServerFrame,
  ProtocolError,
} from '../../../src/protocol/index.js';
import { clientFrames, serverFrames } from './frames.fixture.js';

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Copies frames out of the decoder's views so later pushes can't alter them. */
function collect(decoder: FrameDecoder, chunks: Uint8Array[]): Uint8Array[] {
  return chunks.flatMap((c) => decoder.push(c).map((f) => f.slice()));
}

const stream = concat(clientFrames.map(encodeFrame));
const expected = clientFrames.map((f) => encodeFrame(f).subarray(4));

describe('FrameDecoder', () => {
  it('decodes a stream fed one byte at a time', () => {
    const d = new FrameDecoder();
    const chunks = Array.from(stream, (b) => new Uint8Array([b]));
    expect(collect(d, chunks)).toEqual(expected);
    expect(d.midFrame).toBe(false);
  });

  it('decodes a stream split at every possible point', () => {
    for (let i = 0; i <= stream.length; i++) {
      const d = new FrameDecoder();
      const got = collect(d, [stream.subarray(0, i), stream.subarray(i)]);
      expect(got, `split at ${i}`).toEqual(expected);
    }
  });

  it('decodes a max-size frame split at every point of its header and edges', () => {
    const frame = encodeFrame({
      type: 'send',
      rid: 1,
      room: new Uint8Array(16),
      mid: new Uint8Array(16),
      body: new Uint8Array(MAX_FRAME - 1 - 4 - 32).fill(7),
    });
    expect(frame.length).toBe(4 + MAX_FRAME);
    for (const i of [0, 1, 2, 3, 4, 5, 1000, frame.length - 1, frame.length]) {
      const d = new FrameDecoder();
      const got = collect(d, [frame.subarray(0, i), frame.subarray(i)]);
      expect(got).toEqual([frame.subarray(4)]);
    }
  });

  it('decodes any chunking of any sequence of frames (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: stream.length }), { maxLength: 40 }), (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const chunks: Uint8Array[] = [];
        let prev = 0;
        for (const p of points) {
          chunks.push(stream.subarray(prev, p));
          prev = p;
        }
        chunks.push(stream.subarray(prev));
        expect(collect(new FrameDecoder(), chunks)).toEqual(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('returns whole frames inside a chunk as views, without copying', () => {
    const d = new FrameDecoder();
    const frames = d.push(stream);
    expect(frames[0]?.buffer).toBe(stream.buffer);
  });

  it('rejects an oversized length from the 4 header bytes alone, before any allocation', () => {
    const d = new FrameDecoder();
    const header = new Uint8Array([0x40, 0, 0, 0]); // 1 GiB
    expect(() => d.push(header)).toThrow(expect.objectContaining({ code: 'FRAME_TOO_LARGE' }) as Error);
  });

  it('rejects a length just over the limit and accepts the limit itself', () => {
    const over = new Uint8Array(4);
    new DataView(over.buffer).setUint32(0, MAX_FRAME + 1);
    expect(() => new FrameDecoder().push(over)).toThrow(ProtocolError);
    const at = new Uint8Array(4);
    new DataView(at.buffer).setUint32(0, MAX_FRAME);
    const d = new FrameDecoder();
    expect(d.push(at)).toEqual([]);
    expect(d.midFrame).toBe(true);
  });

  it('names the type of the unfinished frame it holds once its type byte has come, and only then', () => {
    const ping = encodeFrame({ type: 'ping', token: 7 });
    const pong = encodeFrame({ type: 'pong', token: 7 });
    const d = new FrameDecoder();
    expect(d.push(ping.subarray(0, 4))).toEqual([]); // the length prefix alone
    expect(d.partialType).toBeNull();
    expect(d.push(ping.subarray(4, 6))).toEqual([]);
    expect(d.partialType).toBe(0x10);
    expect(d.push(concat([ping.subarray(6), pong.subarray(0, 5)]))).toHaveLength(1);
    expect(d.partialType).toBe(0x11);
    expect(d.push(pong.subarray(5))).toHaveLength(1);
    expect(d.partialType).toBeNull();
  });

  it('honours a smaller configured limit', () => {
    const frame = encodeFrame({ type: 'ping', token: 1 }); // length 5
    expect(() => new FrameDecoder(4).push(frame)).toThrow(
      expect.objectContaining({ code: 'FRAME_TOO_LARGE' }) as Error,
    );
    expect(new FrameDecoder(5).push(frame)).toHaveLength(1);
  });

  it('rejects a zero length', () => {
    expect(() => new FrameDecoder().push(new Uint8Array(4))).toThrow(
      expect.objectContaining({ code: 'FRAME_TOO_LARGE' }) as Error,
    );
  });

  it('returns the whole frames before a bad length prefix, then holds its error', () => {
    const d = new FrameDecoder();
    const first = encodeFrame(clientFrames[0] as (typeof clientFrames)[number]);
    const frames = d.push(concat([first, new Uint8Array(4), first]));
    expect(frames.map((f) => f.slice())).toEqual([first.subarray(4)]);
    expect(d.error).toMatchObject({ code: 'FRAME_TOO_LARGE' });
    expect(() => d.push(first)).toThrow(expect.objectContaining({ code: 'BAD_FRAME' }) as Error);
    expect(new FrameDecoder().error).toBeNull();
  });

  it('reports a stream that ends mid-frame as TRUNCATED_FRAME', () => {
    const frame = encodeFrame({ type: 'ping', token: 1 });
    for (let i = 1; i < frame.length; i++) {
      const d = new FrameDecoder();
      d.push(frame.subarray(0, i));
      expect(() => d.finish(), `cut at ${i}`).toThrow(expect.objectContaining({ code: 'TRUNCATED_FRAME' }) as Error);
    }
    const d = new FrameDecoder();
    d.push(frame);
    expect(() => d.finish()).not.toThrow();
  });

  it('turns random bytes into frames or a ProtocolError, never another exception', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), fc.boolean(), (chunks, asServer) => {
        const d = new FrameDecoder();
        try {
          for (const c of chunks) {
            for (const f of d.push(c)) {
              if (asServer) parseServerFrame(f);
              else parseClientFrame(f);
            }
          }
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
        }
      }),
      { numRuns: 10_000 },
    );
  });

  it('turns random payloads behind a valid type byte into frames or a ProtocolError', () => {
    const types = [0x01, 0x02, 0x03, 0x04, 0x10, 0x11, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0xff];
    fc.assert(
      fc.property(fc.constantFrom(...types), fc.uint8Array({ maxLength: 80 }), (type, payload) => {
        const frame = concat([new Uint8Array([type]), payload]);
        for (const parse of [parseClientFrame, parseServerFrame]) {
          try {
            parse(frame);
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw err;
          }
        }
      }),
      { numRuns: 10_000 },
    );
  });

  it('decodes server frames the same way', () => {
    const s = concat(serverFrames.map(encodeFrame));
    const got = collect(
      new FrameDecoder(),
      Array.from(s, (b) => new Uint8Array([b])),
    ).map(parseServerFrame);
    expect(got).toEqual(serverFrames);
  });
});
