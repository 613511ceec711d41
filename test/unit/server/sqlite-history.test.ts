import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpointer } from '../../../src/server/checkpointer.js';
import { NoHistory } from '../../../src/server/no-history.js';
import { SqliteHistory } from '../../../src/server/sqlite-history.js';
import type { PendingMessage } from '../../../src/server/history.js';
import { until } from '../../helpers/net.js';

const enc = new TextEncoder();
const room = (n: number): Uint8Array => new Uint8Array(16).fill(n);
const mid = (n: number): Uint8Array => {
  const m = new Uint8Array(16);
  new DataView(m.buffer).setUint32(12, n);
  return m;
};
const msg = (r: number, n: number, ts = 1000 + n, body = `body ${n}`): PendingMessage => ({
  room: room(r),
  ts,
  nick: enc.encode('alice'),
  mid: mid(n),
  body: enc.encode(body),
});

function store(messages = 1000, maxAgeMs = 1e12): SqliteHistory {
  return new SqliteHistory({ path: ':memory:', retention: { messages, maxAgeMs } });
}

/** Appends with the relay's rule: the next number after the room's latest. */
function append(s: SqliteHistory, batch: PendingMessage[]): ReturnType<SqliteHistory['append']> {
  const next = new Map<number, number>();
  const roomOf = (i: number): number => (batch[i] as PendingMessage).room[0] as number;
  return s.append(batch, {
    next: (i) => {
      const seq = (next.get(roomOf(i)) ?? s.latest(room(roomOf(i)))) + 1;
      next.set(roomOf(i), seq);
      return seq;
    },
    release: (i) => next.set(roomOf(i), (next.get(roomOf(i)) as number) - 1),
  });
}

describe('SqliteHistory', () => {
  it('stores bodies byte for byte, numbered per room, and reads them back in pages', () => {
    const s = store();
    const results = append(s, [msg(1, 1), msg(1, 2), msg(2, 3), msg(1, 4)]);
    expect(results.map((r) => r.seq)).toEqual([1, 2, 1, 3]);
    expect(s.latest(room(1))).toBe(3);
    expect(s.latest(room(9))).toBe(0);
    const page = s.read(room(1), 1, 10, 1e6);
    expect(page.messages.map((m) => [m.seq, new TextDecoder().decode(m.body)])).toEqual([
      [2, 'body 2'],
      [3, 'body 4'],
    ]);
    expect(page.oldest).toBe(1); // the lowest stored, whatever was asked for
    expect(s.read(room(1), 0, 1, 1e6).messages).toHaveLength(1);
    // By bytes: at least one message, then no more than fits.
    expect(s.read(room(1), 0, 10, 1).messages).toHaveLength(1);
    expect(s.read(room(3), 0, 10, 1e6)).toEqual({ messages: [], oldest: 1 });
  });

  it('recognises a message id it holds: the first sequence number and time, nothing stored', () => {
    const s = store();
    append(s, [msg(1, 1)]);
    const again = append(s, [msg(1, 1, 5000, 'other content'), msg(1, 2)]);
    expect(again).toEqual([
      { seq: 1, ts: 1001, duplicate: true },
      { seq: 2, ts: 1002, duplicate: false },
    ]);
    expect(s.read(room(1), 0, 10, 1e6).messages.map((m) => new TextDecoder().decode(m.body))).toEqual([
      'body 1',
      'body 2',
    ]);
    // The same id in another room is another message.
    expect(append(s, [msg(2, 1)])[0]?.duplicate).toBe(false);
  });

  it('prunes by count per room and by age, keeping the numbering', () => {
    const s = store(3, 10_000);
    append(
      s,
      [1, 2, 3, 4, 5].map((n) => msg(1, n)),
    );
    expect(s.prune(2000)).toBe(2);
    expect(s.read(room(1), 0, 10, 1e6).oldest).toBe(3);
    expect(s.prune(1_000_000)).toBe(3); // all older than 10 s
    expect(s.read(room(1), 0, 10, 1e6)).toEqual({ messages: [], oldest: 6 });
    expect(append(s, [msg(1, 6)])[0]?.seq).toBe(6);
  });

  it('keeps the numbering across reopening, also once prune has cut every message of the room', () => {
    const dir = mkdtempSync(join(tmpdir(), 'confab-latest-'));
    const open = (): SqliteHistory =>
      new SqliteHistory({ path: join(dir, 'h.db'), retention: { messages: 1000, maxAgeMs: 10_000 } });
    try {
      let s = open();
      append(
        s,
        [1, 2, 3, 4, 5].map((n) => msg(1, n)),
      );
      s.close();
      s = open();
      expect(s.latest(room(1))).toBe(5);
      expect(s.prune(1_000_000)).toBe(5); // every message older than 10 s
      s.close();
      s = open();
      expect(s.latest(room(1))).toBe(5);
      expect(s.read(room(1), 0, 10, 1e6)).toEqual({ messages: [], oldest: 6 });
      expect(append(s, [msg(1, 6)])[0]?.seq).toBe(6);
      s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('binds a nick to the first key, case-insensitively, until released', () => {
    const s = store();
    const k1 = new Uint8Array(32).fill(1);
    const k2 = new Uint8Array(32).fill(2);
    expect(s.nickOwner('Bob')).toBeUndefined();
    expect([...s.claimNick('Bob', k1)]).toEqual([...k1]);
    expect([...s.claimNick('BOB', k2)]).toEqual([...k1]);
    expect([...(s.nickOwner('bob') ?? [])]).toEqual([...k1]);
    expect(s.releaseNick('bOb')).toBe(true);
    expect(s.releaseNick('bob')).toBe(false);
    expect([...s.claimNick('bob', k2)]).toEqual([...k2]);
    expect(s.check()).toBe('ok');
  });

  it('fails a write past its size cap with a StoreError, changing nothing, and writes again once there is room', () => {
    const s = new SqliteHistory({ path: ':memory:', retention: { messages: 5, maxAgeMs: 1e12 }, maxBytes: 256 * 1024 });
    const big = (n: number): PendingMessage => msg(1, n, 1000 + n, 'x'.repeat(20_000));
    let n = 0;
    let error: unknown;
    try {
      for (; n < 100; n++) append(s, [big(n)]);
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({ name: 'StoreError', code: 'SQLITE_FULL' });
    const latest = s.latest(room(1));
    expect(latest).toBe(n);
    expect(s.prune(0)).toBeGreaterThan(0); // retention frees pages
    expect(append(s, [big(n)])[0]?.seq).toBe(latest + 1);
    expect(s.check()).toBe('ok');
  });
});

describe('SqliteHistory, full with many rooms', () => {
  it('prunes a full store of 400 rooms; each room keeps its number once all its messages are cut', () => {
    const s = new SqliteHistory({
      path: ':memory:',
      retention: { messages: 1e6, maxAgeMs: 10_000 },
      maxBytes: 512 * 1024,
    });
    const roomN = (n: number): Uint8Array => {
      const r = new Uint8Array(16);
      new DataView(r.buffer).setUint32(0, n);
      return r;
    };
    // 400 rooms, their rows written with each room's first number (1) and brought up to date by prune.
    let full = false;
    let n = 0;
    for (let round = 1; !full && round < 100; round++) {
      for (let r = 0; r < 400 && !full; r++) {
        try {
          const m = {
            room: roomN(r),
            ts: 1000,
            nick: enc.encode('a'),
            mid: mid(++n),
            body: enc.encode('y'.repeat(300)),
          };
          s.append([m], { next: () => s.latest(roomN(r)) + 1, release: () => {} });
        } catch (err) {
          expect(err).toMatchObject({ name: 'StoreError', code: 'SQLITE_FULL' });
          full = true;
        }
      }
    }
    expect(full).toBe(true);
    const before = s.latest(roomN(0));
    expect(before).toBeGreaterThan(1);
    // Every message is past its age: every row must now keep its room's number.
    expect(s.prune(1_000_000)).toBeGreaterThan(0);
    expect(s.latest(roomN(0))).toBe(before);
    expect(s.read(roomN(0), 0, 10, 1e6)).toEqual({ messages: [], oldest: before + 1 });
    expect(s.check()).toBe('ok');
  });
});

describe('background checkpoints', () => {
  it('close settles once the thread has closed too, and the log files are gone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'confab-ckpt-'));
    const path = join(dir, 'history.db');
    try {
      const s = new SqliteHistory({ path, retention: { messages: 1e6, maxAgeMs: 1e12 }, checkpointMs: 20 });
      for (let i = 1; i <= 200; i++) append(s, [msg(1, i, 1000 + i, 'x')]);
      await until(() => (s.checkpointer?.checkpoints ?? 0) > 0);
      s.close();
      await s.closed();
      // The last connection to close removes them: the thread's, which a server that
      // resolved its close() before had still open (a test listing the files met them vanishing).
      expect(readdirSync(dir).sort()).toEqual(['history.db']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('copy the log into the database from another thread, with the writer’s own checkpoints off', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'confab-ckpt-'));
    const path = join(dir, 'history.db');
    try {
      const s = new SqliteHistory({ path, retention: { messages: 1e6, maxAgeMs: 1e12 }, checkpointMs: 20 });
      const empty = statSync(path).size;
      // One commit per message, as a quiet relay makes them: each adds a page or more to the log.
      for (let i = 1; i <= 3000; i++) append(s, [msg(1, i, 1000 + i, 'x'.repeat(200))]);
      await until(() => (s.checkpointer?.checkpoints ?? 0) > 0 && statSync(path).size > empty + 500_000);
      s.close();
      const again = new SqliteHistory({ path, retention: { messages: 1e6, maxAgeMs: 1e12 } });
      expect(again.read(room(1), 0, 5000, 1e9).messages).toHaveLength(3000);
      expect(again.check()).toBe('ok');
      again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keep the log bounded under back-to-back commits (the writer’s backstop starts it over)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'confab-ckpt-'));
    const path = join(dir, 'history.db');
    try {
      const s = new SqliteHistory({ path, retention: { messages: 1e6, maxAgeMs: 1e12 }, checkpointMs: 50 });
      // Each commit adds at least one 4 KiB page: 25,000 of them would make a 100 MB log unchecked.
      let seq = 0;
      let largest = 0;
      while (seq < 25_000) {
        for (let i = 0; i < 500; i++) {
          seq++;
          append(s, [msg(1, seq, 1000 + seq)]);
        }
        largest = Math.max(largest, statSync(`${path}-wal`).size);
        await new Promise((r) => setImmediate(r)); // let the thread's messages in
      }
      s.close();
      expect(largest).toBeLessThan(60 * 1024 * 1024);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a thread that cannot checkpoint, so the writer takes the job back', async () => {
    let failure = '';
    const c = new Checkpointer(join(tmpdir(), 'confab-no-such-dir', 'history.db'), 10, (m) => (failure = m));
    await until(() => failure !== '');
    expect(failure).toMatch(/unable to open|not exist|SQLITE_CANTOPEN|directory/i);
    await c.close(); // settles: the failed thread is gone already
  });
});

describe('NoHistory', () => {
  it('keeps nothing: no duplicates known, nothing to read, no nick owners', () => {
    const s = new NoHistory();
    const seqs = { next: (i: number) => i + 7, release: () => {} };
    expect(s.append([msg(1, 1), msg(1, 1)], seqs).map((r) => r.seq)).toEqual([7, 8]);
    expect(s.read().messages).toEqual([]);
    expect(s.nickOwner()).toBeUndefined();
  });
});
