import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ClientError } from '../../src/client/index.js';
import { newIdentity } from '../../src/crypto/index.js';
import { expectBurstInOrder, member, recorder, room, text } from '../helpers/clients.js';
import { Link } from '../helpers/link.js';
import { testServer, until } from '../helpers/net.js';
import { testScope } from '../helpers/scope.js';
import { fanoutAddon } from '../../src/server/direct-write.js';

const { cleanup, server, track } = testScope();

describe('relay: rooms, fan-out, presence', () => {
  it('delivers each message to every other member of the room, never back to the sender', async () => {
    const s = await server();
    const r = room(1);
    const alice = track(await member(s.port, r, 'alice'));
    const bob = track(await member(s.port, r, 'bob'));
    const carol = track(await member(s.port, r, 'carol'));
    const elsewhere = track(await member(s.port, room(2), 'dave'));

    const a1 = await alice.client.send(r, text('hello from alice'));
    const b1 = await bob.client.send(r, text('hello from bob'));
    const c1 = await carol.client.send(r, text('hello from carol'));
    expect([a1.seq, b1.seq, c1.seq]).toEqual([1, 2, 3]);

    await until(
      () => alice.events.message.length === 2 && bob.events.message.length === 2 && carol.events.message.length === 2,
    );
    expect(alice.texts()).toEqual(['bob: hello from bob', 'carol: hello from carol']);
    expect(bob.texts()).toEqual(['alice: hello from alice', 'carol: hello from carol']);
    expect(carol.texts()).toEqual(['alice: hello from alice', 'bob: hello from bob']);
    expect(bob.events.message.map((m) => m.seq)).toEqual([1, 3]);
    expect(elsewhere.events.message).toEqual([]);
    expect(s.stats.deliveries).toBe(6);
  });

  it.each([
    ['the native fan-out with io_uring', true, true],
    ['the native fan-out with send()', true, false],
    ["Node's streams", false, false],
  ])(
    'keeps each sender’s order under a burst, with rising sequence numbers, writing through %s',
    async (_, native, ring) => {
      const s = await server({ nativeWrites: native, ioUring: ring });
      expect(s.nativeWrites).toBe(native);
      expect(s.ioUring).toBe(ring && fanoutAddon?.ringReady() === true);
      const r = room(3);
      const alice = track(await member(s.port, r, 'alice'));
      const bob = track(await member(s.port, r, 'bob'));
      await expectBurstInOrder(alice, 'alice', bob, r, 500, 'm');
    },
  );

  it('gives the member list on join and tells the others', async () => {
    const s = await server();
    const r = room(4);
    const alice = track(await member(s.port, r, 'alice'));
    expect(alice.joined.members).toEqual([]);
    const nicks = (m: { members: { nick: string }[] }): string[] => m.members.map((x) => x.nick);
    const bob = track(await member(s.port, r, 'bob'));
    expect(nicks(bob.joined)).toEqual(['alice']);
    expect(new Uint8Array(bob.joined.members[0]?.key ?? [])).toEqual(alice.client.identity.publicKey);
    const carol = track(await member(s.port, r, 'carol'));
    expect(nicks(carol.joined)).toEqual(['alice', 'bob']);
    await until(() => alice.events.join.length === 2 && bob.events.join.length === 1);
    expect(alice.events.join.map((j) => j.nick)).toEqual(['bob', 'carol']);
    expect(bob.events.join.map((j) => j.nick)).toEqual(['carol']);
    expect(carol.events.join).toEqual([]);
  });

  it('refuses a nick already in the room with NICK_TAKEN, ignoring case', async () => {
    const s = await server();
    const r = room(5);
    const identity = newIdentity();
    track(await member(s.port, r, 'bob', { identity }));
    // The same key on a second connection: the nick is in use in this room.
    for (const nick of ['bob', 'BOB', 'Bob']) {
      await expect(member(s.port, r, nick, { identity }).then((m) => track(m))).rejects.toMatchObject({
        code: 'NICK_TAKEN',
      });
    }
    // The same nick and key are fine in another room.
    const other = track(await member(s.port, room(6), 'bob', { identity }));
    expect(other.joined.nick).toBe('bob');
  });

  it('fails what was sent to a room while its join was under way, when the join is refused', async () => {
    const s = await server();
    const r = room(7);
    track(await member(s.port, r, 'bob'));
    const late = track(await recorder(s.port));
    const joining = late.client.join(r, 'bob');
    const sent = late.client.send(r, text('too early'));
    await expect(joining).rejects.toMatchObject({ code: 'NICK_OWNED' });
    await expect(sent).rejects.toMatchObject({ code: 'NICK_OWNED' });
    expect(late.client.pending).toBe(0);
  });

  it('gives a nick to the first key that uses it: another key gets NICK_OWNED, in any room', async () => {
    const s = await server();
    track(await member(s.port, room(30), 'carol'));
    for (const r of [room(30), room(31)]) {
      await expect(member(s.port, r, 'Carol').then((m) => track(m))).rejects.toMatchObject({ code: 'NICK_OWNED' });
    }
  });

  it('refuses malformed nicks with BAD_NICK', async () => {
    const s = await server();
    for (const nick of ['', 'a b', 'x'.repeat(25), 'ev\u0430n', '\u001b[2J']) {
      const err = await member(s.port, room(7), nick).then(
        (m) => track(m),
        (e: unknown) => e,
      );
      expect(err, JSON.stringify(nick)).toMatchObject({ code: 'BAD_NICK' });
    }
  });

  it('tells the others when a member leaves cleanly', async () => {
    const s = await server();
    const r = room(8);
    const alice = track(await member(s.port, r, 'alice'));
    const bob = await member(s.port, r, 'bob');
    await bob.client.close();
    await until(() => alice.events.leave.length === 1);
    expect(alice.events.leave[0]).toMatchObject({ nick: 'bob', reason: 'left' });
  });

  it('a message sent just before leaving is acknowledged, and the others hear it before they hear of the leave', async () => {
    const s = await server();
    const r = room(18);
    const alice = track(await member(s.port, r, 'alice'));
    const order: string[] = [];
    alice.client.on('message', (m) => order.push(`message ${m.seq}`));
    alice.client.on('leave', (l) => order.push(`leave ${l.nick}`));
    const bob = track(await member(s.port, r, 'bob'));
    // Written before the LEAVE, so read with it: the server answers both in one turn.
    const sent = bob.client.send(r, text('last words'));
    await bob.client.leave(r);
    expect(await sent).toMatchObject({ seq: 1 });
    await until(() => order.length === 2);
    expect(order).toEqual(['message 1', 'leave bob']);
    expect(alice.texts()).toEqual(['bob: last words']);
  });

  it('a leave followed at once by a join of the same room: a message to the new membership is its own, not failed by the leave', async () => {
    const s = await server();
    const r = room(19);
    const alice = track(await member(s.port, r, 'alice'));
    const bob = track(await member(s.port, r, 'bob'));
    const leaving = bob.client.leave(r);
    const joining = bob.client.join(r, 'bob2');
    const sent = bob.client.send(r, text('hello from bob2'));
    await leaving;
    await joining;
    expect(await sent).toMatchObject({ seq: 1 });
    await until(() => alice.texts().length === 1);
    expect(alice.texts()).toEqual(['bob2: hello from bob2']);
  });

  it('removes a member whose connection drops without closing, and frees its nick', async () => {
    const s = await server();
    const r = room(9);
    const alice = track(await member(s.port, r, 'alice'));
    const identity = newIdentity();
    const bob = await member(s.port, r, 'bob', { reconnect: false, identity });
    // Reach into the socket to cut it the way a crash or a pulled cable would:
    // no LEAVE, no FIN, a reset.
    const socket = (bob.client as unknown as { socket: Socket }).socket;
    socket.resetAndDestroy();
    await until(() => alice.events.leave.length === 1);
    expect(alice.events.leave[0]).toMatchObject({ nick: 'bob', reason: 'disconnected' });
    await until(() => s.stats.connections === 1);
    const again = track(await member(s.port, r, 'bob', { identity }));
    expect(again.joined.members.map((m) => m.nick)).toEqual(['alice']);
  });

  it('rejects sending to a room not joined, and oversized bodies, without closing', async () => {
    const s = await testServer({ limits: { maxBody: 1000 } });
    cleanup.push(() => s.close());
    const r = room(10);
    const alice = track(await member(s.port, r, 'alice'));
    const bob = track(await member(s.port, r, 'bob'));
    await expect(alice.client.send(room(11), text('x'))).rejects.toMatchObject({ code: 'NOT_IN_ROOM' });
    await expect(alice.client.send(r, new Uint8Array(1001))).rejects.toMatchObject({ code: 'BODY_TOO_LARGE' });
    await alice.client.send(r, new Uint8Array(1000));
    await alice.client.send(r, text('still here'));
    await until(() => bob.events.message.length === 2);
    expect(bob.texts()[1]).toBe('alice: still here');
  });

  it('rejects a second join of the same room on one connection', async () => {
    const s = await server();
    const r = room(12);
    const alice = track(await member(s.port, r, 'alice'));
    await expect(alice.client.join(r, 'alice2')).rejects.toBeInstanceOf(ClientError);
  });
});

describe('relay: a rejoin retried while the server holds the old connection', () => {
  it('a leave and a join under another nick during the retries stop them: no more JOINs under the old nick', async () => {
    const s = await server();
    const link = await Link.open(s.port);
    cleanup.push(() => link.close());
    const r = room(20);
    const alice = track(await member(link.port, r, 'alice', { backoff: { baseMs: 50, maxMs: 100 } }));
    link.drop(); // the server keeps alice's old connection, and her nick in the room
    await until(() => alice.events.error.some((e) => e.code === 'NICK_TAKEN'));
    await alice.client.leave(r);
    await alice.client.join(r, 'alice2');
    const sent = link.sent;
    await new Promise((resolve) => setTimeout(resolve, 600));
    // Before, the retry went on under the old nick every 50-100 ms, each JOIN
    // refused (ALREADY_JOINED) in silence and costing a join token.
    expect(link.sent - sent).toBe(0);
  });
});

describe('relay: restarts and shutdown', () => {
  it('tells clients it is shutting down, and they rejoin a restarted server by themselves', async () => {
    const first = await testServer();
    const port = first.port;
    const r = room(20);
    const alice = track(await member(port, r, 'alice'));
    const bob = track(await member(port, r, 'bob'));
    await first.close();
    await until(() => alice.events.disconnect.length === 1 && bob.events.disconnect.length === 1);
    expect(alice.events.disconnect[0]?.error?.code).toBe('SERVER_SHUTDOWN');
    expect(alice.events.disconnect[0]?.willReconnect).toBe(true);

    // Sent while the server is down: kept and sent after the reconnect.
    const pending = alice.client.send(r, text('sent while down'));
    const second = await testServer({ port });
    cleanup.push(() => second.close());
    await until(() => alice.events.reconnect.length >= 1 && bob.events.reconnect.length >= 1, 10_000, 'reconnect');
    const ack = await pending;
    expect(ack.seq).toBe(1);
    await alice.client.send(r, text('after restart'));
    // Whether bob sees 'sent while down' depends on who rejoined first: without
    // stored history (a later issue) delivery is live only.
    await until(() => bob.texts().includes('alice: after restart'));
    expect(second.stats.connections).toBe(2);
  });
});
