import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../../src/protocol/index.js';
import { Batcher, flushEach } from '../../../src/server/batcher.js';
import { Connection } from '../../../src/server/connection.js';

type FakeSocket = Socket & { written: number; drain(): void };

/** A socket whose peer reads nothing until `drain`: everything written stays in its buffer. */
function stuckSocket(): FakeSocket {
  const s = {
    written: 0,
    writableLength: 0,
    destroyed: false,
    remoteAddress: '127.0.0.1',
    remotePort: 1,
    write(buf: Uint8Array): boolean {
      s.written += buf.length;
      s.writableLength += buf.length;
      return false;
    },
    cork(): void {},
    uncork(): void {},
    paused: false,
    writableEnded: false,
    onDrain: [] as (() => void)[],
    isPaused(): boolean {
      return s.paused;
    },
    pause(): void {
      s.paused = true;
    },
    resume(): void {
      s.paused = false;
    },
    once(_event: 'drain', fn: (this: unknown) => void): void {
      s.onDrain.push(fn);
    },
    /** The peer read everything: the stream is empty and says so. */
    drain(): void {
      s.writableLength = 0;
      for (const fn of s.onDrain.splice(0)) fn.call(s);
    },
  };
  return s as unknown as FakeSocket;
}

/** A connection on `socket` with a send-queue cap of 256 KiB, its batcher, and the connections it reported overflowing. */
function connectionOn(socket: FakeSocket): {
  conn: Connection;
  batcher: Batcher<Connection>;
  overflowed: Connection[];
} {
  const overflowed: Connection[] = [];
  const batcher = new Batcher<Connection>(
    () => {},
    () => {},
    flushEach,
  );
  const conn = new Connection(
    1,
    socket,
    0,
    65536,
    256 * 1024,
    batcher,
    (c) => overflowed.push(c),
    new Uint8Array(32),
    new TokenBucket(10, 200, 0),
    -1,
    '127.0.0.1',
  );
  return { conn, batcher, overflowed };
}

describe('Connection send queue', () => {
  it('stops queueing for a peer that does not read once its buffer passes four times the cap, whatever is sent after; past the cap it is behind', () => {
    const cap = 256 * 1024;
    const frame = new Uint8Array(8000);
    const socket = stuckSocket();
    const { conn, batcher, overflowed } = connectionOn(socket);
    let accepted = 0;
    let behindAt = -1;
    // 2,000 turns of 3 frames each: 48 MB offered to a peer that takes nothing.
    for (let turn = 0; turn < 2000; turn++) {
      for (let i = 0; i < 3; i++) if (conn.enqueue(frame)) accepted++;
      batcher.flush();
      if (behindAt < 0 && conn.behind()) behindAt = socket.writableLength;
    }
    // Past the cap it is behind (the sweep drops it if it stays so)...
    expect(behindAt).toBeGreaterThan(cap);
    expect(behindAt).toBeLessThanOrEqual(cap + 3 * frame.length);
    // ...and past four times the cap it is dropped at once.
    expect(overflowed).toEqual([conn]);
    expect(conn.overflowed).toBe(true);
    // What the connection holds is bounded by that plus one turn's output, not by what was offered.
    expect(socket.writableLength).toBeGreaterThan(4 * cap);
    expect(socket.writableLength).toBeLessThanOrEqual(4 * cap + 3 * frame.length);
    expect(accepted * frame.length).toBe(socket.written);
    expect(conn.enqueue(frame)).toBe(false);
  });

  it('counts what is queued this turn and what the stream still holds', () => {
    const socket = stuckSocket();
    const { conn, batcher } = connectionOn(socket);
    expect(conn.queuedBytes()).toBe(0);
    conn.enqueue(new Uint8Array(100));
    conn.enqueue(new Uint8Array(50));
    expect(conn.queuedBytes()).toBe(150); // this turn's, not yet written
    batcher.flush();
    expect(conn.queuedBytes()).toBe(150); // now in the stream, which the peer has not read
    socket.drain();
    expect(conn.queuedBytes()).toBe(0);
  });

  it('keeps queueing for a peer whose buffer drains', () => {
    const socket = stuckSocket();
    const { conn, batcher, overflowed } = connectionOn(socket);
    for (let turn = 0; turn < 2000; turn++) {
      expect(conn.enqueue(new Uint8Array(8000))).toBe(true);
      batcher.flush();
      socket.drain(); // the kernel took it all
    }
    expect(overflowed).toEqual([]);
    expect(socket.written).toBe(2000 * 8000);
  });
  it("lets a JOIN's answer pass the cap once: a joiner who reads it keeps its connection, one who does not is cut after it", () => {
    const cap = 256 * 1024;
    const answer = 570_000; // the member list of a room of 10,000, 24-byte nicks
    const live = new Uint8Array(8000);
    const reads = stuckSocket();
    const reader = connectionOn(reads);
    expect(reader.conn.enqueue(new Uint8Array(answer))).toBe(true);
    reader.conn.allowJoinAnswer(answer);
    reader.batcher.flush();
    expect(reader.overflowed).toEqual([]); // held past the cap, within the allowance
    expect(reader.conn.behind()).toBe(false);
    expect(reader.conn.enqueue(live)).toBe(true); // the room goes on while it reads
    reader.batcher.flush();
    reads.drain();
    expect(reader.conn.enqueue(live)).toBe(true); // back under the cap: the allowance is spent
    reader.batcher.flush();
    let behindAt = -1;
    for (let turn = 0; turn < 200; turn++) {
      reader.conn.enqueue(live);
      reader.batcher.flush();
      if (behindAt < 0 && reader.conn.behind()) behindAt = reads.writableLength;
    }
    // Stuck again later, it is behind at the cap itself, and cut at four times it, not plus the list.
    expect(behindAt).toBeLessThanOrEqual(cap + live.length);
    expect(reader.overflowed).toEqual([reader.conn]);
    expect(reads.writableLength).toBeLessThanOrEqual(4 * cap + live.length);

    const stuck = stuckSocket();
    const idle = connectionOn(stuck);
    // Two big rooms joined in a row: the larger allowance stands, not their sum.
    idle.conn.enqueue(new Uint8Array(answer));
    idle.conn.allowJoinAnswer(answer);
    idle.batcher.flush();
    idle.conn.enqueue(new Uint8Array(answer));
    idle.conn.allowJoinAnswer(answer);
    idle.batcher.flush();
    expect(idle.conn.behind()).toBe(true); // 1.14 MB: past the cap and one list
    expect(idle.overflowed).toEqual([]); // within four times the cap and one list
    idle.conn.enqueue(new Uint8Array(answer));
    idle.batcher.flush();
    expect(idle.overflowed).toEqual([idle.conn]); // past it: with the two lists' sum it would not be
    expect(stuck.writableLength).toBeLessThanOrEqual(4 * cap + 3 * answer);
    expect(idle.conn.enqueue(live)).toBe(false);
  });
});
