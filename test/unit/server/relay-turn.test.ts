import type { Socket } from 'node:net';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { newIdentity, signJoinProof } from '../../../src/crypto/index.js';
import {
  encodeFrame,
  errorCodeName,
  FrameDecoder,
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
  readonly writableLength = 0;
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
  end(): void {
    this.ended = true;
    this.writable = false;
  }
  private readonly onClose: (() => void)[] = [];
  /** Only 'close' is listened for (the linger timer's cancel); destroy() emits it. */
  once(_event: 'close', fn: () => void): this {
    this.onClose.push(fn);
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

function relay(): Relay {
  const random = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));
  return new Relay(
    { ...DEFAULT_LIMITS, ...ROOMY_LIMITS },
    new FakeClock(),
    pino({ level: 'silent' }),
    random,
    new NoHistory(),
  );
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
    r.receive(a.conn, send(3)); // after the drop: ignored
    await turn();
    await turn();
    expect(a.socket.frames.slice(a0).map(label)).toEqual(['ACK 2 seq=1', 'ERROR INTERNAL']);
    expect(c.socket.frames.filter((f) => f.type === 'deliver')).toHaveLength(1);
  });
});
