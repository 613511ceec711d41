import { describe, expect, it } from 'vitest';
import { encodeFrame, errorCodeName, LeaveReason } from '../../src/protocol/index.js';
import type { ServerFrame } from '../../src/protocol/index.js';
import { room, text } from '../helpers/clients.js';
import { newIdentity } from '../../src/crypto/index.js';
import { joinProof, RawPeer, rawJoin, until } from '../helpers/net.js';
import { testScope } from '../helpers/scope.js';

// Frames that reach the server in one read, or from several connections read in
// one event-loop turn, are handled in order, but the turn's SENDs are committed
// and relayed together at its end. These check that what a connection ends
// with (a fatal error, its own end of stream) waits for that, and that nothing
// is committed in the middle of a turn. The writes in each test are made in one
// synchronous block, so the server reads them all in the same turn.

const { cleanup, server } = testScope();

/** A frame of an unknown type: a fatal error, after whatever came before it. */
const UNKNOWN = new Uint8Array([0, 0, 0, 1, 0x7f]);
/** A length prefix of 0: the decoder's fatal error, after the whole frames before it. */
const ZERO_LENGTH = new Uint8Array(4);

async function peer(port: number, r: Uint8Array, nick: string): Promise<RawPeer> {
  const p = await RawPeer.open(port);
  cleanup.push(() => p.destroy());
  await rawJoin(p, r, nick);
  return p;
}

const send = (rid: number, r: Uint8Array, body: string): Uint8Array =>
  encodeFrame({ type: 'send', rid, room: r, mid: crypto.getRandomValues(new Uint8Array(16)), body: text(body) });

/** A frame as a short label: `ACK 2 seq=1`, `DELIVER seq=1`, `ERROR UNKNOWN_FRAME_TYPE`... */
function label(f: ServerFrame): string {
  switch (f.type) {
    case 'ack':
      return `ACK ${f.rid} seq=${f.seq}`;
    case 'deliver':
      return `DELIVER seq=${f.seq}`;
    case 'history':
      return `HISTORY seq=${f.seq}`;
    case 'fetched':
      return `FETCHED latest=${f.latest}`;
    case 'member-left':
      return `MEMBER_LEFT ${f.reason}`;
    case 'left':
      return `LEFT ${f.rid}`;
    case 'error':
      return `ERROR ${errorCodeName(f.code)}${f.fatal ? ' fatal' : ''}`;
    default:
      return f.type.toUpperCase();
  }
}

const after = (p: RawPeer, from: number): string[] => p.frames.slice(from).map(label);

/** Alice and Carol in room `n` of a fresh server, and how many frames each has had so far. */
async function aliceAndCarol(n: number): Promise<{ r: Uint8Array; a: RawPeer; c: RawPeer; a0: number; c0: number }> {
  const s = await server();
  const r = room(n);
  const a = await peer(s.port, r, 'alice');
  const c = await peer(s.port, r, 'carol');
  return { r, a, c, a0: a.frames.length, c0: c.frames.length };
}

describe('one turn: a connection that ends', () => {
  it('dropped after its SENDs in the same read: ACKs, then the ERROR, and never its own messages back', async () => {
    const { r, a, c, a0, c0 } = await aliceAndCarol(1);
    a.write(Buffer.concat([send(2, r, 'one'), send(3, r, 'two'), UNKNOWN]));
    await until(() => a.closed && c.frames.length - c0 >= 3);
    expect(after(a, a0)).toEqual(['ACK 2 seq=1', 'ACK 3 seq=2', 'ERROR UNKNOWN_FRAME_TYPE fatal']);
    expect(after(c, c0)).toEqual(['DELIVER seq=1', 'DELIVER seq=2', `MEMBER_LEFT ${LeaveReason.DISCONNECTED}`]);
  });

  it('dropped after SEND and LEAVE in the same read: its ACK, its LEFT, then the ERROR', async () => {
    const { r, a, c, a0, c0 } = await aliceAndCarol(2);
    a.write(Buffer.concat([send(2, r, 'one'), encodeFrame({ type: 'leave', rid: 3, room: r }), UNKNOWN]));
    await until(() => a.closed && c.frames.length - c0 >= 2);
    expect(after(a, a0)).toEqual(['ACK 2 seq=1', 'LEFT 3', 'ERROR UNKNOWN_FRAME_TYPE fatal']);
    expect(after(c, c0)).toEqual(['DELIVER seq=1', `MEMBER_LEFT ${LeaveReason.LEFT}`]);
  });

  // When the end of the stream is read in the same turn as the SEND is a matter of timing
  // here; test/unit/server/relay-turn.test.ts drives that turn exactly.
  it('a SEND followed by the end of the stream: the ACK goes out before the server closes', async () => {
    const { r, a, c, a0, c0 } = await aliceAndCarol(3);
    a.write(send(2, r, 'last words'));
    a.socket.end();
    await until(() => a.closed && c.frames.length - c0 >= 2);
    expect(after(a, a0)).toEqual(['ACK 2 seq=1']);
    expect(after(c, c0)).toEqual(['DELIVER seq=1', `MEMBER_LEFT ${LeaveReason.LEFT}`]);
  });

  it('a bad length prefix after whole frames in the same read: those frames are handled first', async () => {
    const s = await server();
    const r = room(4);
    const a = await peer(s.port, r, 'alice');
    const b = await peer(s.port, r, 'bob');
    const c = await peer(s.port, r, 'carol');
    const c0 = c.frames.length;
    const a0 = a.frames.length;
    a.write(Buffer.concat([send(2, r, 'before the bad prefix'), ZERO_LENGTH]));
    await until(() => a.closed);
    expect(after(a, a0)).toEqual(['ACK 2 seq=1', 'ERROR FRAME_TOO_LARGE fatal']);
    const b0 = b.frames.length;
    b.write(Buffer.concat([encodeFrame({ type: 'leave', rid: 3, room: r }), ZERO_LENGTH]));
    await until(() => b.closed && c.frames.length - c0 >= 3);
    expect(after(b, b0)).toEqual(['LEFT 3', 'ERROR FRAME_TOO_LARGE fatal']);
    // Bob left by his LEAVE (reason 0), not by being dropped.
    expect(after(c, c0)).toEqual([
      'DELIVER seq=1',
      `MEMBER_LEFT ${LeaveReason.DISCONNECTED}`,
      `MEMBER_LEFT ${LeaveReason.LEFT}`,
    ]);
  });
});

describe('one turn: a member that leaves', () => {
  it('is heard saying its last words before it is heard leaving, and gets its ACKs before its LEFT', async () => {
    const { r, a, c, a0, c0 } = await aliceAndCarol(7);
    a.write(Buffer.concat([send(2, r, 'one'), send(3, r, 'two'), encodeFrame({ type: 'leave', rid: 4, room: r })]));
    await until(() => a.frames.length - a0 >= 3 && c.frames.length - c0 >= 3);
    expect(after(a, a0)).toEqual(['ACK 2 seq=1', 'ACK 3 seq=2', 'LEFT 4']);
    expect(after(c, c0)).toEqual(['DELIVER seq=1', 'DELIVER seq=2', `MEMBER_LEFT ${LeaveReason.LEFT}`]);
  });

  it('commits only the room it leaves early: a FETCH in another room still gets no answer ahead of a message', async () => {
    const s = await server();
    const r = room(8);
    const elsewhere = room(9);
    const alice = newIdentity();
    const a = await RawPeer.open(s.port);
    cleanup.push(() => a.destroy());
    await rawJoin(a, r, 'alice', alice);
    const proof = await joinProof(a, alice, elsewhere, 'alice');
    a.write(encodeFrame({ type: 'join', rid: 3, room: elsewhere, nick: 'alice', key: alice.publicKey, proof }));
    await until(() => a.frames.filter((f) => f.type === 'joined').length === 2);
    const b = await peer(s.port, elsewhere, 'bob');
    const c = await peer(s.port, r, 'carol');
    const [a0, b0, c0] = [a.frames.length, b.frames.length, c.frames.length];
    // Bob's FETCH comes after Alice's leave in the turn; her message to his
    // room is committed at the turn's end, after the FETCH is answered.
    a.write(
      Buffer.concat([
        send(4, elsewhere, 'to bob'),
        send(5, r, 'to carol'),
        encodeFrame({ type: 'leave', rid: 6, room: r }),
      ]),
    );
    b.write(encodeFrame({ type: 'fetch', rid: 9, room: elsewhere, after: 0, limit: 100 }));
    await until(() => a.frames.length - a0 >= 3 && b.frames.length - b0 >= 2 && c.frames.length - c0 >= 2);
    expect(after(a, a0)).toEqual(['ACK 5 seq=1', 'LEFT 6', 'ACK 4 seq=1']);
    expect(after(c, c0)).toEqual(['DELIVER seq=1', `MEMBER_LEFT ${LeaveReason.LEFT}`]);
    expect(after(b, b0)).toEqual(['FETCHED latest=0', 'DELIVER seq=1']);
  });
});

describe('one turn: nothing else is committed in its middle', () => {
  it('a connection dropped in the turn does not put a FETCH answer ahead of a message it does not hold', async () => {
    const s = await server();
    const r = room(5);
    const elsewhere = room(6);
    const e = await peer(s.port, r, 'eve');
    const b = await peer(s.port, r, 'bob');
    const a = await peer(s.port, elsewhere, 'alice');
    const b0 = b.frames.length;
    // Eve's message waits for the end of the turn; Alice's drop comes before Bob's FETCH.
    e.write(send(2, r, 'from eve'));
    a.write(Buffer.concat([send(2, elsewhere, 'from alice'), UNKNOWN]));
    b.write(encodeFrame({ type: 'fetch', rid: 9, room: r, after: 0, limit: 100 }));
    await until(() => a.closed && b.frames.slice(b0).some((f) => f.type === 'deliver' || f.type === 'history'));
    await until(() => b.frames.slice(b0).some((f) => f.type === 'fetched'));
    const got = after(b, b0);
    // §4.9: DELIVERs before FETCHED are numbered at or below its `latest`, those after it above.
    expect(got).toEqual(['FETCHED latest=0', 'DELIVER seq=1']);
  });
});
