import type { Socket } from 'node:net';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { newIdentity, signJoinProof } from '../../../src/crypto/index.js';
import {
  encodeFrame,
  ErrorCode,
  errorCodeName,
  FrameDecoder,
  FrameType,
  joinProofMessage,
  LeaveReason,
  parseServerFrame,
} from '../../../src/protocol/index.js';
import type { ServerFrame } from '../../../src/protocol/index.js';
import { DEFAULT_LIMITS } from '../../../src/server/index.js';
import { NoHistory } from '../../../src/server/no-history.js';
import { Relay } from '../../../src/server/relay.js';
import type { Connection } from '../../../src/server/connection.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { ROOMY_LIMITS } from '../../helpers/net.js';

// The relay driven directly, with sockets that only record: what happens in one
// event-loop turn is exactly what the test feeds before it lets the turn end.

/** What a Connection uses of its socket, recording what is written. */
class FakeSocket {
  readonly remoteAddress = '127.0.0.1';
  readonly remotePort = 40000;
  /** What the stream would hold, unsent: set by a test. */
  writableLength = 0;
  writable = true;
  destroyed = false;
  ended = false;
  private readonly decoder = new FrameDecoder();
  readonly frames: ServerFrame[] = [];
  write(buf: Uint8Array): boolean {
    for (const raw of this.decoder.push(buf)) this.frames.push(parseServerFrame(raw));
    return true;
  }
  cork(): void {}
  uncork(): void {}
  /** Reading stopped (a connection ended, or fell behind). */
  paused = false;
  writableEnded = false;
  pause(): this {
    this.paused = true;
    return this;
  }
  isPaused(): boolean {
    return this.paused;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  end(): void {
    this.ended = true;
    this.writableEnded = true;
    this.writable = false;
  }
  private readonly onClose: (() => void)[] = [];
  readonly onDrain: (() => void)[] = [];
  off(_event: 'drain', fn: () => void): this {
    const i = this.onDrain.indexOf(fn);
    if (i >= 0) this.onDrain.splice(i, 1);
    return this;
  }
  /** 'close' (the linger timer's cancel; destroy() emits it) and 'drain' (reading again, after falling behind). */
  once(event: 'close' | 'drain', fn: () => void): this {
    (event === 'close' ? this.onClose : this.onDrain).push(fn);
    return this;
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const fn of this.onClose.splice(0)) fn();
  }
}

/** Lets the turn end: the relay's flush runs in a setImmediate. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function relay(clock = new FakeClock()): Relay {
  const random = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));
  return new Relay({ ...DEFAULT_LIMITS, ...ROOMY_LIMITS }, clock, pino({ level: 'silent' }), random, new NoHistory());
}

async function joined(r: Relay, room: Uint8Array, nick: string): Promise<{ conn: Connection; socket: FakeSocket }> {
  const socket = new FakeSocket();
  const conn = r.open(socket as unknown as Socket);
  const id = newIdentity();
  r.receive(conn, encodeFrame({ type: 'hello', version: 1, agent: 'test' }));
  const proof = signJoinProof(id, joinProofMessage(conn.challenge, room, nick));
  r.receive(conn, encodeFrame({ type: 'join', rid: 1, room, nick, key: id.publicKey, proof }));
  await turn();
  expect(socket.frames.map((f) => f.type)).toContain('joined');
  return { conn, socket };
}

/**
 * Puts `count` more members in the room `first` is in, as that many JOINs
 * would leave it (without the n² notices between them): 24-byte nicks, the
 * longest, one key, and sockets that only record.
 */
function fillRoom(r: Relay, first: Connection, count: number): void {
  const open = first.memberships[0]?.room;
  if (open === undefined) throw new Error('no room');
  const key = new Uint8Array(32).fill(1);
  for (let i = 1; i <= count; i++) {
    const conn = r.open(new FakeSocket() as unknown as Socket);
    const nick = `m${String(i).padStart(23, '0')}`;
    const m = { conn, room: open, nick, nickBytes: Buffer.from(nick), key };
    open.members.push(m);
    conn.memberships.push(m);
  }
}

/** A relay with Alice and Carol in one room, and how many frames each has had so far. */
async function aliceAndCarol(): Promise<{
  r: Relay;
  room: Uint8Array;
  a: Awaited<ReturnType<typeof joined>>;
  c: Awaited<ReturnType<typeof joined>>;
  a0: number;
  c0: number;
}> {
  const r = relay();
  const room = new Uint8Array(16).fill(7);
  const a = await joined(r, room, 'alice');
  const c = await joined(r, room, 'carol');
  return { r, room, a, c, a0: a.socket.frames.length, c0: c.socket.frames.length };
}

const label = (f: ServerFrame): string =>
  f.type === 'ack'
    ? `ACK ${f.rid} seq=${f.seq}`
    : f.type === 'deliver'
      ? `DELIVER seq=${f.seq}`
      : f.type === 'member-left'
        ? `MEMBER_LEFT ${f.reason}`
        : f.type === 'error'
          ? `ERROR ${errorCodeName(f.code)}`
          : f.type.toUpperCase();

describe('Relay, one turn', () => {
  it('a SEND and the peer’s end of stream in the same turn: the ACK goes out before the server ends its side', async () => {
    const { r, room, a, c, a0, c0 } = await aliceAndCarol();
    r.receive(
      a.conn,
      encodeFrame({ type: 'send', rid: 2, room, mid: new Uint8Array(16).fill(1), body: new Uint8Array([1]) }),
    );
    r.peerEnded(a.conn);
    expect(a.socket.ended).toBe(false); // not before the turn's flush
    await turn();
    await turn(); // the others hear of the leave in the flush after
    expect(a.socket.frames.slice(a0).map(label)).toEqual(['ACK 2 seq=1']);
    expect(a.socket.ended).toBe(true);
    expect(c.socket.frames.slice(c0).map(label)).toEqual(['DELIVER seq=1', `MEMBER_LEFT ${LeaveReason.LEFT}`]);
  });

  it('a dropped connection reads nothing more, and its ERROR follows the ACKs of the turn', async () => {
    const { r, room, a, c, a0 } = await aliceAndCarol();
    const send = (rid: number): Uint8Array =>
      encodeFrame({ type: 'send', rid, room, mid: new Uint8Array(16).fill(rid), body: new Uint8Array([rid]) });
    r.receive(a.conn, send(2));
    r.drop(a.conn, 'INTERNAL', 'test');
    expect(a.socket.paused).toBe(true); // what it sends next stays in the kernel
    r.receive(a.conn, send(3)); // after the drop: ignored
    await turn();
    await turn();
    expect(a.socket.frames.slice(a0).map(label)).toEqual(['ACK 2 seq=1', 'ERROR INTERNAL']);
    expect(c.socket.frames.filter((f) => f.type === 'deliver')).toHaveLength(1);
  });
});

describe('Relay, the send queue', () => {
  const cap = DEFAULT_LIMITS.sendQueueBytes;
  const send = (room: Uint8Array, rid: number): Uint8Array =>
    encodeFrame({ type: 'send', rid, room, mid: new Uint8Array(16).fill(rid), body: new Uint8Array([rid]) });

  it('a reader past the cap for a moment (a burst) is kept; past it at two sweeps in a row, dropped with SENDQ_EXCEEDED', async () => {
    const { r, room, a, c, c0 } = await aliceAndCarol();
    c.socket.writableLength = cap * 2; // a burst its kernel has not taken yet
    r.sweep();
    c.socket.writableLength = 0; // it read it
    r.sweep();
    c.socket.writableLength = cap * 2;
    r.sweep();
    r.receive(a.conn, send(room, 2));
    await turn();
    expect(c.socket.frames.slice(c0).map(label)).toEqual(['DELIVER seq=1']);
    r.sweep(); // still past it: behind, not a burst
    await turn();
    expect(c.socket.frames.slice(c0).map(label)).toEqual(['DELIVER seq=1', 'ERROR SENDQ_EXCEEDED']);
    await turn();
    expect(a.socket.frames.map(label)).toContain(`MEMBER_LEFT ${LeaveReason.DISCONNECTED}`);
  });

  it("a reader past the cap is not read from until it has read what is queued: its requests' answers add nothing meanwhile", async () => {
    const { r, room, a, c, c0 } = await aliceAndCarol();
    c.socket.writableLength = cap + 1;
    r.receive(a.conn, send(room, 2));
    await turn();
    expect(c.socket.frames.slice(c0).map(label)).toEqual(['DELIVER seq=1']);
    expect(c.socket.paused).toBe(true);
    c.socket.writableLength = 0; // it read it all
    for (const fn of c.socket.onDrain.splice(0)) fn.call(c.socket);
    expect(c.socket.paused).toBe(false);
    // Back within the cap but never empty (a busy room), so no 'drain': the sweep reads it again.
    c.socket.writableLength = cap + 1;
    r.receive(a.conn, send(room, 3));
    await turn();
    expect(c.socket.paused).toBe(true);
    c.socket.writableLength = cap - 1;
    r.sweep();
    expect(c.socket.paused).toBe(false);
  });

  it('a reader resumed by sweeps again and again, never empty, keeps one drain listener, not one per pause', async () => {
    const { r, room, a, c } = await aliceAndCarol();
    for (let i = 0; i < 20; i++) {
      c.socket.writableLength = cap + 1;
      r.receive(a.conn, send(room, 10 + i));
      await turn();
      c.socket.writableLength = cap - 1;
      r.sweep();
    }
    // Before: 20 listeners (a real socket warns past 10).
    expect(c.socket.onDrain.length).toBeLessThanOrEqual(1);
    expect(c.socket.paused).toBe(false);
  });

  it("a LEAVE in the turn another member sends a burst: the room's messages to the leaver are not its answers, and it leaves cleanly", async () => {
    const { r, room, a, c, c0 } = await aliceAndCarol();
    for (let i = 0; i < 10; i++) {
      r.receive(
        a.conn,
        encodeFrame({
          type: 'send',
          rid: 10 + i,
          room,
          mid: new Uint8Array(16).fill(i + 1),
          body: new Uint8Array(60_000),
        }),
      );
    }
    r.receive(c.conn, encodeFrame({ type: 'leave', rid: 9, room }));
    await turn();
    await turn();
    const got = c.socket.frames.slice(c0).map(label);
    // Before: the ten DELIVERs (600 KB) counted as its answers, and it was dropped with SENDQ_EXCEEDED.
    expect(got).toEqual([...Array.from({ length: 10 }, (_, i) => `DELIVER seq=${i + 1}`), 'LEFT']);
    expect(r.stats.dropped['SENDQ_EXCEEDED']).toBeUndefined();
  });

  it('two JOINs of rooms of 5,000 in one packet (a client rejoining) are both answered; the lists are not counted as its answers', async () => {
    const r = relay();
    const rooms = [new Uint8Array(16).fill(31), new Uint8Array(16).fill(32)];
    for (const [k, room] of rooms.entries()) {
      const first = await joined(r, room, `first${k}`);
      fillRoom(r, first.conn, 4999);
    }
    const socket = new FakeSocket();
    const conn = r.open(socket as unknown as Socket);
    const id = newIdentity();
    r.receive(conn, encodeFrame({ type: 'hello', version: 1, agent: 'test' }));
    const joins = rooms.map((room, i) =>
      encodeFrame({
        type: 'join',
        rid: 5 + i,
        room,
        nick: 'newcomer',
        key: id.publicKey,
        proof: signJoinProof(id, joinProofMessage(conn.challenge, room, 'newcomer')),
      }),
    );
    r.receive(conn, Buffer.concat(joins));
    await turn();
    await turn();
    // Before: 'JOINED', 'JOINED', 'ERROR SENDQ_EXCEEDED' (the two lists, 570 KB, against one allowance).
    expect(socket.frames.filter((f) => f.type !== 'member-list').map(label)).toEqual(['WELCOME', 'JOINED', 'JOINED']);
  });

  it('JOINs over the join rate spend the budget of frames that carry no message: sent for ever, they end the connection', async () => {
    const r = new Relay(
      { ...DEFAULT_LIMITS },
      new FakeClock(),
      pino({ level: 'silent' }),
      (n) => crypto.getRandomValues(new Uint8Array(n)),
      new NoHistory(),
    );
    const socket = new FakeSocket();
    const conn = r.open(socket as unknown as Socket);
    r.receive(conn, encodeFrame({ type: 'hello', version: 1, agent: 'test' }));
    const id = newIdentity();
    const room = new Uint8Array(16).fill(3);
    const bad = encodeFrame({ type: 'join', rid: 1, room, nick: 'x', key: id.publicKey, proof: new Uint8Array(64) });
    r.receive(conn, Buffer.concat(Array.from({ length: 2000 }, () => bad)));
    await turn();
    const errors = socket.frames.filter((f) => f.type === 'error');
    // 20 within the join rate (a bad proof each), 40 over it, then dropped. Before: 2,000 answers, and on for ever.
    expect(errors.map(label).slice(0, 20)).toEqual(Array.from({ length: 20 }, () => 'ERROR BAD_JOIN_PROOF'));
    expect(errors).toHaveLength(61);
    const last = errors.at(-1);
    expect(last?.type === 'error' && last.fatal && errorCodeName(last.code)).toBe('RATE_LIMITED');
  });

  it('a reader past four times the cap is dropped at the next write, without waiting for a sweep', async () => {
    const { r, room, a, c, c0 } = await aliceAndCarol();
    c.socket.writableLength = cap * 4 + 1;
    r.receive(a.conn, send(room, 2));
    await turn();
    await turn();
    expect(c.socket.frames.slice(c0).map(label)).toEqual(['ERROR SENDQ_EXCEEDED']);
  });
});

describe('Relay, frames across reads', () => {
  it('times each frame from its own first byte, when every read ends inside the next frame', async () => {
    const clock = new FakeClock();
    const r = relay(clock);
    const socket = new FakeSocket();
    const conn = r.open(socket as unknown as Socket);
    r.receive(conn, encodeFrame({ type: 'hello', version: 1, agent: 'test' }));
    const ping = (token: number): Uint8Array => encodeFrame({ type: 'ping', token });
    // Each read finishes one PING and begins the next: every frame takes 1 s
    // to arrive, but none of the reads ends on a frame boundary.
    r.receive(conn, ping(0).subarray(0, 5));
    for (let token = 1; token <= 40; token++) {
      clock.advance(1_000);
      r.receive(conn, new Uint8Array([...ping(token - 1).subarray(5), ...ping(token).subarray(0, 5)]));
      r.sweep();
      await turn();
    }
    expect(DEFAULT_LIMITS.frameTimeoutMs).toBeLessThan(40_000);
    expect(socket.frames.filter((f) => f.type === 'error').map(label)).toEqual([]);
    expect(socket.frames.filter((f) => f.type === 'pong')).toHaveLength(40);
    // A frame that does take too long still ends the connection.
    clock.advance(DEFAULT_LIMITS.frameTimeoutMs);
    r.sweep();
    await turn();
    expect(socket.frames.map(label).at(-1)).toBe('ERROR READ_TIMEOUT');
    expect(socket.ended).toBe(true);
  });
});

describe('Relay, HELLO on an open session', () => {
  it('refuses a second HELLO of any version or body with a non-fatal BAD_FRAME, rid 0, and carries on', async () => {
    const { r, room, a, c, a0 } = await aliceAndCarol();
    const v2 = encodeFrame({ type: 'hello', version: 2, agent: 'future' });
    const v1 = encodeFrame({ type: 'hello', version: 1, agent: 'again' });
    const bare = new Uint8Array([0, 0, 0, 1, FrameType.HELLO]); // no magic, no version
    r.receive(a.conn, new Uint8Array([...v2, ...v1, ...bare]));
    r.receive(
      a.conn,
      encodeFrame({ type: 'send', rid: 2, room, mid: new Uint8Array(16).fill(1), body: new Uint8Array([1]) }),
    );
    await turn();
    const errors = a.socket.frames.slice(a0).filter((f) => f.type === 'error');
    expect(errors).toHaveLength(3);
    for (const e of errors) expect(e).toMatchObject({ rid: 0, code: ErrorCode.BAD_FRAME, fatal: false });
    expect(a.socket.frames.slice(a0).map(label).at(-1)).toBe('ACK 2 seq=1');
    expect(a.socket.ended).toBe(false);
    expect(c.socket.frames.some((f) => f.type === 'deliver')).toBe(true);
  });

  it('still ends a session whose first HELLO names another version', () => {
    const r = relay();
    const socket = new FakeSocket();
    const conn = r.open(socket as unknown as Socket);
    r.receive(conn, encodeFrame({ type: 'hello', version: 2, agent: 'future' }));
    expect(r.stats.dropped.UNSUPPORTED_VERSION).toBe(1);
  });
});

describe('Relay, nicks', () => {
  it('refuses a JOIN whose nick starts with a byte order mark with BAD_NICK', async () => {
    const r = relay();
    const socket = new FakeSocket();
    const conn = r.open(socket as unknown as Socket);
    r.receive(conn, encodeFrame({ type: 'hello', version: 1, agent: 'test' }));
    const room = new Uint8Array(16).fill(9);
    const id = newIdentity();
    // Signed over the nick without the mark: what the server judged when it dropped the mark.
    const proof = signJoinProof(id, joinProofMessage(conn.challenge, room, 'alice'));
    r.receive(conn, encodeFrame({ type: 'join', rid: 5, room, nick: '\uFEFFalice', key: id.publicKey, proof }));
    await turn();
    expect(socket.frames.map(label)).toEqual(['WELCOME', 'ERROR BAD_NICK']);
    expect(socket.frames[1]).toMatchObject({ rid: 5, fatal: false });
    expect(r.rooms.size).toBe(0);
  });
});

/** A peer whose kernel buffer starts small: what is written stays in the stream until `read`. */
class SlowStartSocket extends FakeSocket {
  override writableLength = 0;
  override write(buf: Uint8Array): boolean {
    this.writableLength += buf.length;
    return super.write(buf);
  }
  read(): void {
    this.writableLength = 0;
  }
}

describe('Relay, joining a big room', () => {
  it('the member list of 9,999 (570 KB, over the 256 KiB send queue) reaches the joiner, who is not cut off for it', async () => {
    const r = new Relay(
      { ...DEFAULT_LIMITS, ...ROOMY_LIMITS, sendQueueBytes: DEFAULT_LIMITS.sendQueueBytes },
      new FakeClock(),
      pino({ level: 'silent' }),
      (n) => crypto.getRandomValues(new Uint8Array(n)),
      new NoHistory(),
    );
    const room = new Uint8Array(16).fill(21);
    const first = await joined(r, room, 'first');
    fillRoom(r, first.conn, 9998);
    const socket = new SlowStartSocket();
    const conn = r.open(socket as unknown as Socket);
    const id = newIdentity();
    r.receive(conn, encodeFrame({ type: 'hello', version: 1, agent: 'test' }));
    const proof = signJoinProof(id, joinProofMessage(conn.challenge, room, 'newcomer'));
    r.receive(conn, encodeFrame({ type: 'join', rid: 5, room, nick: 'newcomer', key: id.publicKey, proof }));
    await turn();
    expect(socket.writableLength).toBeGreaterThan(DEFAULT_LIMITS.sendQueueBytes);
    expect(r.stats.dropped).toEqual({});
    const listed = socket.frames.flatMap((f) =>
      f.type === 'member-list' || f.type === 'joined' ? f.members.map((m) => m.nick) : [],
    );
    expect(listed).toHaveLength(9999);
    // It reads the list, and then hears the room like anyone else.
    socket.read();
    r.receive(
      first.conn,
      encodeFrame({ type: 'send', rid: 2, room, mid: new Uint8Array(16).fill(2), body: new Uint8Array(10) }),
    );
    await turn();
    expect(socket.frames.at(-1)?.type).toBe('deliver');
    expect(r.stats.dropped).toEqual({});
  });
});
