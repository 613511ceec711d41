import { afterEach, describe, expect, it } from 'vitest';
import { errorCodeName } from '../../src/protocol/index.js';
import type { ConfabServer } from '../../src/server/index.js';
import { member, room, text } from '../helpers/clients.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { RawPeer, rawJoin, testServer, until } from '../helpers/net.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()?.();
});

async function fakeServer(clock: FakeClock, limits = {}): Promise<ConfabServer> {
  const s = await testServer({ clock, limits });
  cleanup.push(() => s.close());
  return s;
}

describe('deadlines and heartbeats on an injected clock', () => {
  it('pings a silent connection after heartbeatMs and drops it after deadAfterMs', async () => {
    const clock = new FakeClock();
    const s = await fakeServer(clock);
    const peer = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(peer.destroy()));
    await rawJoin(peer, room(1), 'ghost');

    clock.advance(14_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(peer.frames.some((f) => f.type === 'ping')).toBe(false);
    clock.advance(1_000);
    await until(() => peer.frames.some((f) => f.type === 'ping'));
    expect(peer.closed).toBe(false);

    // It never answers: half-open. At 45 s of silence it is gone.
    clock.advance(29_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(peer.closed).toBe(false);
    clock.advance(1_000);
    await peer.closedByServer();
    expect(errorCodeName(peer.error()?.code ?? 0)).toBe('HEARTBEAT_TIMEOUT');
    expect(s.stats.rooms).toBe(0);
  });

  it('keeps a connection that answers pings, and tells its room when a silent one is dropped', async () => {
    const clock = new FakeClock();
    const s = await fakeServer(clock);
    const r = room(2);
    // The real client answers PINGs; the raw peer does not.
    const alice = await member(s.port, r, 'alice', { clock });
    cleanup.push(() => alice.client.close());
    const peer = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(peer.destroy()));
    await rawJoin(peer, r, 'ghost');
    await until(() => alice.events.join.length === 1);
    for (let t = 0; t < 50; t++) {
      clock.advance(1_000);
      await new Promise((res) => setTimeout(res, 2));
    }
    await peer.closedByServer();
    await until(() => alice.events.leave.length === 1);
    expect(alice.events.leave[0]).toMatchObject({ nick: 'ghost', reason: 'disconnected' });
    expect(alice.events.disconnect).toEqual([]);
    await alice.client.send(r, text('still connected'));
  });

  it('leaves no linger timer behind for a connection that closes in time', async () => {
    const clock = new FakeClock();
    const s = await fakeServer(clock);
    const before = clock.pending; // the sweep's
    // A clean close: the peer ends its side, the server ends its own and the socket closes.
    const leaving = await RawPeer.open(s.port);
    await rawJoin(leaving, room(3), 'leaving');
    leaving.socket.end();
    await leaving.closedByServer();
    await until(() => s.stats.connections === 0);
    await until(() => clock.pending === before, 2000, 'the clean close to leave no timer');
    // A fatal ERROR (the handshake deadline), read by a peer that then closes.
    const silent = await RawPeer.open(s.port);
    await until(() => s.stats.connections === 1);
    clock.advance(10_000);
    await silent.closedByServer();
    await until(() => s.stats.connections === 0);
    // Each had its closeLingerMs timer, cancelled when its socket closed: none
    // is left to hold its connection in memory, or the process at exit.
    await until(() => clock.pending === before, 2000, 'the linger timers to go');
    expect(clock.pending).toBe(before);
  });

  it('closes a connection that does not say HELLO within the handshake deadline', async () => {
    const clock = new FakeClock();
    const s = await fakeServer(clock);
    const peer = await RawPeer.open(s.port);
    await until(() => s.stats.connections === 1);
    clock.advance(9_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(peer.closed).toBe(false);
    clock.advance(1_000);
    await peer.closedByServer();
    expect(errorCodeName(peer.error()?.code ?? 0)).toBe('HANDSHAKE_TIMEOUT');
  });
});
