import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { connect, SEND_QUEUE_BYTES } from '../../src/client/index.js';
import type { ConfabClient } from '../../src/client/index.js';
import { encodeFrame, FrameDecoder, PROTOCOL_VERSION } from '../../src/protocol/index.js';
import { room } from '../helpers/clients.js';
import { until } from '../helpers/net.js';
import { testScope } from '../helpers/scope.js';

// A server that speaks just enough of the protocol to attack the client: it
// must not be able to make the client grow its memory without end.

const { cleanup } = testScope();

/** Listens; says WELCOME to each HELLO, then hands the socket and each later client frame's type to `attack`. */
async function hostile(attack: (socket: Socket, type: number, frame: Uint8Array) => void): Promise<number> {
  const server: Server = createServer((socket) => {
    const decoder = new FrameDecoder();
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame[0] === 0x01) {
          socket.write(
            encodeFrame({
              type: 'welcome',
              version: PROTOCOL_VERSION,
              agent: 'hostile',
              maxFrame: 65_536,
              maxBody: 64_000,
              heartbeatMs: 15_000,
              challenge: new Uint8Array(32),
              rateBurst: 10,
              rateIntervalMs: 200,
            }),
          );
        }
        attack(socket, frame[0] as number, frame);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => {
    server.close();
    server.unref();
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

async function client(port: number): Promise<{ client: ConfabClient; lost: { code: string; message: string }[] }> {
  const c = await connect({ host: '127.0.0.1', port, reconnect: false });
  cleanup.push(() => c.close());
  const lost: { code: string; message: string }[] = [];
  c.on('disconnect', (d) => {
    if (d.error !== undefined) lost.push({ code: d.error.code, message: d.error.message });
  });
  return { client: c, lost };
}

describe('a hostile server', () => {
  it('that pings and never reads the PONGs: the client stops answering, its queue bounded', async () => {
    const ping = encodeFrame({ type: 'ping', token: 1 });
    const batch = Buffer.concat(Array.from({ length: 10_000 }, () => ping));
    let flooding: Socket | null = null;
    const port = await hostile((socket, type) => {
      if (type !== 0x01) return;
      socket.pause(); // reads nothing more
      flooding = socket;
    });
    const { client: c, lost } = await client(port);
    const unread = (): number => (c as unknown as { socket: Socket | null }).socket?.writableLength ?? -1;
    await until(() => flooding !== null);
    // 300 × 10,000 PINGs: 27 MB of PONGs unanswered-for, past the kernel's buffers both ways.
    let most = 0;
    for (let i = 0; i < 300; i++) {
      const socket = flooding as unknown as Socket;
      if (!socket.write(batch)) {
        await new Promise((resolve) => {
          socket.once('drain', resolve);
          socket.once('close', resolve);
        });
      }
      most = Math.max(most, unread());
    }
    expect(most).toBeGreaterThan(SEND_QUEUE_BYTES / 2); // the flood did fill the client's queue
    expect(most).toBeLessThanOrEqual(SEND_QUEUE_BYTES + ping.length);
    expect(lost).toEqual([]);
  }, 60_000);

  it('that delivers one message numbered far past its latest: the client asks once, not in a loop', async () => {
    let fetches = 0;
    const port = await hostile((socket, type, frame) => {
      const rid = type === 0x01 ? 0 : Buffer.from(frame).readUInt32BE(1);
      if (type === 0x02) {
        socket.write(encodeFrame({ type: 'joined', rid, room: room(2), nick: 'alice', seq: 0, members: [] }));
        // Live, and 1,000 past the room's latest (0): held while the gap before it is fetched.
        socket.write(
          encodeFrame({ type: 'deliver', room: room(2), seq: 1000, ts: 1, nick: 'mallory', body: new Uint8Array(8) }),
        );
      } else if (type === 0x05) {
        fetches++;
        socket.write(encodeFrame({ type: 'fetched', rid, room: room(2), oldest: 1, latest: 0, count: 0 }));
      }
    });
    const { client: c, lost } = await client(port);
    const shown: number[] = [];
    c.on('message', (m) => shown.push(m.seq));
    await c.join(room(2), 'alice');
    await until(() => fetches > 0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(fetches).toBe(1);
    expect(shown).toEqual([]);
    expect(lost).toEqual([]);
  });

  it('that answers a JOIN with member lists longer than a room holds: the join fails as a protocol error', async () => {
    const list = (rid: number): Uint8Array =>
      encodeFrame({
        type: 'member-list',
        rid,
        room: room(1),
        members: Array.from({ length: 1000 }, (_, i) => ({ nick: `m${i}`, key: new Uint8Array(32) })),
      });
    const port = await hostile((socket, type, frame) => {
      if (type !== 0x02) return; // JOIN
      const rid = Buffer.from(frame).readUInt32BE(1);
      for (let i = 0; i < 11; i++) socket.write(list(rid)); // 11,000 names, and never a JOINED
    });
    const { client: c, lost } = await client(port);
    await expect(c.join(room(1), 'alice')).rejects.toMatchObject({ code: 'DISCONNECTED' });
    expect(lost).toEqual([{ code: 'PROTOCOL', message: expect.stringMatching(/longer than a room holds/) as string }]);
  });
});
