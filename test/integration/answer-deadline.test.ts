import { connect as netConnect, createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { connect } from '../../src/client/index.js';
import { encodeFrame, FrameDecoder } from '../../src/protocol/index.js';
import { welcomeFrame } from '../helpers/net.js';
import { room } from '../helpers/clients.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { testScope } from '../helpers/scope.js';

const { cleanup, server } = testScope();

const pause = (ms = 15): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A TCP link whose uplink (client -> server) can be held and then released a
 * few bytes at a time: a link that stalls, then crawls. The downlink is
 * untouched. The server's side stays open after the client closes, so what
 * was on its way still reaches the server.
 */
async function uplink(upstream: number): Promise<{
  port: number;
  hold: () => void;
  /** Releases up to `bytes` of what is held; returns how many are still held. */
  release: (bytes: number) => Promise<number>;
  /** Lets everything through from now on. */
  open: () => void;
}> {
  let held = false;
  let queue: Buffer[] = [];
  let up: Socket | null = null;
  const s = createServer((client) => {
    // No Nagle on either side: a released chunk goes at once, not after the
    // peer's delayed ACK (40 ms, longer than a step of the test's clock).
    const toServer = netConnect({ host: '127.0.0.1', port: upstream, noDelay: true });
    client.setNoDelay(true);
    up = toServer;
    client.on('error', () => {});
    toServer.on('error', () => {});
    toServer.on('data', (c: Buffer) => {
      if (!client.destroyed) client.write(c);
    });
    client.on('data', (c: Buffer) => {
      if (held || queue.length > 0) queue.push(c);
      else toServer.write(c);
    });
  });
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => {
    up?.destroy();
    s.close();
  });
  return {
    port: (s.address() as AddressInfo).port,
    hold: () => void (held = true),
    async release(bytes) {
      const all = Buffer.concat(queue);
      const now = all.subarray(0, bytes);
      queue = all.length > bytes ? [all.subarray(bytes)] : [];
      if (now.length > 0) up?.write(now);
      await pause();
      return queue.reduce((n, b) => n + b.length, 0);
    },
    open: () => void (held = false),
  };
}

// The answer deadline (ANSWER_TIMEOUT, doc/ERRORS.md) against links and servers
// that test its edges: an honest server must never trip it, a faulty one must.

describe('the answer deadline', () => {
  it('an honest server reading a message through a stalled, then slow uplink, within its own limits: no ANSWER_TIMEOUT', async () => {
    // Defaults: heartbeatMs 15 s, deadAfterMs 45 s, frameTimeoutMs 30 s. One clock for the
    // server and the client, moved by hand; the sockets are real.
    const clock = new FakeClock();
    const s = await server({ clock, sweepMs: 1000 });
    const link = await uplink(s.port);
    const c = await connect({ host: '127.0.0.1', port: link.port, clock, reconnect: false });
    cleanup.push(() => c.close());
    const lost: string[] = [];
    c.on('disconnect', (d) => lost.push(`${d.error?.code} at ${clock.now() - start}: ${d.error?.message}`));
    const start = clock.now();
    const r = room(33);
    await c.join(r, 'alice');

    clock.advance(500);
    link.hold();
    const sent = c.send(r, new Uint8Array(60_000).fill(7)).then(
      (a) => `acked as #${a.seq} at ${clock.now() - start}`,
      (e: { code?: string }) => `${e.code} at ${clock.now() - start}`,
    );
    await pause();
    let stored = -1;
    // The uplink stalls for 44 s (the server, reading nothing, pings at 15 s; the
    // client gets it), then the 60 KB message crawls in over 28 s (2.1 KB/s).
    while (clock.now() - start < 80_000) {
      clock.advance(1_000);
      await pause();
      const t = clock.now() - start;
      // Once all of it is through, the clock waits for the answer: read, stored and
      // acknowledged over real sockets, which a loaded machine may take longer than a step for.
      if (t >= 44_500 && (await link.release(2_100)) === 0) await Promise.race([sent, pause(5_000)]);
      if (stored < 0 && s.stats.messagesIn > 0) stored = t;
    }
    link.open();
    await link.release(1 << 20);
    // The server never found the connection at fault: no READ_TIMEOUT (30 s from the
    // frame's first byte), no HEARTBEAT_TIMEOUT (45 s without reading a byte).
    expect(s.stats.dropped).toEqual({});
    // It stored the message (and sent its ACK) at 72.5 s...
    expect(stored).toBe(72_500);
    // Before, with 3 heartbeats, the client had dropped the connection at 60 s,
    // counting from its write into the socket at 0.5 s, with nothing but PINGs heard since.
    expect({ lost, sent: await sent }).toEqual({ lost: [], sent: 'acked as #1 at 72500' });
  }, 30_000);

  it('a server that pings, its PINGs split in two TCP segments, and never answers a JOIN: the join still fails (ANSWER_TIMEOUT)', async () => {
    // heartbeatMs 100: the answer deadline is 600 ms, checked every 100 ms.
    // Before, the first half of each PING counted as part of an answer arriving.
    const ping = encodeFrame({ type: 'ping', token: 7 });
    const srv = createServer((socket) => {
      const decoder = new FrameDecoder();
      socket.on('error', () => {});
      socket.setNoDelay(true);
      socket.on('data', (chunk: Buffer) => {
        for (const frame of decoder.push(chunk)) {
          if (frame[0] !== 0x01) continue; // only HELLO is answered
          socket.write(welcomeFrame({ agent: 'split-pings', heartbeatMs: 100 }));
          const timer = setInterval(() => {
            if (socket.destroyed) return clearInterval(timer);
            socket.write(ping.subarray(0, 5));
            setTimeout(() => socket.destroyed || socket.write(ping.subarray(5)), 10);
          }, 30);
          socket.on('close', () => clearInterval(timer));
        }
      });
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => srv.close());
    const c = await connect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, reconnect: false });
    cleanup.push(() => c.close());
    const lost: string[] = [];
    c.on('disconnect', (d) => lost.push(`${d.error?.code}`));
    let joining = 'waiting';
    void c.join(room(34), 'alice').then(
      () => void (joining = 'joined'),
      (e: { code?: string }) => void (joining = `${e.code}`),
    );
    await pause(1_500); // two and a half times the deadline
    expect({ lost, joining }).toEqual({ lost: ['ANSWER_TIMEOUT'], joining: 'DISCONNECTED' });
  });
});
