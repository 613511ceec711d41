import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { createServer, connect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DirectWriter, fanoutAddon, remainder, socketFd } from '../../../src/server/direct-write.js';
import type { DirectTarget, FanoutAddon } from '../../../src/server/direct-write.js';
import { until } from '../../helpers/net.js';

/** `count` loopback TCP pairs: the server side writes, the client side reads. */
async function pairs(count: number): Promise<{ writers: Socket[]; readers: Socket[]; close: () => void }> {
  const writers: Socket[] = [];
  const server: Server = createServer((s) => writers.push(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const readers: Socket[] = [];
  for (let i = 0; i < count; i++) {
    const r = connect(port, '127.0.0.1');
    await once(r, 'connect');
    readers.push(r);
  }
  while (writers.length < count) await new Promise((r) => setTimeout(r, 5));
  for (const s of [...writers, ...readers]) s.on('error', () => {});
  return {
    writers,
    readers,
    close() {
      for (const s of [...writers, ...readers]) s.destroy();
      server.close();
    },
  };
}

/** A connection stand-in: queued bytes, and a record of what went to the stream. */
class Target implements DirectTarget {
  readonly fd: number;
  readonly socket: Socket;
  out: Uint8Array[] = [];
  streamed = 0;
  constructor(socket: Socket, fd = socketFd(socket)) {
    this.socket = socket;
    this.fd = fd;
  }
  takeOutput(): Uint8Array | Uint8Array[] | null {
    const out = this.out;
    this.out = [];
    return out.length === 0 ? null : out.length === 1 ? (out[0] as Uint8Array) : out;
  }
  writeStream(out: Uint8Array | Uint8Array[]): void {
    this.streamed++;
    for (const b of Array.isArray(out) ? out : [out]) this.socket.write(b);
  }
}

/** One turn as the batcher runs it: each target added, from `start` round, then one call. */
function writeTurn(writer: DirectWriter, targets: Target[], start = 0): void {
  for (const t of [...targets.slice(start), ...targets.slice(0, start)]) writer.add(t);
  writer.finish();
}

/** Everything a reader receives, concatenated. */
function collect(reader: Socket): () => Buffer {
  const got: Buffer[] = [];
  reader.on('data', (c: Buffer) => got.push(c));
  return () => Buffer.concat(got);
}

/**
 * Waits until reader i has `want[i]`, checks it got exactly that, and that
 * the kernel took every write at once (nothing went to the streams).
 */
async function expectAllSent(reads: (() => Buffer)[], want: Buffer[], targets: Target[]): Promise<void> {
  await until(() => reads.every((r, i) => r().length >= (want[i] as Buffer).length));
  reads.forEach((r, i) => expect(r().equals(want[i] as Buffer)).toBe(true));
  expect(targets.every((t) => t.streamed === 0)).toBe(true);
}

/** A buffer of `n` bytes counting up from `from` (mod 256), so a lost or reordered byte shows. */
const counting = (from: number, n: number): Buffer =>
  Buffer.from(Array.from({ length: n }, (_, i) => (from + i) & 255));

const open: (() => void)[] = [];
afterEach(() => {
  while (open.length > 0) open.pop()?.();
});

// npm ci compiles native/fanout.c with the compiler better-sqlite3 already
// needs; elsewhere (no compiler, Windows) the relay falls back to streams.
it.runIf(process.platform === 'linux')('the native fan-out is built by the install step on Linux', () => {
  expect(fanoutAddon).not.toBeNull();
});

// io_uring is there unless the kernel is older than 5.18 or a sysctl or a
// seccomp profile forbids it; where it is, both ways of writing run every test.
const ways = [
  { way: 'send() per socket', ring: false },
  ...(fanoutAddon?.ringReady() === true ? [{ way: 'io_uring', ring: true }] : []),
];

describe.runIf(fanoutAddon !== null).each(ways)('native fan-out, $way', ({ ring }) => {
  const addon = fanoutAddon as FanoutAddon;
  const writeMany = ring ? addon.ringWriteMany : addon.writeMany;

  it('gives each socket its own run of chunks, shared buffers included, in order', async () => {
    const p = await pairs(20);
    open.push(p.close);
    const reads = p.readers.map(collect);
    const targets = p.writers.map((w) => new Target(w));
    const writer = new DirectWriter(addon, ring);
    const expected = targets.map(() => [] as Buffer[]);
    for (let turn = 0; turn < 50; turn++) {
      const shared = counting(turn, 100);
      targets.forEach((t, i) => {
        const own = Buffer.from(`turn ${turn} socket ${i};`);
        t.out.push(shared, own);
        expected[i]?.push(shared, own);
      });
      writeTurn(writer, targets, turn % targets.length);
    }
    // Readers keep up: the kernel takes everything, nothing goes to the streams.
    await expectAllSent(
      reads,
      expected.map((e) => Buffer.concat(e)),
      targets,
    );
  });

  it('hands what the kernel will not take to the stream, which delivers it after, in order', async () => {
    const p = await pairs(2);
    open.push(p.close);
    const [slow, fast] = p.readers as [Socket, Socket];
    slow.pause(); // its kernel buffers fill
    const targets = p.writers.map((w) => new Target(w));
    const writer = new DirectWriter(addon, ring);
    const chunk = 64 * 1024;
    const total = 8 * 1024 * 1024;
    for (let at = 0; at < total; at += chunk) {
      for (const t of targets) t.out.push(counting(at, chunk));
      writeTurn(writer, targets);
    }
    const slowTarget = targets[0] as Target;
    // The kernel stopped taking bytes for the slow reader; from then on its bytes queue in the stream.
    expect(slowTarget.streamed).toBeGreaterThan(0);
    expect(slowTarget.socket.writableLength).toBeGreaterThan(0);
    const readSlow = collect(slow);
    const readFast = collect(fast);
    slow.resume();
    await until(() => readSlow().length >= total && readFast().length >= total, 20_000, 'both readers have everything');
    expect(readSlow().equals(counting(0, total))).toBe(true);
    expect(readFast().equals(counting(0, total))).toBe(true);
  });

  it('sends only the first 64 pieces in one call; the rest follows through the stream, in order', async () => {
    const p = await pairs(1);
    open.push(p.close);
    const read = collect(p.readers[0] as Socket);
    const t = new Target(p.writers[0] as Socket);
    for (let i = 0; i < 100; i++) t.out.push(counting(i * 10, 10));
    writeTurn(new DirectWriter(addon, ring), [t]);
    expect(t.streamed).toBe(1);
    await until(() => read().length >= 1000);
    expect(read().equals(counting(0, 1000))).toBe(true);
  });

  it('leaves a socket whose peer has gone to the stream, which reports it; the other sockets are written', async () => {
    const p = await pairs(3);
    open.push(p.close);
    const reads = p.readers.map(collect);
    const gone = p.readers[1] as Socket;
    gone.resetAndDestroy();
    // events.once would reject on the 'error' that comes first.
    const closed = new Promise((r) => (p.writers[1] as Socket).once('close', r));
    await new Promise((r) => setTimeout(r, 50));
    const targets = p.writers.map((w) => new Target(w));
    const writer = new DirectWriter(addon, ring);
    for (let i = 0; i < 3; i++) {
      for (const t of targets) if (!t.socket.destroyed) t.out.push(Buffer.from('hello'));
      writeTurn(
        writer,
        targets.filter((t) => !t.socket.destroyed),
      );
    }
    await closed;
    await until(() => (reads[0] as () => Buffer)().length >= 15 && (reads[2] as () => Buffer)().length >= 15);
    expect((reads[0] as () => Buffer)().toString()).toBe('hellohellohello');
    expect((reads[2] as () => Buffer)().toString()).toBe('hellohellohello');
  });

  it('writes a turn of more sockets than one io_uring batch (256) to every one of them', async () => {
    const p = await pairs(300);
    open.push(p.close);
    const reads = p.readers.map(collect);
    const targets = p.writers.map((w) => new Target(w));
    const writer = new DirectWriter(addon, ring);
    const shared = counting(7, 200);
    // Every third socket gets two pieces (sendmsg), the rest the shared buffer alone (send).
    targets.forEach((t, i) => t.out.push(...(i % 3 === 0 ? [shared, Buffer.from(`#${i}`)] : [shared])));
    writeTurn(writer, targets, 17);
    const want = targets.map((_, i) => Buffer.concat(i % 3 === 0 ? [shared, Buffer.from(`#${i}`)] : [shared]));
    await expectAllSent(reads, want, targets);
  });

  it('reports, socket by socket, the bytes taken or -errno (a file, a closed descriptor) without stopping', async () => {
    const p = await pairs(2);
    open.push(p.close);
    const reads = p.readers.map(collect);
    const file = openSync(fileURLToPath(import.meta.url), 'r');
    const closed = openSync(fileURLToPath(import.meta.url), 'r');
    closeSync(closed);
    try {
      const fds = [socketFd(p.writers[0] as Socket), file, closed, socketFd(p.writers[1] as Socket)];
      const bufs = [Buffer.from('shared'), Buffer.from('+own')];
      const results = new Int32Array(4);
      // Socket 0: shared; the file: shared; the closed one: shared + own; socket 1: shared + own.
      writeMany(
        new Int32Array(fds),
        4,
        bufs,
        new Int32Array([0, 0, 0, 1, 0, 1]),
        new Int32Array([1, 2, 4, 6]),
        results,
      );
      expect([...results]).toEqual([6, -constants.errno.ENOTSOCK, -constants.errno.EBADF, 10]);
    } finally {
      closeSync(file);
    }
    await until(() => (reads[1] as () => Buffer)().length >= 10);
    expect((reads[0] as () => Buffer)().toString()).toBe('shared');
    expect((reads[1] as () => Buffer)().toString()).toBe('shared+own');
  });

  it('refuses arguments of the wrong shape with a TypeError, before writing to any socket', async () => {
    const p = await pairs(1);
    open.push(p.close);
    const read = collect(p.readers[0] as Socket);
    const fd = socketFd(p.writers[0] as Socket);
    const ok = Buffer.from('must not be sent');
    const results = new Int32Array(2);
    const refs = (...r: number[]): Int32Array => new Int32Array(r);
    const call = (fds: number[], count: number, bufs: unknown[], r: Int32Array, ends: number[]) => () =>
      writeMany(new Int32Array(fds), count, bufs as Uint8Array[], r, new Int32Array(ends), results);
    // More sockets than the arrays hold; ends past refs; a ref past bufs; a buffer that isn't one.
    expect(call([fd], 2, [ok], refs(0), [1, 1])).toThrow(TypeError);
    expect(call([fd, fd], 2, [ok], refs(0), [1, 2])).toThrow(TypeError);
    expect(call([fd, fd], 2, [ok], refs(0, 1), [1, 2])).toThrow(TypeError);
    expect(call([fd], 1, ['text'], refs(0), [1])).toThrow(TypeError);
    await new Promise((r) => setTimeout(r, 50));
    expect(read().length).toBe(0);
  });
});

/** A stand-in addon whose every way of writing is `writeMany`. */
const fake = (writeMany: FanoutAddon['writeMany']): FanoutAddon => ({
  writeMany,
  ringWriteMany: writeMany,
  ringReady: () => false,
});

describe('DirectWriter', () => {
  it('hands the stream what the kernel did not take: all of it after -errno, the rest after a partial send', async () => {
    const EAGAIN = -11;
    const EPIPE = -32;
    const addon = fake((_fds, _count, _bufs, _refs, _ends, results) => results.set([EAGAIN, 3, EPIPE, 5]));
    const p = await pairs(4);
    open.push(p.close);
    const targets = p.writers.map((w) => new Target(w));
    const streamed: string[] = [];
    for (const t of targets) {
      t.out.push(Buffer.from('hello'));
      t.writeStream = (out) => void streamed.push(Buffer.concat(Array.isArray(out) ? out : [out]).toString());
    }
    writeTurn(new DirectWriter(addon), targets);
    expect(streamed).toEqual(['hello', 'lo', 'hello']);
  });

  it('gives the streams the whole turn if the addon throws, and starts the next turn clean', async () => {
    const counts: number[] = [];
    const addon = fake((_fds, count, bufs, _refs, ends, results) => {
      counts.push(count, bufs.length, ends[count - 1] ?? -1);
      if (counts.length === 3) throw new TypeError('bad call');
      results.fill(5, 0, count);
    });
    const p = await pairs(2);
    open.push(p.close);
    const targets = p.writers.map((w) => new Target(w));
    const writer = new DirectWriter(addon, true);
    for (const t of targets) t.out.push(Buffer.from('first'));
    writeTurn(writer, targets);
    expect(targets.map((t) => t.streamed)).toEqual([1, 1]);
    for (const t of targets) t.out.push(Buffer.from('again'));
    writeTurn(writer, targets);
    expect(targets.map((t) => t.streamed)).toEqual([1, 1]);
    // Each turn: 2 sockets, 2 buffers, 2 references; nothing left over from the failed one.
    expect(counts).toEqual([2, 2, 2, 2, 2, 2]);
  });

  it('writes a socket without a descriptor, or one with bytes already queued, through its stream', async () => {
    const calls: number[] = [];
    const addon = fake((_fds, count) => void calls.push(count));
    const p = await pairs(2);
    open.push(p.close);
    const noFd = new Target(p.writers[0] as Socket, -1);
    const busy = new Target(p.writers[1] as Socket);
    busy.socket.cork();
    busy.socket.write('queued ');
    noFd.out.push(Buffer.from('a'));
    busy.out.push(Buffer.from('b'));
    writeTurn(new DirectWriter(addon), [noFd, busy]);
    busy.socket.uncork();
    expect(calls).toEqual([]);
    expect(noFd.streamed + busy.streamed).toBe(2);
  });
});

describe('remainder', () => {
  const b = (s: string): Uint8Array => Buffer.from(s);
  const text = (x: Uint8Array | Uint8Array[] | null): string | null =>
    x === null ? null : Buffer.concat(Array.isArray(x) ? x : [x]).toString();

  it('is what the kernel did not take, across piece boundaries', () => {
    expect(text(remainder(b('hello'), 0))).toBe('hello');
    expect(text(remainder(b('hello'), 2))).toBe('llo');
    expect(remainder(b('hello'), 5)).toBeNull();
    expect(text(remainder([b('ab'), b('cd'), b('ef')], 3))).toBe('def');
    expect(text(remainder([b('ab'), b('cd'), b('ef')], 4))).toBe('ef');
    expect(remainder([b('ab'), b('cd')], 4)).toBeNull();
  });
});
