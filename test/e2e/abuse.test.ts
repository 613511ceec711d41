import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newIdentity } from '../../src/crypto/index.js';
import { encodeFrame, ErrorCode, FrameType } from '../../src/protocol/index.js';
import type { ServerFrame } from '../../src/protocol/index.js';
import { member, room, text } from '../helpers/clients.js';
import type { Recorder } from '../helpers/clients.js';
import type { Proc } from '../helpers/cli.js';
import { serve } from '../helpers/cli.js';
import { RawPeer, rawJoin, until } from '../helpers/net.js';

// The server runs as its own process (the built CLI), so a crash shows as an
// exit, and its memory and file descriptors can be read from procfs.
let server: Proc;
let port = 0;
let alice: Recorder;
let bob: Recorder;
const r = room(9);
let round = 0;

const rss = (): number =>
  Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.child.pid}/status`, 'utf8'))?.[1]) * 1024;
const fds = (): number => readdirSync(`/proc/${server.child.pid}/fd`).length;

beforeAll(async () => {
  ({ proc: server, port } = await serve([
    '--limit',
    'maxConnectionsPerIp=100000',
    '--limit',
    'newRowsPerIp=1000000',
    '--limit',
    'connectionsPerIpPerMinute=100000000',
    '--limit',
    'messageBurst=1000000',
    '--limit',
    'messageIntervalMs=1',
    '--limit',
    'handshakeTimeoutMs=500',
    '--limit',
    'frameTimeoutMs=300',
    // The slow reader must start reading before its dropped socket is destroyed,
    // whatever the machine's pace; 2 s (the default) would make that a race.
    '--limit',
    'closeLingerMs=10000',
    '--log-level',
    'warn',
  ]));
  alice = await member(port, r, 'alice');
  bob = await member(port, r, 'bob');
});

afterAll(async () => {
  await alice.client.close();
  await bob.client.close();
  server.kill('SIGTERM');
  await server.exited;
});

async function stillChatting(): Promise<void> {
  round++;
  await alice.client.send(r, text(`a${round}`));
  await bob.client.send(r, text(`b${round}`));
  await until(() => bob.texts().includes(`alice: a${round}`) && alice.texts().includes(`bob: b${round}`));
}

/**
 * Opens `n` connections, `parallel` at a time, and runs `attack` on each. Each
 * must then either be closed by the server (with a typed error where it can
 * be sent), or, if what it sent happened to be valid, still answer a PING
 * within 15 s.
 */
async function storm(
  n: number,
  attack: (peer: RawPeer, i: number) => Promise<void> | void,
  parallel = 200,
): Promise<void> {
  for (let i = 0; i < n; i += parallel) {
    await Promise.all(
      Array.from({ length: Math.min(parallel, n - i) }, async (_, j) => {
        const peer = await RawPeer.open(port);
        try {
          await attack(peer, i + j);
          // The probe may land inside a frame the attack left open (a SEND's body
          // takes whatever follows), so it is sent again until answered or closed.
          const probe = encodeFrame({ type: 'ping', token: 0xc0ffee });
          const isPong = (f: ServerFrame): boolean => f.type === 'pong' && f.token === 0xc0ffee;
          let answer: ServerFrame | undefined;
          for (let tries = 0; answer === undefined && !peer.closed; tries++) {
            expect(tries, 'a PING answered, or the connection closed').toBeLessThan(30);
            if (!peer.socket.writableEnded) peer.write(probe);
            answer = await peer.next(isPong, 0, 500).catch(() => undefined);
          }
          if (answer === undefined) expect(peer.closed).toBe(true);
        } finally {
          peer.destroy();
        }
      }),
    );
  }
}

const rand = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));
const u32 = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};
const cat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const hello = encodeFrame({ type: 'hello', version: 1, agent: 'fuzz' });
const frame = (type: number, payload: Uint8Array): Uint8Array =>
  cat(u32(1 + payload.length), new Uint8Array([type]), payload);

// Sixteen classes of malformed input (reliability.md §B, mapped onto a binary protocol).
const CLASSES: [string, (peer: RawPeer, i: number) => Promise<void> | void][] = [
  ['length 0', (p) => p.write(cat(hello, u32(0)))],
  ['length over the limit', (p, i) => p.write(cat(hello, u32(65537 + i * 1000)))],
  [
    'length field cut short, then EOF',
    (p, i) => {
      p.write(cat(hello, u32(10).subarray(0, 1 + (i % 3))));
      p.socket.end();
    },
  ],
  [
    'body cut short, then EOF',
    (p, i) => {
      p.write(cat(hello, u32(100), rand(1 + (i % 98))));
      p.socket.end();
    },
  ],
  ['body cut short, then silence', (p, i) => p.write(cat(hello, u32(100), rand(1 + (i % 98))))],
  ['unknown frame type', (p, i) => p.write(cat(hello, frame(0x20 + (i % 0x5f), rand(i % 50))))],
  ['another protocol version', (p, i) => p.write(encodeFrame({ type: 'hello', version: 2 + (i % 60000), agent: 'x' }))],
  [
    'invalid UTF-8 in a text field',
    (p) =>
      p.write(
        frame(FrameType.HELLO, cat(new TextEncoder().encode('CONFAB'), new Uint8Array([0, 1, 3, 0xff, 0xfe, 0xc0]))),
      ),
  ],
  [
    'random payload behind a valid type',
    (p, i) => p.write(cat(hello, frame([2, 3, 4, 0x10, 0x11, 0xff][i % 6] as number, rand(1 + (i % 200))))),
  ],
  [
    'prototype-pollution nicks, then garbage',
    async (p, i) => {
      const nick = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', '__defineGetter__'][
        i % 6
      ] as string;
      await rawJoin(p, room(100 + (i % 7)), `${nick}${i}`.slice(0, 24), newIdentity());
      p.write(u32(0));
    },
  ],
  [
    'length fields that lie inside a frame',
    (p, i) =>
      p.write(cat(hello, frame(FrameType.JOIN, cat(u32(1), rand(16), new Uint8Array([200 + (i % 55)]), rand(10))))),
  ],
  [
    'fields over their limits',
    (p, i) =>
      p.write(
        cat(
          hello,
          frame(
            FrameType.HELLO,
            cat(new TextEncoder().encode('CONFAB'), new Uint8Array([0, 1, 200 + (i % 55)]), rand(255)),
          ),
        ),
      ),
  ],
  ['duplicate HELLO, then garbage', (p) => p.write(cat(hello, hello, u32(0)))],
  [
    'server-only frames from a client',
    (p, i) => p.write(cat(hello, frame([0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88][i % 8] as number, rand(40)))),
  ],
  ['random bytes', (p, i) => p.write(rand(1 + (i % 300)))],
  [
    'valid frames interleaved with garbage',
    (p, i) =>
      p.write(cat(hello, encodeFrame({ type: 'ping', token: i }), rand(5), encodeFrame({ type: 'ping', token: i }))),
  ],
];

describe('abuse against a running server (its own process)', () => {
  it('1,000 connections announcing a 1 GiB frame are closed and add under 10 MB', async () => {
    const attack = (p: RawPeer): void => p.write(cat(hello, u32(1 << 30), new Uint8Array([4])));
    await storm(200, attack); // warm-up: let the heap reach its working size first
    const before = rss();
    await storm(1000, attack);
    const after = rss();
    console.log(
      `frame cap: 1000 × 1 GiB announced; server RSS ${(before / 1e6).toFixed(1)} MB → ${(after / 1e6).toFixed(1)} MB`,
    );
    expect(after - before).toBeLessThan(10 * 1024 * 1024);
    await stillChatting();
  });

  it(
    '16 classes × 1,000 malformed inputs: no crash, no leaked sockets, the others keep chatting',
    { timeout: 300_000 },
    async () => {
      const baseFds = fds();
      const counts: string[] = [];
      for (const [name, attack] of CLASSES) {
        await storm(1000, attack).catch((err: unknown) => {
          throw new Error(`class "${name}": ${String(err)}`);
        });
        expect(server.child.exitCode, `server alive after "${name}"`).toBeNull();
        await stillChatting();
        counts.push(name);
      }
      await until(() => fds() <= baseFds + 2, 10_000, 'file descriptors back to baseline');
      console.log(`malformed input: ${counts.length} classes × 1000 inputs; server alive, fds ${baseFds} → ${fds()}`);
      expect(server.stderr.filter((l) => /unhandled|uncaught|TypeError|RangeError/i.test(l))).toEqual([]);
    },
  );

  it('answers one FETCH at a time: 1,000 in one packet get one page, then RATE_LIMITED, then the door; memory stays flat', async () => {
    const fr = room(12);
    const writer = await member(port, fr, 'archivist');
    try {
      // 300 messages of 8 KB: every FETCH could be answered with a full 128 KiB page.
      const body = new Uint8Array(8000).fill(0x62);
      for (let i = 0; i < 300; i++) await writer.client.send(fr, body);
      const peer = await RawPeer.open(port);
      await rawJoin(peer, fr, 'hoarder');
      const before = rss();
      // 35 bytes asking for 128 KiB, a thousand times over, in one write.
      const fetches = Array.from({ length: 1000 }, (_, i) =>
        encodeFrame({ type: 'fetch', rid: 100 + i, room: fr, after: 0, limit: 1000 }),
      );
      peer.write(cat(...fetches));
      await peer.closedByServer(10_000);
      const after = rss();
      const pages = peer.frames.filter((f) => f.type === 'fetched').length;
      const refused = peer.frames.filter((f) => f.type === 'error' && f.code === ErrorCode.RATE_LIMITED).length;
      console.log(
        `FETCH flood: 1000 FETCHes in one packet; ${pages} answered, ${refused} refused with RATE_LIMITED; ` +
          `server RSS ${(before / 1e6).toFixed(1)} → ${(after / 1e6).toFixed(1)} MB`,
      );
      // One page; two if the packet happened to arrive in two reads.
      expect(pages).toBeLessThanOrEqual(2);
      expect(peer.error()?.code).toBe(ErrorCode.RATE_LIMITED);
      const last = peer.frames.at(-1);
      expect(last?.type === 'error' && last.fatal).toBe(true);
      // Answering them all would have queued 1,000 pages: 128 MB.
      expect(after - before).toBeLessThan(16 * 1024 * 1024);
      await stillChatting();
    } finally {
      await writer.client.close();
    }
  });

  it('drops a member that stops reading with SENDQ_EXCEEDED while 50 others talk; they lose nothing; server memory stays bounded; it reads why, and resumes from history', async () => {
    const rr = room(11);
    const talkers = await Promise.all(Array.from({ length: 50 }, (_, i) => member(port, rr, `t${i}`)));
    try {
      // 50 × 40 messages of 8 KB: 16 MB towards a reader that stops, far past what
      // loopback's kernel buffers hold, so the server's own queue (256 KiB) must fill.
      const body = new Uint8Array(8000).fill(0x61);
      const talk = async (): Promise<void> => {
        for (let round = 0; round < 40; round++) await Promise.all(talkers.map((t) => t.client.send(rr, body)));
      };
      const allGot = async (n: number): Promise<void> => {
        for (const t of talkers) await until(() => t.events.message.length === n, 20_000, 'every talker gets all');
      };
      // The same traffic once before the slow reader joins, so the heap and the
      // allocator reach their working size and the measure below sees what a
      // stuck reader adds, not the first 784 MB of fan-out.
      await talk();
      await allGot(49 * 40);
      const slow = await RawPeer.open(port);
      const identity = newIdentity();
      await rawJoin(slow, rr, 'slow', identity);
      const joined = slow.frames.find((f) => f.type === 'joined');
      const seenUpTo = joined?.type === 'joined' ? joined.seq : -1;
      slow.socket.pause(); // stops reading: the kernel buffers fill, then the server's queue
      const before = rss();
      const talking = talk();
      const t0 = talkers[0] as Recorder;
      await until(() => t0.events.leave.some((l) => l.nick === 'slow'), 10_000, 'slow member to be dropped');
      // Reading again (the server waits closeLingerMs), it gets what was queued, then why it was cut.
      slow.socket.resume();
      await talking;
      await slow.closedByServer(5000);
      const last = slow.frames.at(-1);
      expect(last?.type === 'error' && last.fatal ? last.code : last?.type).toBe(ErrorCode.SENDQ_EXCEEDED);
      await allGot(2 * 49 * 40);
      const after = rss();
      slow.destroy();
      console.log(
        `slow reader: dropped; 50 talkers got ${49 * 40} messages each (${((50 * 49 * 40 * 8000) / 1e6).toFixed(0)} MB fanned out); ` +
          `server RSS ${(before / 1e6).toFixed(1)} → ${(after / 1e6).toFixed(1)} MB`,
      );
      expect(after - before).toBeLessThan(64 * 1024 * 1024);
      // Its messages are not lost to it: back, it catches up from history, each once.
      const back = await member(port, rr, 'slow', { identity }, { cursor: seenUpTo });
      try {
        await until(() => back.events.message.length >= 50 * 40, 20_000, 'the slow reader to catch up');
        const seqs = back.events.message.map((m) => m.seq);
        expect(new Set(seqs).size).toBe(50 * 40);
        expect(seqs[0]).toBe(seenUpTo + 1);
        expect(back.events.missed).toEqual([]);
        console.log(`slow reader: back with cursor ${seenUpTo}, caught up on ${seqs.length} messages from history`);
      } finally {
        await back.client.close();
      }
      await stillChatting();
    } finally {
      await Promise.all(talkers.map((t) => t.client.close()));
    }
  });
});
