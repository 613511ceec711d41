import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, errorCodeName } from '../../src/protocol/index.js';
import type { ErrorCodeName } from '../../src/protocol/index.js';
import type { ConfabServer } from '../../src/server/index.js';
import { member, room, text } from '../helpers/clients.js';
import type { Recorder } from '../helpers/clients.js';
import { RawPeer, rawJoin, testServer, until } from '../helpers/net.js';

// One server for the whole file: every attack must leave it serving the two
// normal clients, who chat after each one.
let server: ConfabServer;
let alice: Recorder;
let bob: Recorder;
const r = room(42);
let round = 0;

beforeAll(async () => {
  server = await testServer({ limits: { handshakeTimeoutMs: 300, frameTimeoutMs: 300 }, sweepMs: 50 });
  alice = await member(server.port, r, 'alice');
  bob = await member(server.port, r, 'bob');
});

afterAll(async () => {
  await alice.client.close();
  await bob.client.close();
  await server.close();
});

/** The normal clients still chat both ways, and no connection was leaked. */
async function stillServing(): Promise<void> {
  round++;
  await alice.client.send(r, text(`ping ${round}`));
  await bob.client.send(r, text(`pong ${round}`));
  await until(() => bob.texts().includes(`alice: ping ${round}`) && alice.texts().includes(`bob: pong ${round}`));
  await until(() => server.stats.connections === 2, 3000, 'the offender’s connection to be released');
}

async function expectDropped(peer: RawPeer, code: ErrorCodeName): Promise<void> {
  await peer.closedByServer();
  const err = peer.error();
  expect(err, `expected an ERROR frame with ${code}`).toBeDefined();
  expect(errorCodeName(err?.code ?? 0)).toBe(code);
  expect(err?.fatal).toBe(true);
}

describe('bad input: the offender gets a typed error and is closed; everyone else keeps chatting', () => {
  it('garbage bytes', async () => {
    const peer = await RawPeer.open(server.port);
    peer.write(Buffer.from('GET / HTTP/1.1\r\nHost: example\r\n\r\n'));
    await expectDropped(peer, 'FRAME_TOO_LARGE');
    await stillServing();
  });

  it('random garbage after a valid handshake', async () => {
    const peer = await RawPeer.open(server.port);
    peer.hello();
    peer.write(new Uint8Array([0, 0, 0, 3, 0x99, 1, 2]));
    await expectDropped(peer, 'UNKNOWN_FRAME_TYPE');
    await stillServing();
  });

  it('a frame announcing 1 GiB', async () => {
    const peer = await RawPeer.open(server.port);
    peer.hello();
    peer.write(new Uint8Array([0x40, 0, 0, 0, 0x04]));
    await expectDropped(peer, 'FRAME_TOO_LARGE');
    await stillServing();
  });

  it('a truncated frame, then EOF', async () => {
    const peer = await RawPeer.open(server.port);
    peer.hello();
    const join = encodeFrame({
      type: 'join',
      rid: 1,
      room: r,
      nick: 'mallory',
      key: new Uint8Array(32),
      proof: new Uint8Array(64),
    });
    peer.write(join.subarray(0, 10));
    peer.socket.end();
    await expectDropped(peer, 'TRUNCATED_FRAME');
    await stillServing();
  });

  it('a truncated frame, then silence (read deadline)', async () => {
    const peer = await RawPeer.open(server.port);
    peer.hello();
    peer.write(encodeFrame({ type: 'ping', token: 1 }).subarray(0, 6));
    await expectDropped(peer, 'READ_TIMEOUT');
    await stillServing();
  });

  it('an unknown frame type', async () => {
    const peer = await RawPeer.open(server.port);
    peer.hello();
    peer.write(new Uint8Array([0, 0, 0, 1, 0x7e]));
    await expectDropped(peer, 'UNKNOWN_FRAME_TYPE');
    await stillServing();
  });

  it('a server-only frame type sent by a client', async () => {
    const peer = await RawPeer.open(server.port);
    peer.hello();
    peer.write(encodeFrame({ type: 'ack', rid: 1, room: r, seq: 1, ts: 1 }));
    await expectDropped(peer, 'UNKNOWN_FRAME_TYPE');
    await stillServing();
  });

  it('a malformed payload', async () => {
    const peer = await RawPeer.open(server.port);
    peer.hello();
    peer.write(new Uint8Array([0, 0, 0, 3, 0x02, 0, 1])); // JOIN cut short
    await expectDropped(peer, 'BAD_FRAME');
    await stillServing();
  });

  it('a wrong protocol version, with a message that says so', async () => {
    const peer = await RawPeer.open(server.port);
    peer.hello(2);
    await expectDropped(peer, 'UNSUPPORTED_VERSION');
    expect(peer.error()?.message).toMatch(/v2.*v1/);
    await stillServing();
  });

  it('a frame before HELLO', async () => {
    const peer = await RawPeer.open(server.port);
    peer.write(
      encodeFrame({
        type: 'join',
        rid: 1,
        room: r,
        nick: 'mallory',
        key: new Uint8Array(32),
        proof: new Uint8Array(64),
      }),
    );
    await expectDropped(peer, 'HANDSHAKE_REQUIRED');
    await stillServing();
  });

  it('a client that connects and sends nothing', async () => {
    const peer = await RawPeer.open(server.port);
    await expectDropped(peer, 'HANDSHAKE_TIMEOUT');
    await stillServing();
  });

  it('a client that sends one byte of HELLO and stops', async () => {
    const peer = await RawPeer.open(server.port);
    peer.write(new Uint8Array([0]));
    await peer.closedByServer();
    expect(['HANDSHAKE_TIMEOUT', 'READ_TIMEOUT']).toContain(errorCodeName(peer.error()?.code ?? 0));
    await stillServing();
  });

  it('an abrupt reset in the middle of a frame', async () => {
    const peer = await RawPeer.open(server.port);
    await rawJoin(peer, r, 'mallory');
    await until(() => alice.events.join.some((j) => j.nick === 'mallory'));
    peer.write(new Uint8Array([0, 0, 1]));
    peer.socket.resetAndDestroy();
    await until(() => alice.events.leave.some((l) => l.nick === 'mallory'));
    await stillServing();
  });

  it('many bad connections at once', async () => {
    const peers = await Promise.all(Array.from({ length: 50 }, () => RawPeer.open(server.port)));
    peers.forEach((p, i) => p.write(i % 2 === 0 ? new Uint8Array([0xff, 0xff, 0xff, 0xff]) : 'hello?'));
    await Promise.all(peers.map((p) => p.closedByServer()));
    await stillServing();
  });
});
