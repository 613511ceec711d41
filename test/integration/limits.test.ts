import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { newIdentity } from '../../src/crypto/index.js';
import { connect as netConnect } from 'node:net';
import { encodeFrame, errorCodeName, FrameDecoder, FrameType, parseServerFrame } from '../../src/protocol/index.js';
import type { ErrorFrame, ServerFrame } from '../../src/protocol/index.js';
import { expectBurstInOrder, member, room, text } from '../helpers/clients.js';
import type { Recorder } from '../helpers/clients.js';
import { DEFAULT_LIMITS } from '../../src/server/index.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { Mitm } from '../helpers/mitm.js';
import { joinProof, RawPeer, rawJoin, ROOMY_LIMITS, until } from '../helpers/net.js';
import { testScope } from '../helpers/scope.js';
import { serve } from '../helpers/cli.js';

const { cleanup, server, track } = testScope();

/** Sends one SEND and resolves with the server's answer: 'ack' or an error code name. */
function sendRaw(peer: RawPeer, r: Uint8Array, rid: number, ping = false): Promise<string> {
  const before = peer.frames.length;
  if (ping) peer.write(encodeFrame({ type: 'ping', token: rid }));
  // Each its own message id: one id twice is one message (a resend).
  const mid = new Uint8Array(16);
  new DataView(mid.buffer).setUint32(12, rid);
  peer.write(encodeFrame({ type: 'send', rid, room: r, mid, body: text(`flood ${rid}`) }));
  return until(
    () =>
      peer.frames.slice(before).some((f) => (f.type === 'ack' || f.type === 'error') && f.rid === rid) || peer.closed,
  ).then(() => {
    const f = peer.frames.slice(before).find((x) => (x.type === 'ack' || x.type === 'error') && x.rid === rid);
    if (f?.type === 'ack') return 'ack';
    if (f?.type === 'error') return errorCodeName(f.code);
    return 'closed';
  });
}

describe('message rate limit (token bucket: burst 10, then 5 per second)', () => {
  it('a flood of 1,000 messages a second for 10 s gets at most burst + rate × time through; 20 others lose nothing', async () => {
    const clock = new FakeClock();
    // Default message limits; only the per-address ones are raised (all test clients are 127.0.0.1),
    // and floodStrikes so the flooder stays for the whole 10 s of this measurement
    // (noopBurst too: it PINGs before every SEND).
    const s = await server({
      clock,
      limits: {
        maxConnectionsPerIp: 1000,
        connectionsPerIpPerMinute: 100_000,
        messageBurst: 10,
        messageIntervalMs: 200,
        floodStrikes: 1_000_000,
        noopBurst: 1_000_000,
      },
    });
    const r = room(1);
    const others = await Promise.all(Array.from({ length: 20 }, (_, i) => member(s.port, r, `u${i}`, { clock })));
    others.forEach(track);
    const flooder = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(flooder.destroy()));
    await rawJoin(flooder, r, 'flooder');

    // 1,000 a second for 10 s: ten messages every 10 ms of (injected) time.
    const answers = new Map<string, number>();
    for (let step = 0; step < 1000; step++) {
      // A PING before each SEND: the flooder acknowledges each refusal, so it is
      // measured by the bucket alone, not by the refuse-until-PING rule.
      const batch = Array.from({ length: 10 }, (_, j) => sendRaw(flooder, r, step * 10 + j + 1, true));
      for (const a of await Promise.all(batch)) answers.set(a, (answers.get(a) ?? 0) + 1);
      clock.advance(10);
      // The others talk meanwhile, within their own limits.
      if (step % 100 === 99)
        await Promise.all(others.slice(0, 5).map((o, j) => o.client.send(r, text(`ok ${step} ${j}`))));
    }
    const accepted = answers.get('ack') ?? 0;
    console.log(`flood: 10000 sent over 10 s, ${accepted} accepted, ${answers.get('RATE_LIMITED') ?? 0} RATE_LIMITED`);
    expect(accepted).toBeLessThanOrEqual(10 + 5 * 10 + 1);
    expect(accepted).toBeGreaterThanOrEqual(10 + 5 * 10 - 1);
    expect(answers.get('RATE_LIMITED')).toBe(10_000 - accepted);

    // Every other member got every accepted message: the flooder's and the 50 from the others.
    for (const [i, o] of others.entries()) {
      const expected = accepted + (i < 5 ? 40 : 50); // the five talkers don't get their own
      await until(() => o.events.message.length === expected, 5000, `all deliveries to u${i}`);
    }
    const u19 = others[19] as Recorder;
    expect(u19.events.message.filter((m) => m.nick === 'flooder')).toHaveLength(accepted);
    expect(u19.events.message.filter((m) => m.nick !== 'flooder')).toHaveLength(50);
  });

  it('drops a connection that keeps flooding, with a fatal RATE_LIMITED', async () => {
    const s = await server({ limits: { messageBurst: 10, messageIntervalMs: 200, floodStrikes: 100 } });
    const r = room(2);
    const alice = track(await member(s.port, r, 'alice'));
    const flooder = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(flooder.destroy()));
    await rawJoin(flooder, r, 'flooder');
    // One packet, so the accepted SENDs and the ones that get it dropped are read in one turn.
    const packet: Uint8Array[] = [];
    for (let i = 1; i <= 300; i++) {
      packet.push(encodeFrame({ type: 'send', rid: i, room: r, mid: new Uint8Array(16), body: text('x') }));
    }
    flooder.write(Buffer.concat(packet));
    await flooder.closedByServer();
    const fatal = flooder.frames.find((f) => f.type === 'error' && f.fatal);
    expect(fatal?.type === 'error' && errorCodeName(fatal.code)).toBe('RATE_LIMITED');
    expect(flooder.frames.filter((f) => f.type === 'ack')).toHaveLength(10);
    await until(() => alice.events.leave.some((l) => l.nick === 'flooder'));
    await alice.client.send(r, text('still fine'));
  });

  it('answered FETCHes between the refused SENDs do not reset the count: the flooder is still dropped', async () => {
    const s = await server({ limits: { messageBurst: 10, messageIntervalMs: 200, floodStrikes: 100 } });
    const r = room(3);
    const flooder = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(flooder.destroy()));
    await rawJoin(flooder, r, 'flooder');
    // Ten SENDs, then a FETCH, which the server answers (nothing else is queued for it), and again.
    const packet: Uint8Array[] = [];
    for (let i = 1; i <= 300; i++) {
      const mid = new Uint8Array(16);
      new DataView(mid.buffer).setUint32(12, i);
      packet.push(encodeFrame({ type: 'send', rid: i, room: r, mid, body: text('x') }));
      if (i % 10 === 0) packet.push(encodeFrame({ type: 'fetch', rid: 10_000 + i, room: r, after: 0, limit: 1 }));
    }
    flooder.write(Buffer.concat(packet));
    await flooder.closedByServer();
    expect(flooder.frames.filter((f) => f.type === 'fetched').length).toBeGreaterThan(5);
    const fatal = flooder.frames.find((f) => f.type === 'error' && f.fatal);
    expect(fatal?.type === 'error' && errorCodeName(fatal.code)).toBe('RATE_LIMITED');
    expect(fatal?.type === 'error' && fatal.rid).toBe(110); // the 100th refused SEND: 10 accepted before it
  });

  it('a client refused for speed resends after its PING, keeping every message in order', async () => {
    const s = await server({ limits: { messageBurst: 10, messageIntervalMs: 20, floodStrikes: 1000 } });
    const mitm = await Mitm.start(s.port);
    cleanup.push(() => mitm.close());
    // Lie to the client about the limit, so it sends far too fast and is refused.
    mitm.onServerFrame = (f) => {
      if (f[0] === FrameType.WELCOME) {
        const v = new DataView(f.buffer, f.byteOffset, f.byteLength);
        v.setUint32(f.length - 8, 100_000);
        v.setUint32(f.length - 4, 1);
      }
      return [f];
    };
    const r = room(3);
    const fast = track(await member(mitm.port, r, 'fast'));
    const bob = track(await member(s.port, r, 'bob'));
    await expectBurstInOrder(fast, 'fast', bob, r, 60, 'n');
    expect(s.stats.rateLimited).toBeGreaterThan(0);
  });

  it('a client under the limit is not refused when its messages reach the server late, all at once', async () => {
    const s = await server({ limits: { messageBurst: 10, messageIntervalMs: 2, floodStrikes: 1000 } });
    const mitm = await Mitm.start(s.port);
    cleanup.push(() => mitm.close());
    const r = room(4);
    const paced = track(await member(mitm.port, r, 'paced'));
    const bob = track(await member(s.port, r, 'bob'));
    // A stall between client and server (a busy server, a congested network):
    // whatever the client writes meanwhile arrives in one piece.
    mitm.hold();
    const burst = expectBurstInOrder(paced, 'paced', bob, r, 60, 'p');
    await new Promise((resolve) => setTimeout(resolve, 150));
    mitm.release();
    await burst;
    // Paced alone, the client would have written 50 in the 150 ms, 40 past the server's burst.
    expect(s.stats.rateLimited).toBe(0);
  });

  it('leaving a room: what it had written is answered first, what it had not fails, and another room’s messages then go', async () => {
    const s = await server({ limits: { messageBurst: 4, messageIntervalMs: 1, floodStrikes: 1000 } });
    const mitm = await Mitm.start(s.port);
    cleanup.push(() => mitm.close());
    const [a, b] = [room(5), room(6)];
    const c = track(await member(mitm.port, a, 'c'));
    await c.client.join(b, 'c');
    // Two unacknowledged (half the burst of 4) fill the client's window.
    mitm.hold();
    const outcome = (p: Promise<unknown>): Promise<string | undefined> =>
      p.then(
        () => 'ack',
        (err: { code?: string }) => err.code,
      );
    const inA = [c.client.send(a, text('a1')), c.client.send(a, text('a2')), c.client.send(a, text('a3'))].map(outcome);
    const inB = c.client.send(b, text('b1'));
    await until(() => c.client.pending === 4);
    const leaving = c.client.leave(a);
    expect(await inA[2]).toBe('DISCONNECTED'); // never written: at once
    mitm.release();
    await leaving;
    // Written before the LEAVE: the server answers them before its LEFT.
    expect(await Promise.all(inA)).toEqual(['ack', 'ack', 'DISCONNECTED']);
    expect((await inB).seq).toBe(1);
  });
});

describe('frames that carry no message', () => {
  it('PINGs past noopBurst drop the connection (RATE_LIMITED, fatal); refused requests count too; the budget refills', async () => {
    const clock = new FakeClock();
    const s = await server({ clock, limits: { noopBurst: 60, noopIntervalMs: 1000 } });
    const r = room(21);
    const bob = track(await member(s.port, r, 'bob', { clock }));
    const pinger = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(pinger.destroy()));
    await rawJoin(pinger, r, 'pinger');
    // 50 PINGs and 10 SENDs to a room it is not in: the whole budget, each answered.
    const packet = Array.from({ length: 50 }, (_, i) => encodeFrame({ type: 'ping', token: i }));
    for (let i = 0; i < 10; i++) {
      packet.push(
        encodeFrame({ type: 'send', rid: 100 + i, room: room(22), mid: new Uint8Array(16).fill(i), body: text('x') }),
      );
    }
    pinger.write(Buffer.concat(packet));
    await until(() => pinger.frames.filter((f) => f.type === 'error').length === 10);
    expect(pinger.frames.filter((f) => f.type === 'pong')).toHaveLength(50);
    // A second later, one more.
    clock.advance(1000);
    pinger.write(encodeFrame({ type: 'ping', token: 1000 }));
    await until(() => pinger.frames.filter((f) => f.type === 'pong').length === 51);
    // And past it, with no time gone: dropped.
    pinger.write(encodeFrame({ type: 'ping', token: 1001 }));
    await pinger.closedByServer();
    const fatal = pinger.frames.find((f): f is ErrorFrame => f.type === 'error' && f.fatal);
    expect(errorCodeName(fatal?.code ?? 0)).toBe('RATE_LIMITED');
    expect(fatal?.message).toMatch(/over 60 frames that carry no message .* then 1 per 1000 ms/);
    expect(pinger.frames.filter((f) => f.type === 'pong')).toHaveLength(51);
    // The room goes on.
    const alice = track(await member(s.port, r, 'alice', { clock }));
    await alice.client.send(r, text('still here'));
    await until(() => bob.texts().includes('alice: still here'));
  });

  it('clients that send PINGs and never read are dropped once the answers pass the send queue, not after answering them all', async () => {
    // A server of its own (the built CLI), so that its peak memory is its own;
    // the budget raised, to test the send-queue check behind it.
    const { proc, port } = await serve([
      '--limit',
      'noopBurst=100000000',
      '--limit',
      'maxConnectionsPerIp=64',
      '--log-level',
      'info',
    ]);
    cleanup.push(async () => {
      proc.kill('SIGKILL');
      await proc.exited;
    });
    const memory = (field: string): number =>
      Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${proc.child.pid}/status`, 'utf8'))?.[1]) /
      1024;
    const ping = encodeFrame({ type: 'ping', token: 7 });
    const chunk = Buffer.concat(Array.from({ length: Math.floor(65_536 / ping.length) }, () => ping)); // 64 KiB of them
    const sockets = await Promise.all(
      Array.from({ length: 16 }, async () => {
        const socket = netConnect({ host: '127.0.0.1', port });
        cleanup.push(() => Promise.resolve(socket.destroy()));
        socket.on('error', () => {});
        await new Promise((resolve) => socket.once('connect', resolve));
        socket.write(encodeFrame({ type: 'hello', version: 1, agent: 'pinger' }));
        await new Promise((resolve) => socket.once('data', resolve)); // WELCOME
        socket.pause(); // and nothing more is read
        return socket;
      }),
    );
    const before = memory('VmRSS');
    // 4 MiB each, all at once: the server reads megabytes of them in a turn.
    for (const socket of sockets) for (let i = 0; i < 64; i++) socket.write(chunk);
    // Dropped, as its log says (a peer that reads nothing sees no close).
    const drops = (): number =>
      proc.stderr.filter((l) => /"code":"SENDQ_EXCEEDED".*dropping connection/.test(l)).length;
    // Most are (one whose answers the kernel's buffers took in full is a reader
    // as far as the server can tell); then time for the rest of the reading.
    await until(() => drops() >= 8, 30_000, 'the pingers to be dropped');
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const peak = memory('VmHWM');
    // Before: every PING read was answered, each answer a buffer of its own in
    // the stream, and what came after the drop was still read: 16 connections of
    // 4 MB took the server from 62 MB to 2,193 MB (fb6aab0). Now about +230 MB:
    // each connection is cut at four times the cap.
    console.log(`16 pingers that never read: server RSS ${before.toFixed(1)} MB, peak ${peak.toFixed(1)} MB`);
    expect(peak - before).toBeLessThan(600);
  }, 60_000);
});

describe('connection limits per address', () => {
  it('refuses the 17th concurrent connection from one address with TOO_MANY_CONNECTIONS', async () => {
    const s = await server({ limits: { maxConnectionsPerIp: 16, connectionsPerIpPerMinute: 1000 } });
    const peers = await Promise.all(Array.from({ length: 16 }, () => RawPeer.open(s.port)));
    cleanup.push(() => Promise.resolve(peers.forEach((p) => p.destroy())));
    await until(() => s.stats.connections === 16);
    const extra = await RawPeer.open(s.port);
    await extra.closedByServer();
    expect(errorCodeName(extra.error()?.code ?? 0)).toBe('TOO_MANY_CONNECTIONS');
    expect(extra.error()?.message).toMatch(/at most 16/);
    // One leaves: room for one more.
    peers[0]?.destroy();
    await until(() => s.stats.connections === 15);
    const again = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(again.destroy()));
    again.hello();
    await until(() => again.frames.some((f) => f.type === 'welcome'));
  });

  it('refuses a JOIN past maxRoomMembers with ROOM_FULL, keeps the connection, and takes it once someone leaves', async () => {
    const s = await server({ limits: { maxRoomMembers: 3 } });
    const r = room(7);
    const peers = await Promise.all(Array.from({ length: 4 }, () => RawPeer.open(s.port)));
    cleanup.push(() => Promise.resolve(peers.forEach((p) => p.destroy())));
    for (const [i, p] of peers.slice(0, 3).entries()) {
      await rawJoin(p, r, `m${i}`);
      expect(p.frames.some((f) => f.type === 'joined')).toBe(true);
    }
    const late = peers[3] as RawPeer;
    await rawJoin(late, r, 'late');
    const refusal = late.frames.find((f): f is ErrorFrame => f.type === 'error');
    expect(errorCodeName(refusal?.code ?? 0)).toBe('ROOM_FULL');
    expect(refusal?.message).toBe('the room has 3 members');
    expect(late.frames.some((f) => f.type === 'joined')).toBe(false);
    // Not fatal: another room takes the same connection at once.
    const id = newIdentity();
    const proof = await joinProof(late, id, room(8), 'late');
    late.write(encodeFrame({ type: 'join', rid: 2, room: room(8), nick: 'late', key: id.publicKey, proof }));
    await until(() => late.frames.some((f) => f.type === 'joined'));
    expect(late.closed).toBe(false);

    peers[0]?.destroy();
    await until(() => s.stats.connections === 3);
    const again = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(again.destroy()));
    await rawJoin(again, r, 'again');
    expect(again.frames.some((f) => f.type === 'joined')).toBe(true);
  });

  it('counts an IPv4 peer on a dual-stack listener as its IPv4 address, and an IPv6 one as its /64', async () => {
    const s = await server({ host: '::', limits: { maxConnectionsPerIp: 1, connectionsPerIpPerMinute: 1000 } });
    const v4 = await RawPeer.open(s.port, '127.0.0.1'); // arrives as ::ffff:127.0.0.1
    cleanup.push(() => Promise.resolve(v4.destroy()));
    await until(() => s.stats.connections === 1);
    const v4again = await RawPeer.open(s.port, '127.0.0.1');
    await v4again.closedByServer();
    expect(v4again.error()?.message).toBe('at most 1 connections from one address');
    // ::1 is in 0:0:0:0::/64, as every IPv4-mapped address would be if it were counted as IPv6.
    const v6 = await RawPeer.open(s.port, '::1');
    cleanup.push(() => Promise.resolve(v6.destroy()));
    v6.hello();
    await until(() => v6.frames.some((f) => f.type === 'welcome'));
    expect(s.stats.connections).toBe(2);
  });

  it('a refused connection that closes leaves no linger timer behind', async () => {
    const clock = new FakeClock();
    const s = await server({ clock, limits: { maxConnectionsPerIp: 1, connectionsPerIpPerMinute: 1000 } });
    const before = clock.pending; // the sweep's
    const first = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(first.destroy()));
    await until(() => s.stats.connections === 1);
    const extra = await RawPeer.open(s.port);
    await extra.closedByServer();
    expect(errorCodeName(extra.error()?.code ?? 0)).toBe('TOO_MANY_CONNECTIONS');
    // Its closeLingerMs timer went with its socket.
    await until(() => clock.pending === before, 2000, 'the refusal to leave no timer');
  });

  it('refused connections that never close: a few linger, per address and in all; the rest are closed at once', async () => {
    const clock = new FakeClock();
    const s = await server({
      clock,
      limits: { maxConnections: 2, maxConnectionsPerIp: 2, connectionsPerIpPerMinute: 1000, maxLingeringRefusals: 3 },
    });
    const before = clock.pending; // the sweep's
    const admitted = await Promise.all([RawPeer.open(s.port), RawPeer.open(s.port)]);
    cleanup.push(() => Promise.resolve(admitted.forEach((p) => p.destroy())));
    await until(() => s.stats.connections === 2);
    const lingering = (): number => clock.pending - before;
    // Peers that read their refusal but never close their side: each the server
    // keeps closeLingerMs (on the fake clock, until it is advanced) holds a timer.
    const refused = async (n: number, localAddress: string): Promise<void> => {
      const peers = await Promise.all(Array.from({ length: n }, () => halfOpen(s.port, localAddress)));
      cleanup.push(() => Promise.resolve(peers.forEach((p) => p.destroy())));
      await until(() => peers.every((p) => p.ended), 5000, 'every refusal');
      // The ERROR is still written to those closed at once.
      for (const p of peers) expect(errorCodeName(p.error()?.code ?? 0)).toBe('TOO_MANY_CONNECTIONS');
    };
    await refused(10, '127.0.0.1');
    expect(lingering()).toBe(2); // maxConnectionsPerIp from one address
    await refused(5, '127.0.0.2');
    expect(lingering()).toBe(3); // maxLingeringRefusals in all
    // Once they are destroyed their places are free again.
    clock.advance(s.limits.closeLingerMs);
    await until(() => lingering() === 0, 2000, 'the lingering refusals to go');
    await refused(3, '127.0.0.1');
    expect(lingering()).toBe(2);
  });

  it('connections refused at accept are counted, "server full" too, and logged once per 10 s per kind with a count', async () => {
    const clock = new FakeClock();
    const lines: { msg: string; why?: string; remote?: string; suppressed?: number }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as { msg: string });
        done();
      },
    });
    const s = await server({
      clock,
      logger: pino({ level: 'warn' }, sink),
      limits: { maxConnections: 3, maxConnectionsPerIp: 2, connectionsPerIpPerMinute: 1000 },
    });
    const refusedFrom = async (n: number, localAddress: string): Promise<void> => {
      const peers = await Promise.all(Array.from({ length: n }, () => halfOpen(s.port, localAddress)));
      cleanup.push(() => Promise.resolve(peers.forEach((p) => p.destroy())));
      await until(() => peers.every((p) => p.ended), 5000, 'every refusal');
    };
    const open = await Promise.all([RawPeer.open(s.port), RawPeer.open(s.port)]);
    cleanup.push(() => Promise.resolve(open.forEach((p) => p.destroy())));
    await until(() => s.stats.connections === 2);
    await refusedFrom(3, '127.0.0.1');
    const third = await halfOpen(s.port, '127.0.0.2');
    cleanup.push(() => Promise.resolve(third.destroy()));
    await until(() => s.stats.connections === 3);
    await refusedFrom(4, '127.0.0.3');
    // Before: nothing logged at any level, and "server full" not counted (3 of 7).
    expect(s.stats.dropped.TOO_MANY_CONNECTIONS).toBe(7);
    const refused = (): typeof lines => lines.filter((l) => l.msg === 'connection refused');
    expect(refused().map((l) => `${l.remote} ${l.why}`)).toEqual([
      '127.0.0.1 at most 2 connections from one address',
      '127.0.0.3 server full',
    ]);
    clock.advance(10_000);
    await refusedFrom(1, '127.0.0.3');
    expect(refused().at(-1)).toMatchObject({ why: 'server full', suppressed: 3 });
  });

  it('limits new connections per address per minute, and lets them back after', async () => {
    const clock = new FakeClock();
    const s = await server({ clock, limits: { maxConnectionsPerIp: 1000, connectionsPerIpPerMinute: 30 } });
    const refused: string[] = [];
    for (let i = 0; i < 35; i++) {
      const p = await RawPeer.open(s.port);
      p.hello();
      await until(() => p.frames.length > 0 || p.closed);
      const e = p.error();
      if (e !== undefined) refused.push(errorCodeName(e.code));
      p.destroy();
    }
    expect(refused).toEqual(Array(5).fill('TOO_MANY_CONNECTIONS'));
    clock.advance(10_000); // 5 more tokens
    const p = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(p.destroy()));
    p.hello();
    await until(() => p.frames.some((f) => f.type === 'welcome'));
  });
});

describe('joins', () => {
  it('a connection joining and leaving in a loop is held to 20 joins at once, then 1 every 3 s; the room hears no more', async () => {
    const clock = new FakeClock();
    const s = await server({ clock, limits: { maxConnectionsPerIp: 1000, connectionsPerIpPerMinute: 100_000 } });
    const r = room(5);
    const watcher = track(await member(s.port, r, 'watcher', { clock }));
    const peer = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(peer.destroy()));
    const identity = newIdentity();
    const proof = await joinProof(peer, identity, r, 'churn');
    const answers = new Map<string, number>();
    const attempt = async (rid: number): Promise<void> => {
      peer.write(encodeFrame({ type: 'join', rid, room: r, nick: 'churn', key: identity.publicKey, proof }));
      const f = await peer.next((x) => (x.type === 'joined' || x.type === 'error') && x.rid === rid);
      const answer = f?.type === 'joined' ? 'joined' : f?.type === 'error' ? errorCodeName(f.code) : 'closed';
      answers.set(answer, (answers.get(answer) ?? 0) + 1);
      if (answer === 'joined') {
        peer.write(encodeFrame({ type: 'leave', rid: rid + 100_000, room: r }));
        await peer.next((x) => x.type === 'left' && x.rid === rid + 100_000);
      }
    };
    // 80: 20 joins, and 60 refusals, the budget of frames that carry no message
    // (past it the connection is dropped: relay-turn.test.ts).
    for (let i = 1; i <= 80; i++) await attempt(i);
    expect(answers.get('joined')).toBe(20);
    expect(answers.get('RATE_LIMITED')).toBe(60);
    clock.advance(3000);
    await attempt(1000);
    expect(answers.get('joined')).toBe(21);
    await until(() => watcher.events.join.length === 21);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(watcher.events.join).toHaveLength(21); // not one per attempt
    expect(peer.closed).toBe(false); // refused, not dropped
  });
});

describe('what one address adds to the store for good', () => {
  /** JOINs `r` as `nick` on `peer`; resolves with 'joined' or the refusal's code. */
  async function joinAs(
    peer: RawPeer,
    r: Uint8Array,
    nick: string,
    identity: ReturnType<typeof newIdentity>,
    rid: number,
  ): Promise<string> {
    const proof = await joinProof(peer, identity, r, nick);
    peer.write(encodeFrame({ type: 'join', rid, room: r, nick, key: identity.publicKey, proof }));
    const f = await peer.next((x) => (x.type === 'joined' || x.type === 'error') && x.rid === rid);
    if (f?.type === 'error' && errorCodeName(f.code) === 'RATE_LIMITED')
      expect(f.message).toMatch(/new nicks and rooms from your address; retry in \d+ s/);
    return f?.type === 'joined' ? 'joined' : f?.type === 'error' ? errorCodeName(f.code) : 'closed';
  }
  async function leave(peer: RawPeer, r: Uint8Array, rid: number): Promise<void> {
    peer.write(encodeFrame({ type: 'leave', rid, room: r }));
    await peer.next((x) => x.type === 'left' && x.rid === rid);
  }

  it('new nick claims and room rows: 32 at once, then one a minute; an owned nick and a known room cost nothing', async () => {
    const clock = new FakeClock();
    const { newRowsPerIp, newRowIntervalMs } = DEFAULT_LIMITS;
    // Pings off: the minutes this test moves the clock would drop its silent peers.
    const s = await server({
      clock,
      limits: { newRowsPerIp, newRowIntervalMs, joinBurst: 1000, heartbeatMs: 3_600_000, deadAfterMs: 3_602_000 },
    });
    const rooms = Array.from({ length: 16 }, (_, i) => room(100 + i));
    const alice = newIdentity();
    const a = await RawPeer.open(s.port);
    const b = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve([a, b].forEach((p) => p.destroy())));
    let rid = 1;
    // alice's nick and 16 rooms: 17 rows.
    for (const r of rooms) expect(await joinAs(a, r, 'alice', alice, rid++)).toBe('joined');
    expect(await sendRaw(a, rooms[0] as Uint8Array, rid++)).toBe('ack'); // room 0 now has a number
    // 15 new nicks in rooms that already exist: 32 in all.
    for (let i = 0; i < 14; i++)
      expect(await joinAs(b, rooms[i] as Uint8Array, `b${i}`, newIdentity(), rid++)).toBe('joined');
    // One token left. Refused for another reason, a JOIN spends nothing.
    expect(await joinAs(b, rooms[14] as Uint8Array, 'alice', newIdentity(), rid++)).toBe('NICK_OWNED');
    expect(await joinAs(b, rooms[14] as Uint8Array, 'b14', newIdentity(), rid++)).toBe('joined');
    const b15 = newIdentity();
    const before = s.stats.rateLimited;
    expect(await joinAs(b, rooms[15] as Uint8Array, 'b15', b15, rid++)).toBe('RATE_LIMITED');
    expect(s.stats.rateLimited).toBe(before + 1);

    // Everybody leaves rooms 0 and 1; the server forgets both. Their rows stay
    // (written at their first JOIN; room 0 also holds a message), so alice,
    // whose nick is hers, comes back to both for free, as a reconnecting client does.
    for (const [p, r] of [
      [a, 0],
      [a, 1],
      [b, 0],
      [b, 1],
    ] as const)
      await leave(p, rooms[r] as Uint8Array, rid++);
    expect(await joinAs(a, rooms[0] as Uint8Array, 'alice', alice, rid++)).toBe('joined');
    expect(await joinAs(a, rooms[1] as Uint8Array, 'alice', alice, rid++)).toBe('joined');
    // A room the store has never seen adds its row.
    await leave(a, rooms[2] as Uint8Array, rid++); // alice is in 16, the most
    const fresh = room(199);
    expect(await joinAs(a, fresh, 'alice', alice, rid++)).toBe('RATE_LIMITED');

    clock.advance(newRowIntervalMs);
    expect(await joinAs(a, fresh, 'alice', alice, rid++)).toBe('joined');
    expect(await joinAs(b, rooms[15] as Uint8Array, 'b15', b15, rid++)).toBe('RATE_LIMITED');
    clock.advance(newRowIntervalMs);
    expect(await joinAs(b, rooms[15] as Uint8Array, 'b15', b15, rid)).toBe('joined');
    expect(a.closed || b.closed).toBe(false); // refused, never dropped
  });

  it('a server without history keeps nothing for good, and does not count', async () => {
    const s = await server({ noHistory: true, limits: { newRowsPerIp: 2, newRowIntervalMs: 3_600_000 } });
    const peer = await RawPeer.open(s.port);
    cleanup.push(() => Promise.resolve(peer.destroy()));
    for (let i = 0; i < 16; i++)
      expect(await joinAs(peer, room(200 + i), `n${i}`, newIdentity(), i + 1)).toBe('joined');
  });
});

describe('slowloris', () => {
  it('200 connections dripping a byte every 2 s are closed at the handshake deadline; a normal client still chats', async () => {
    const clock = new FakeClock();
    const s = await server({ clock, limits: { ...ROOMY_LIMITS } });
    const drips = await Promise.all(Array.from({ length: 200 }, () => RawPeer.open(s.port)));
    cleanup.push(() => Promise.resolve(drips.forEach((p) => p.destroy())));
    await until(() => s.stats.connections === 200);
    const hello = encodeFrame({ type: 'hello', version: 1, agent: 'slow' });
    for (let t = 0; t < 6; t++) {
      for (const p of drips) if (!p.closed) p.write(hello.subarray(t, t + 1));
      await new Promise((r) => setTimeout(r, 20));
      clock.advance(2000);
    }
    await Promise.all(drips.map((p) => p.closedByServer()));
    const codes = new Set(drips.map((p) => errorCodeName(p.error()?.code ?? 0)));
    expect([...codes].every((c) => c === 'HANDSHAKE_TIMEOUT' || c === 'READ_TIMEOUT')).toBe(true);
    const r = room(4);
    const alice = track(await member(s.port, r, 'alice', { clock }));
    const bob = track(await member(s.port, r, 'bob', { clock }));
    await alice.client.send(r, text('hello through the drip'));
    await until(() => bob.events.message.length === 1);
    expect(s.stats.connections).toBe(2);
  });
});

describe("the client's own limits", () => {
  it('refuses a send past maxPending unacknowledged messages with OUTBOX_FULL, at once, and takes one again after the ACKs', async () => {
    const s = await server();
    const r = room(9);
    const alice = track(await member(s.port, r, 'alice', { maxPending: 2 }));
    const bob = track(await member(s.port, r, 'bob'));
    const first = alice.client.send(r, text('one'));
    const second = alice.client.send(r, text('two'));
    await expect(alice.client.send(r, text('three'))).rejects.toMatchObject({
      code: 'OUTBOX_FULL',
      message: '2 messages are waiting for acknowledgement',
    });
    expect((await first).seq).toBe(1);
    expect((await second).seq).toBe(2);
    expect((await alice.client.send(r, text('four'))).seq).toBe(3);
    await until(() => bob.texts().length === 3);
    expect(bob.texts()).toEqual(['alice: one', 'alice: two', 'alice: four']);
  });
});

/**
 * A raw peer that reads what the server sends but never ends its own side (it
 * allows half-open sockets), so the server's socket stays open until the server
 * destroys it.
 */
function halfOpen(
  port: number,
  localAddress: string,
): Promise<{ ended: boolean; error: () => ErrorFrame | undefined; destroy: () => void }> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port, localAddress, allowHalfOpen: true });
    const decoder = new FrameDecoder();
    const frames: ServerFrame[] = [];
    const peer = {
      ended: false,
      error: () => frames.find((f): f is ErrorFrame => f.type === 'error'),
      destroy: () => socket.destroy(),
    };
    socket.on('data', (chunk: Buffer) => {
      for (const raw of decoder.push(chunk)) frames.push(parseServerFrame(raw));
    });
    socket.on('end', () => {
      peer.ended = true;
    });
    socket.once('connect', () => resolve(peer));
    socket.on('error', reject); // a no-op once connected
  });
}
