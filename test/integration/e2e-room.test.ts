import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  acceptKeyChange,
  ClientError,
  connect,
  markVerified,
  rejectKeyChange,
  RoomState,
  WITHHELD_MAX,
} from '../../src/client/index.js';
import {
  MessageType,
  newIdentity,
  newRoomSecret,
  NO_PREVIOUS,
  roomKeys,
  sealEnvelope,
  shortFingerprint,
} from '../../src/crypto/index.js';
import { encodeFrame, errorCodeName } from '../../src/protocol/index.js';
import { SqliteHistory } from '../../src/server/index.js';
import { joinProof, RawPeer, rawJoin, until } from '../helpers/net.js';
import { secureMember } from '../helpers/secure.js';
import type { SecureMember } from '../helpers/secure.js';
import { testScope } from '../helpers/scope.js';

const { cleanup, server } = testScope();

async function member(...args: Parameters<typeof secureMember>): Promise<SecureMember> {
  const m = await secureMember(...args);
  cleanup.push(() => m.close());
  return m;
}

describe('end-to-end room over a real server', () => {
  it('members read each other’s messages, with fingerprints; the relay carries only ciphertext', async () => {
    const s = await server();
    const secret = newRoomSecret();
    const alice = await member(s.port, secret, 'alice');
    const bob = await member(s.port, secret, 'bob');
    const carol = await member(s.port, secret, 'carol');
    await alice.room.send('hi all');
    await bob.room.send('hi alice', 'action');
    await until(() => carol.messages.length === 2 && alice.messages.length === 1 && bob.messages.length === 1);
    expect(carol.texts()).toEqual(['alice: hi all', 'bob: hi alice']);
    expect(carol.messages[1]).toMatchObject({ kind: 'action', senderSeq: 1, trust: 'known', verified: false });
    expect(carol.messages[0]?.fingerprint).toBe(shortFingerprint(alice.identity.publicKey));
    expect(bob.joins.map((j) => j.nick)).toEqual(['carol']);
    expect(alice.joins.map((j) => [j.nick, j.fingerprint, j.trust])).toEqual([
      ['bob', shortFingerprint(bob.identity.publicKey), 'new'],
      ['carol', shortFingerprint(carol.identity.publicKey), 'new'],
    ]);
    expect(alice.rejected).toEqual([]);
  });

  it('someone with another invite for the same server sees nothing of this room', async () => {
    const s = await server();
    const alice = await member(s.port, newRoomSecret(), 'alice');
    const stranger = await member(s.port, newRoomSecret(), 'stranger');
    await alice.room.send('private');
    await new Promise((r) => setTimeout(r, 100));
    expect(stranger.messages).toEqual([]);
    expect(stranger.rejected).toEqual([]);
  });
});

describe('message size', () => {
  it('refuses text over MAX_TEXT before spending a sequence number (no false gap for the others)', async () => {
    const s = await server();
    const secret = newRoomSecret();
    const alice = await member(s.port, secret, 'alice');
    const bob = await member(s.port, secret, 'bob');
    await expect(alice.room.send('x'.repeat(60_001))).rejects.toMatchObject({ code: 'BODY_TOO_LARGE' });
    await alice.room.send('y'.repeat(60_000));
    await alice.room.send('after');
    await until(() => bob.messages.length === 2);
    expect(bob.messages.map((m) => m.senderSeq)).toEqual([1, 2]);
    expect(bob.gaps).toEqual([]);
  });
});

describe('a member posing as another', () => {
  it('an envelope signed as "alice" but sent by mallory is rejected as a nick mismatch', async () => {
    const s = await server();
    const secret = newRoomSecret();
    const alice = await member(s.port, secret, 'alice');
    const bob = await member(s.port, secret, 'bob');
    const mallory = await connect({ host: '127.0.0.1', port: s.port });
    cleanup.push(() => mallory.close());
    const keys = roomKeys(secret);
    await mallory.join(keys.roomId, 'mallory');
    const forged = sealEnvelope(keys, mallory.identity, {
      type: MessageType.TEXT,
      nick: 'alice',
      seq: 1,
      sentAt: Date.now(),
      prevHash: NO_PREVIOUS,
      body: new TextEncoder().encode('alice here: please send the keys to mallory'),
    });
    await mallory.send(keys.roomId, forged);
    await until(() => bob.rejected.length === 1 && alice.rejected.length === 1);
    expect(bob.rejected[0]).toMatchObject({ reason: 'nick-mismatch', nick: 'mallory' });
    expect(bob.rejected[0]?.message).toMatch(/signed by "alice" but relayed as "mallory"/);
    expect(bob.messages).toEqual([]);
  });
});

describe('trust on first use', () => {
  it('on a first visit, a backlog message under the key a member had before the one announced is rejected, not taken for a key change', async () => {
    // Bob lost his key; the operator released his nick; he came back with a new one.
    const store = new SqliteHistory({ path: ':memory:', retention: { messages: 1000, maxAgeMs: 1e12 } });
    const s = await server({ store });
    const secret = newRoomSecret();
    const lost = await secureMember(s.port, secret, 'bob');
    await lost.room.send('from my old install');
    await lost.close();
    expect(store.releaseNick('bob')).toBe(true);
    const bob = await member(s.port, secret, 'bob', { identity: newIdentity() });
    await bob.room.send('from my new install');
    // Carol's first visit: the member list pins bob's new key, then the backlog comes.
    const carol = await member(s.port, secret, 'carol');
    await until(() => carol.messages.length + carol.rejected.length === 2);
    expect(carol.texts()).toEqual(['bob: from my new install']);
    expect(carol.rejected).toEqual([expect.objectContaining({ reason: 'key-changed', nick: 'bob' })]);
    expect(carol.keyChanges).toEqual([]);
    expect(carol.room.blockedBy()).toEqual([]);
    await carol.room.send('hi bob');
    await until(() => bob.texts().includes('carol: hi bob'));
    // Bob's new install showed his old one's message as backlog and pinned his nick to the
    // old key; his own messages, caught up later, are still his, not a key change.
    expect(bob.room.state.pin('bob')?.key).toBe(Buffer.from(lost.identity.publicKey).toString('base64url'));
    await bob.close();
    bob.room.state.setCursor(0); // left behind (a crash before it was written): the catch-up brings his own
    const again = await member(s.port, secret, 'bob', { identity: bob.identity, state: bob.room.state });
    await until(() => again.messages.some((m) => m.text === 'from my new install'));
    await again.room.send('after a reconnect');
    await until(() => carol.texts().includes('bob: after a reconnect'));
    expect(again.keyChanges).toEqual([]);
    expect(again.room.blockedBy()).toEqual([]);
  });

  it('a known nick with a new key is a loud warning; sending is blocked until accepted', async () => {
    // A relay that does not bind nicks to keys (run with --no-history, or a
    // malicious one) lets the impostor in: the clients must catch it themselves.
    const s = await server({ noHistory: true });
    const secret = newRoomSecret();
    const home = mkdtempSync(join(tmpdir(), 'confab-tofu-'));
    const roomHex = Buffer.from(roomKeys(secret).roomId).toString('hex');
    const alice = await member(s.port, secret, 'alice', { state: RoomState.load(home, roomHex) });
    const bob = await secureMember(s.port, secret, 'bob');
    await bob.room.send('first bob');
    await until(() => alice.messages.length === 1);
    await bob.close();

    // Someone else takes the nick: new key.
    const impostor = await member(s.port, secret, 'bob', { identity: newIdentity() });
    await until(() => alice.keyChanges.length === 1);
    expect(alice.keyChanges[0]).toMatchObject({
      nick: 'bob',
      oldFingerprint: shortFingerprint(bob.identity.publicKey),
      newFingerprint: shortFingerprint(impostor.identity.publicKey),
    });
    await expect(alice.room.send('are you bob?')).rejects.toMatchObject({ code: 'KEY_CHANGED' });
    expect(alice.room.blockedBy()).toEqual(['bob']);

    await impostor.room.send('it is me, bob');
    await until(() => alice.rejected.length === 1);
    expect(alice.rejected[0]).toMatchObject({ reason: 'key-changed', nick: 'bob' });
    expect(alice.texts()).toEqual(['bob: first bob']);

    // The pin and the block survive a restart of alice.
    const state = RoomState.load(home, roomHex);
    expect(state.pin('bob')?.pending).toBeDefined();

    const released: unknown[] = [];
    alice.room.on('released', (r) => released.push(r));
    expect(alice.room.accept('bob')).toBe(true);
    // What the accepted key signed while it waited is shown now, in order (before, it was gone for good).
    expect(released).toEqual([{ nick: 'bob', count: 1, dropped: 0 }]);
    expect(alice.messages[1]).toMatchObject({ text: 'it is me, bob', trust: 'known' });
    await alice.room.send('welcome back');
    await impostor.room.send('thanks');
    await until(() => alice.messages.length === 3);
    expect(alice.messages[2]).toMatchObject({ text: 'thanks', trust: 'known' });
    expect(alice.rejected).toHaveLength(1); // the release is not a second rejection, nor a replay
  });

  it("keeps at most WITHHELD_MAX messages of an unaccepted key; a refused key's are forgotten", async () => {
    const s = await server({ noHistory: true, limits: { messageBurst: 1000, messageIntervalMs: 1 } });
    const secret = newRoomSecret();
    const alice = await member(s.port, secret, 'alice');
    const bob = await secureMember(s.port, secret, 'bob');
    const carol = await secureMember(s.port, secret, 'carol');
    await bob.room.send('first bob');
    await carol.room.send('first carol');
    await until(() => alice.messages.length === 2);
    await bob.close();
    await carol.close();
    const newBob = await member(s.port, secret, 'bob', { identity: newIdentity() });
    const newCarol = await member(s.port, secret, 'carol', { identity: newIdentity() });
    await until(() => alice.keyChanges.length === 2);
    for (let i = 0; i < WITHHELD_MAX + 5; i++) await newBob.room.send(`bob ${i}`);
    await newCarol.room.send('carol, new');
    await until(() => alice.rejected.length === WITHHELD_MAX + 6);
    // Past the cap the rejection does not promise to show it.
    expect(alice.rejected.filter((r) => /shown if you accept it/.test(r.message))).toHaveLength(WITHHELD_MAX);
    const released: { nick: string; count: number; dropped: number }[] = [];
    alice.room.on('released', (r) => released.push(r));
    expect(rejectKeyChange(alice.room.state, 'carol')).toBe(true);
    expect(alice.room.accept('bob')).toBe(true);
    expect(released).toEqual([{ nick: 'bob', count: WITHHELD_MAX, dropped: 5 }]);
    expect(alice.texts().slice(2)).toEqual(Array.from({ length: WITHHELD_MAX }, (_, i) => `bob: bob ${i}`));
  });

  it('two keys accepted before the next message are each released once, and the count stays true', async () => {
    const s = await server({ noHistory: true, limits: { messageBurst: 1000, messageIntervalMs: 1 } });
    const secret = newRoomSecret();
    const alice = await member(s.port, secret, 'alice');
    const old = await Promise.all(['bob', 'carol', 'dave'].map((nick) => secureMember(s.port, secret, nick)));
    for (const m of old) await m.room.send(`first ${m.room.nick}`);
    await until(() => alice.messages.length === 3);
    for (const m of old) await m.close();
    const [bob, carol] = [
      await member(s.port, secret, 'bob', { identity: newIdentity() }),
      await member(s.port, secret, 'carol', { identity: newIdentity() }),
    ];
    await until(() => alice.keyChanges.length === 2);
    for (const m of [bob, carol]) for (const n of [1, 2]) await m.room.send(`${m.room.nick} ${n}`);
    await until(() => alice.rejected.length === 4);
    const released: { nick: string; count: number }[] = [];
    alice.room.on('released', (r) => released.push(r));
    acceptKeyChange(alice.room.state, 'carol'); // as `confab trust carol` in another process does
    alice.room.accept('bob');
    // Before, carol's were released a second time inside bob's release: a second event, two replays.
    expect(released.map((r) => `${r.nick} ${r.count}`)).toEqual(['bob 2', 'carol 2']);
    expect(alice.texts().slice(3)).toEqual(['bob: bob 1', 'bob: bob 2', 'carol: carol 1', 'carol: carol 2']);
    expect(alice.rejected).toHaveLength(4);
    // And the count of what is kept went below 0, so the cap no longer held.
    const dave = await member(s.port, secret, 'dave', { identity: newIdentity() });
    await until(() => alice.keyChanges.length === 3);
    for (let i = 0; i <= WITHHELD_MAX; i++) await dave.room.send(`dave ${i}`);
    await until(() => alice.rejected.length === 4 + WITHHELD_MAX + 1);
    expect(alice.rejected.filter((r) => /shown if you accept it/.test(r.message))).toHaveLength(4 + WITHHELD_MAX);
  });

  it('a copy of a withheld message relayed again takes no second place, and is not released twice', async () => {
    const s = await server({ noHistory: true });
    const secret = newRoomSecret();
    const alice = await member(s.port, secret, 'alice');
    const bob = await secureMember(s.port, secret, 'bob');
    await bob.room.send('first bob');
    await until(() => alice.messages.length === 1);
    await bob.close();
    const newBob = await member(s.port, secret, 'bob', { identity: newIdentity() });
    await until(() => alice.keyChanges.length === 1);
    const bodies: Uint8Array[] = [];
    alice.client.on('message', (m) => bodies.push(m.body));
    await newBob.room.send('only once');
    await until(() => bodies.length === 1);
    // The same envelope again, as a relay replaying it would deliver it (a new number; no history to spot it).
    await newBob.client.send(newBob.room.keys.roomId, bodies[0] as Uint8Array, new Uint8Array(16).fill(7));
    await until(() => alice.rejected.length === 2);
    const released: { count: number }[] = [];
    alice.room.on('released', (r) => released.push(r));
    alice.room.accept('bob');
    expect(released).toEqual([{ nick: 'bob', count: 1, dropped: 0 }]);
    expect(alice.texts()).toEqual(['bob: first bob', 'bob: only once']);
    expect(alice.rejected).toHaveLength(2); // before, the copy came back as a third, a replay
  });

  it('a verified key is marked on every message', async () => {
    const s = await server();
    const secret = newRoomSecret();
    const alice = await member(s.port, secret, 'alice');
    const bob = await member(s.port, secret, 'bob');
    await until(() => alice.joins.length === 1);
    expect(markVerified(alice.room.state, 'bob')).toBe(true);
    await bob.room.send('verified me');
    await until(() => alice.messages.length === 1);
    expect(alice.messages[0]).toMatchObject({ verified: true, trust: 'verified' });
    expect(alice.room.safetyNumber('bob')).toMatch(/^\d{60}$/);
    expect(alice.room.safetyNumber('bob')).toBe(bob.room.safetyNumber('alice'));
  });

  it('blocked sends report KEY_CHANGED as a ClientError', async () => {
    const s = await server();
    const secret = newRoomSecret();
    const alice = await member(s.port, secret, 'alice');
    alice.room.state.setPin({ nick: 'x', key: 'AAAA', verified: false, pending: 'BBBB' });
    await expect(alice.room.send('nope')).rejects.toBeInstanceOf(ClientError);
  });
});

describe('the server checks that a joining client holds its key', () => {
  it('refuses a JOIN whose proof is not signed by the announced key', async () => {
    const s = await server();
    const peer = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(peer.destroy()));
    const victim = newIdentity();
    const mallory = newIdentity();
    const room = new Uint8Array(16).fill(3);
    const proof = await joinProof(peer, mallory, room, 'victim');
    peer.write(encodeFrame({ type: 'join', rid: 9, room, nick: 'victim', key: victim.publicKey, proof }));
    await until(() => peer.frames.some((f) => f.type === 'error'));
    expect(errorCodeName(peer.error()?.code ?? 0)).toBe('BAD_JOIN_PROOF');
    expect(peer.error()?.fatal).toBe(false);
  });

  it('refuses a proof copied from another connection (the challenge differs)', async () => {
    const s = await server();
    const room = new Uint8Array(16).fill(4);
    const honest = await RawPeer.open(s.port);
    const thief = await RawPeer.open(s.port);
    cleanup.push(
      () => Promise.resolve(honest.destroy()),
      () => Promise.resolve(thief.destroy()),
    );
    const victim = newIdentity();
    const proof = await joinProof(honest, victim, room, 'victim');
    thief.hello();
    await until(() => thief.frames.some((f) => f.type === 'welcome'));
    thief.write(encodeFrame({ type: 'join', rid: 1, room, nick: 'victim', key: victim.publicKey, proof }));
    await until(() => thief.frames.some((f) => f.type === 'error'));
    expect(errorCodeName(thief.error()?.code ?? 0)).toBe('BAD_JOIN_PROOF');
    // The owner of the key joins fine with the same proof on its own connection.
    honest.write(encodeFrame({ type: 'join', rid: 1, room, nick: 'victim', key: victim.publicKey, proof }));
    await until(() => honest.frames.some((f) => f.type === 'joined'));
  });

  it('lists more members than fit one frame across MEMBER_LIST frames', async () => {
    const s = await server();
    const room = new Uint8Array(16).fill(5);
    const peers = await Promise.all(Array.from({ length: 1010 }, () => RawPeer.open(s.port)));
    cleanup.push(() => Promise.resolve(peers.forEach((p) => p.destroy())));
    for (let i = 0; i < peers.length; i += 100) {
      await Promise.all(peers.slice(i, i + 100).map((p, j) => rawJoin(p, room, `m${i + j}`)));
    }
    // The 9 who joined after 1,001 others were each told of them in two frames.
    const listed = peers.map((p) => p.frames.filter((f) => f.type === 'member-list').length);
    expect(listed.filter((n) => n === 1)).toHaveLength(9);
    // The client core joins the parts together.
    const c = await connect({ host: '127.0.0.1', port: s.port });
    cleanup.push(() => c.close());
    const joined = await c.join(room, 'counter');
    expect(joined.members).toHaveLength(1010);
    expect(new Set(joined.members.map((m) => m.nick))).toEqual(new Set(peers.map((_, i) => `m${i}`)));
  });
});
