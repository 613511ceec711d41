import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpointer } from '../../../src/server/checkpointer.js';
import { NoHistory } from '../../../src/server/no-history.js';
import Database from 'better-sqlite3';
import { SqliteHistory } from '../../../src/server/sqlite-history.js';
import { recordBytes, storedSize, storedSizeSql, waterLevel } from '../../../src/server/store-size.js';
import type { Eviction } from '../../../src/server/sqlite-history.js';
import type { PendingMessage } from '../../../src/server/history.js';
import { mountTmpfs } from '../../helpers/tmpfs.js';
import { StoreError } from '../../../src/server/history.js';
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

/** A 16-byte id numbered in its first bytes. */
function id16(n: number): Uint8Array {
  const id = new Uint8Array(16);
  new DataView(id.buffer).setUint32(0, n);
  return id;
}

/** An in-memory store that keeps everything but for its size cap; `evictions` collects what it evicts. */
function capped(maxBytes: number, evictions?: Eviction[]): SqliteHistory {
  return new SqliteHistory({
    path: ':memory:',
    retention: { messages: 1e6, maxAgeMs: 1e12 },
    maxBytes,
    ...(evictions !== undefined ? { onEvict: (e: Eviction) => evictions.push(e) } : {}),
  });
}

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
    restart: () => next.clear(),
  });
}

describe('SqliteHistory', () => {
  it('knows a room once it is added or holds a message; adding it again changes nothing', () => {
    const s = store();
    expect(s.lookupRoom(room(1)).stored).toBe(false);
    s.addRoom(room(1));
    expect(s.lookupRoom(room(1)).stored).toBe(true);
    expect(s.latest(room(1))).toBe(0);
    append(s, [msg(1, 1), msg(1, 2), msg(2, 3)]);
    expect(s.latest(room(1))).toBe(2);
    expect(s.lookupRoom(room(2)).stored).toBe(true); // its row is written with its first message
    s.addRoom(room(2));
    expect(s.latest(room(2))).toBe(1);
    s.prune(1e13); // everything expires: the rows keep the numbers
    expect([s.latest(room(1)), s.latest(room(2))]).toEqual([2, 1]);
    expect(new NoHistory().lookupRoom().stored).toBe(false);
    s.close();
  });

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

  it('prunes in steps of at most so many rooms, each pass going through every room once', () => {
    const s = store(1000, 10_000);
    for (const r of [1, 2, 3, 4, 5]) append(s, [msg(r, 1), msg(r, 2)]);
    const left = (): number[] => [1, 2, 3, 4, 5].map((r) => s.read(room(r), 0, 10, 1e6).messages.length);
    // Everything is past its age: each step cuts the next two rooms, in order.
    expect(s.pruneSome(1_000_000, 2)).toEqual({ removed: 4, done: false });
    expect(left()).toEqual([0, 0, 2, 2, 2]);
    // A room that comes in behind the pass waits for the next one.
    append(s, [msg(1, 3)]);
    expect(s.pruneSome(1_000_000, 2)).toEqual({ removed: 4, done: false });
    expect(s.pruneSome(1_000_000, 2)).toEqual({ removed: 2, done: true });
    expect(left()).toEqual([1, 0, 0, 0, 0]);
    // The next pass starts again at the first room.
    expect(s.pruneSome(1_000_000, 2)).toEqual({ removed: 1, done: false });
    expect(left()).toEqual([0, 0, 0, 0, 0]);
    // A whole pass at once (prune) starts from the first room too, wherever a pass in steps was.
    for (const r of [1, 2, 3]) append(s, [msg(r, 10)]);
    expect(s.pruneSome(1_000_000, 1)).toEqual({ removed: 1, done: false });
    expect(s.prune(1_000_000)).toBe(2);
    expect(s.pruneSome(1_000_000, 10)).toEqual({ removed: 0, done: true });
  });

  it('starts a pass again at the first room after a step that failed', () => {
    const s = store(1000, 10_000);
    const rooms = [1, 2, 3, 4];
    for (const r of rooms) append(s, [msg(r, 1)]);
    const left = (): number[] => rooms.map((r) => s.read(room(r), 0, 10, 1e6).messages.length);
    const inner = s as unknown as { pruneRoom: (...a: unknown[]) => { n: number }; writePending: () => void };
    const failOnce = (name: 'pruneRoom' | 'writePending', call: number): void => {
      const real = inner[name] as (...a: unknown[]) => never;
      let calls = 0;
      (inner as Record<string, unknown>)[name] = (...a: unknown[]) => {
        if (++calls === call) {
          (inner as Record<string, unknown>)[name] = real;
          throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
        }
        return real.apply(s, a);
      };
    };
    expect(s.pruneSome(1_000_000, 1)).toEqual({ removed: 1, done: false });
    // A step fails part-way, after room 2 (a busy or full store)...
    failOnce('pruneRoom', 2);
    expect(() => s.pruneSome(1_000_000, 3)).toThrow(StoreError);
    expect(left()).toEqual([0, 0, 1, 1]);
    // ...the next pass covers every room, from the first (room 1 has a message again).
    append(s, [msg(1, 2)]);
    expect(s.pruneSome(1_000_000, 10)).toEqual({ removed: 3, done: true });
    // A pass's last step fails as it writes the sizes...
    for (const r of rooms) append(s, [msg(r, 3)]);
    failOnce('writePending', 1);
    expect(() => s.pruneSome(1_000_000, 10)).toThrow(StoreError);
    expect(left()).toEqual([0, 0, 0, 0]);
    // ...and the next pass is a whole one again, not an empty step at the end of the last.
    for (const r of rooms) append(s, [msg(r, 4)]);
    expect(s.pruneSome(1_000_000, 10)).toEqual({ removed: 4, done: true });
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

  it('makes room when full: evicts the oldest of the largest room, so writes go on, and a room below the level keeps all', () => {
    const evictions: Eviction[] = [];
    const s = capped(1024 * 1024, evictions);
    // A quiet room first, then a flood into another: four times the cap.
    for (let n = 1; n <= 20; n++) append(s, [msg(2, n, 1000 + n, 'q'.repeat(500))]);
    const big = (n: number): PendingMessage => msg(1, 100 + n, 2000 + n, 'x'.repeat(20_000));
    for (let n = 1; n <= 200; n++) expect(append(s, [big(n)])[0]?.seq).toBe(n);
    expect(evictions.length).toBeGreaterThan(0);
    expect(evictions.every((e) => e.rooms === 1 && e.messages > 0)).toBe(true);
    expect(s.evicted).toBe(evictions.reduce((sum, e) => sum + e.messages, 0));
    // The quiet room lost nothing; the flood kept its newest, numbered on.
    expect(s.read(room(2), 0, 100, 1e6).messages.map((m) => m.seq)).toEqual(range(1, 20));
    const flood = s.read(room(1), 0, 1000, 1e9);
    expect(flood.oldest).toBe(s.evicted + 1);
    expect(flood.messages.map((m) => m.seq)).toEqual(range(s.evicted + 1, 200));
    expect(s.latest(room(1))).toBe(200);
    expect(s.check()).toBe('ok');
  });

  it('takes the largest rooms down to a common level, oldest first; smaller rooms keep all, numbers are kept', () => {
    const s = capped(512 * 1024);
    const roomN = id16;
    // 40 rooms of 1 message and 4 rooms of 40 (each row fits its page), then one more room until the store evicts.
    let id = 0;
    const put = (r: number, count: number, size: number): void => {
      for (let i = 0; i < count; i++) {
        const m = { room: roomN(r), ts: 1000 + id, nick: enc.encode('a'), mid: mid(++id), body: new Uint8Array(size) };
        s.append([m], { next: () => s.latest(roomN(r)) + 1, release: () => {}, restart: () => {} });
      }
    };
    for (let r = 0; r < 40; r++) put(r, 1, 300);
    for (let r = 40; r < 44; r++) put(r, 40, 900);
    expect(s.evicted).toBe(0);
    for (let i = 0; s.evicted === 0 && i < 1000; i++) put(44, 1, 900);
    expect(s.evicted).toBeGreaterThan(0);
    for (let r = 0; r < 40; r++) expect(s.read(roomN(r), 0, 10, 1e6).messages).toHaveLength(1);
    // The largest was the filling room; what is left of the rest is each room's newest.
    for (let r = 40; r <= 44; r++) {
      const page = s.read(roomN(r), 0, 1000, 1e9);
      const latest = s.latest(roomN(r));
      expect(page.messages.map((m) => m.seq)).toEqual(range(page.oldest, latest));
    }
    expect(s.latest(roomN(44))).toBeGreaterThan(40);
    expect(s.check()).toBe('ok');
  });

  it('evicts for nick claims too, and refuses one with SQLITE_FULL once nothing is left to evict', () => {
    const s = capped(256 * 1024);
    for (let n = 1; n <= 10; n++) append(s, [msg(1, n, 1000 + n, 'x'.repeat(3000))]);
    let error: unknown;
    try {
      for (let n = 0; n < 10_000; n++) s.claimNick(`nick-${n}-${'n'.repeat(60)}`, new Uint8Array(32).fill(n % 256));
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({ name: 'StoreError', code: 'SQLITE_FULL' });
    expect(s.evicted).toBe(10); // the messages made way first
    expect(s.latest(room(1))).toBe(10);
    expect(s.check()).toBe('ok');
  });

  it('evicts for room rows too, refuses one with SQLITE_FULL once nothing is left, and an emptied room keeps its number', () => {
    const s = capped(256 * 1024);
    s.addRoom(room(1)); // joined before its messages: the row says 0
    for (let n = 1; n <= 10; n++) append(s, [msg(1, n, 1000 + n, 'x'.repeat(3000))]);
    let error: unknown;
    try {
      for (let n = 0; n < 100_000; n++) s.addRoom(id16(n + 1_000_000));
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({ name: 'StoreError', code: 'SQLITE_FULL' });
    expect(s.evicted).toBe(10); // the messages made way first
    expect(s.read(room(1), 0, 100, 1e6).messages).toEqual([]);
    expect(s.latest(room(1))).toBe(10); // the row took the number as eviction emptied the room
    expect(s.lookupRoom(id16(1_000_000)).stored).toBe(true);
    expect(s.check()).toBe('ok');
  });

  it('a room joined on file is known after a restart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'confab-rooms-'));
    try {
      const path = join(dir, 'history.db');
      const retention = { messages: 1000, maxAgeMs: 1e12 };
      const s = new SqliteHistory({ path, retention });
      s.addRoom(room(3));
      s.close();
      const again = new SqliteHistory({ path, retention });
      expect(again.lookupRoom(room(3)).stored).toBe(true);
      expect(again.lookupRoom(room(4)).stored).toBe(false);
      expect(again.latest(room(3))).toBe(0);
      again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('prunes by count and age in one cut, keeping each room’s number once all its messages are cut', () => {
    const s = store(5, 10_000);
    for (let n = 1; n <= 12; n++) append(s, [msg(1, n, n <= 9 ? 1000 : 50_000)]);
    append(s, [msg(2, 100, 1000)]);
    // Room 1: count keeps 8–12, age keeps 10–12. Room 2: all expired.
    expect(s.prune(30_000)).toBe(9 + 1);
    expect(s.read(room(1), 0, 100, 1e6).messages.map((m) => m.seq)).toEqual([10, 11, 12]);
    expect(s.read(room(2), 0, 100, 1e6)).toEqual({ messages: [], oldest: 2 });
    expect(s.latest(room(2))).toBe(1);
  });

  it('prunes by age after the count when the clock went back: the first kept by age is looked for among what the count keeps', () => {
    const s = store(5, 10_000);
    // Message 3 is stamped late (the clock went back after it); 8 and 9 are old.
    for (let n = 1; n <= 12; n++) append(s, [msg(1, n, n === 3 || n >= 10 ? 50_000 : 1000)]);
    expect(s.prune(30_000)).toBe(9);
    expect(s.read(room(1), 0, 100, 1e6).messages.map((m) => m.seq)).toEqual([10, 11, 12]);
  });
});

describe('SqliteHistory at its cap', () => {
  // Ids spread over the key space, as random ones are.
  const roomN = (n: number): Uint8Array => new Uint8Array(createHash('sha256').update(String(n)).digest());
  let midN = 1e6;
  const one = (r: Uint8Array, size: number): PendingMessage => ({
    room: r,
    ts: 1000,
    nick: enc.encode('a'),
    mid: mid(++midN),
    body: new Uint8Array(size),
  });
  const put = (s: SqliteHistory, batch: PendingMessage[]): number => {
    const byRoom = new Map<Uint8Array, number>();
    return (
      s.append(batch, {
        next: (i) => {
          const r = (batch[i] as PendingMessage).room;
          const seq = (byRoom.get(r) ?? s.latest(r)) + 1;
          byRoom.set(r, seq);
          return seq;
        },
        release: (i) => {
          const r = (batch[i] as PendingMessage).room;
          byRoom.set(r, (byRoom.get(r) as number) - 1);
        },
        restart: () => byRoom.clear(),
      })[0]?.seq ?? 0
    );
  };
  const pages = (s: SqliteHistory): number => raw(s).pragma('page_count', { simple: true }) as number;

  for (const pruned of [false, true]) {
    it(`evicts with thousands of rooms whose sizes ${pruned ? 'were' : 'were never'} written: the deletes come first, so no row needs a page before`, () => {
      // Whether a row that grows needs a page at the cap depends on where the ids fall: several sets of them.
      for (let trial = 0; trial < 6; trial++) {
        const id = (n: number): Uint8Array => roomN(trial * 1_000_000 + n);
        const s = capped(4 << 20);
        for (let r = 0; r < 3000; r++) put(s, [one(id(r), 100)]);
        if (pruned) s.prune(2000);
        const flood = id(99_999);
        for (let n = 1; n <= 5000; n++) expect(put(s, [one(flood, 900)])).toBe(n);
        expect(s.evicted).toBeGreaterThan(0);
        for (const r of [0, 1500, 2999]) expect(s.read(id(r), 0, 10, 1e6).messages).toHaveLength(1);
        // And prune still works on the full store.
        expect(s.prune(2e12)).toBe(3000 + 5000 - s.evicted);
        expect(put(s, [one(flood, 900)])).toBe(5001);
        expect(s.check()).toBe('ok');
        s.close();
      }
    });
  }

  it('with rooms tied at the top, cuts the oldest of as many of them as free a sixteenth of the cap, and stops', () => {
    const evictions: Eviction[] = [];
    const s = capped(4 << 20, evictions);
    for (let round = 0; evictions.length === 0 && round < 100; round++) {
      for (let r = 0; r < 300 && evictions.length === 0; r++) put(s, [one(roomN(r), 3000)]);
    }
    const target = (4 << 20) / 16;
    const each = storedSize(1, 3000, 10, 1000, 4096);
    expect(evictions[0]?.bytes).toBeGreaterThanOrEqual(target);
    expect(evictions[0]?.bytes).toBeLessThan(target + each + 100);
    // Only rooms the last round had reached (one message more) lost one, their oldest.
    const latest = range(0, 299).map((r) => s.latest(roomN(r)));
    const most = Math.max(...latest);
    const cut = range(0, 299).filter((r) => s.read(roomN(r), 0, 1, 1e9).oldest > 1);
    expect(cut.length).toBe(evictions[0]?.rooms);
    for (const r of cut) {
      expect(latest[r]).toBe(most);
      expect(s.read(roomN(r), 0, 1, 1e9).oldest).toBe(2);
    }
    expect(s.check()).toBe('ok');
  });

  it('never gets stuck at the cap with tens of thousands of small rooms: eviction only deletes, within a reserve', () => {
    // Batches of small messages into 20,000 rooms picked at random (a fixed sequence).
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    const ids = range(0, 19_999).map((r) => roomN(r));
    const s = capped(4 << 20);
    let refused = 0;
    for (let i = 0; i < 400; i++) {
      const batch = Array.from({ length: 200 }, () => one(ids[random(ids.length)] as Uint8Array, 40));
      try {
        put(s, batch);
      } catch (err) {
        expect(err).toMatchObject({ code: 'SQLITE_FULL' });
        refused++;
      }
      if (i % 100 === 99) s.prune(0); // retention cuts nothing; the sizes are written
    }
    expect(refused).toBe(0);
    expect(s.evicted).toBeGreaterThan(0);
    expect(s.check()).toBe('ok');
  });

  it('keeps evicting while new rooms of one small message each fill it: emptied rooms do not stay at the top of the sizes', () => {
    const s = capped(8 << 20);
    const small = (n: number): PendingMessage => ({
      room: id16(n),
      ts: 1000,
      nick: enc.encode('aaaaa'),
      mid: id16(++midN),
      body: new Uint8Array(1),
    });
    // 120,000 rooms: their rows (kept for good, about 50 bytes each) fill the cap at about
    // 160,000, when nothing is left to evict. Before, eviction saw only the rooms appended to
    // since the last prune once those it had emptied filled the top of the index of sizes,
    // and refused every commit from about 70,000 rooms on, with 45,000 messages left.
    let refused = 0;
    let r = 0;
    for (let i = 0; i < 600; i++) {
      try {
        put(
          s,
          Array.from({ length: 200 }, () => small(++r)),
        );
      } catch {
        refused++;
      }
    }
    expect(refused).toBe(0);
    expect(s.evicted).toBeGreaterThan(50_000);
    expect(s.check()).toBe('ok');
  });

  it('evicts for a batch of 1 KB messages, each a whole overflow page more than its bytes', () => {
    const s = capped(1 << 20);
    for (let i = 0; 256 - pages(s) > 30; i++) put(s, [one(roomN(1), 2000 + (i % 7))]);
    const batch = Array.from({ length: 40 }, (_, k) => one(roomN(2 + (k % 4)), 1000));
    expect(put(s, batch)).toBe(1);
    expect(s.evicted).toBeGreaterThan(0);
  });

  it('ranks rooms by the pages they take: a flood of 1 KB bodies goes before a quiet room of large ones', () => {
    const evictions: Eviction[] = [];
    const s = capped(4 << 20, evictions);
    for (let n = 0; n < 20; n++) put(s, [one(roomN(1), 60_000)]);
    for (let n = 0; evictions.length === 0 && n < 10_000; n++) put(s, [one(roomN(2), 1000)]);
    expect(evictions).toHaveLength(1);
    expect(s.read(roomN(1), 0, 100, 1e9).messages).toHaveLength(20);
    expect(s.read(roomN(2), 0, 1, 1e9).oldest).toBeGreaterThan(1);
  });

  it('does not evict for a full disk, even once the store has been at its cap (a small tmpfs)', (ctx) => {
    const fs = mountTmpfs('6m');
    if (fs === null) {
      ctx.skip();
      return;
    }
    try {
      const s = new SqliteHistory({
        path: join(fs.path, 'history.db'),
        retention: { messages: 1e6, maxAgeMs: 1e12 },
        maxBytes: 1 << 20,
      });
      raw(s).pragma('wal_autocheckpoint = 100');
      for (let n = 0; n < 120; n++) put(s, [one(roomN(7), 20_000)]);
      expect(s.evicted).toBeGreaterThan(0); // the cap was reached
      s.prune(2e12); // then retention frees most of it; the file keeps its size
      for (let n = 0; n < 20; n++) put(s, [one(roomN(7), 20_000)]);
      raw(s).pragma('wal_checkpoint(TRUNCATE)');
      const evicted = s.evicted;
      fs.fill(16 * 1024, 48 * 1024);
      const codes: string[] = [];
      for (let i = 0; i < 5; i++) {
        try {
          put(s, [one(roomN(7), 60_000)]);
          codes.push('ok');
        } catch (err) {
          codes.push((err as StoreError).code);
        }
      }
      expect(codes).toContain('SQLITE_FULL');
      expect(s.evicted).toBe(evicted);
      expect(s.read(roomN(7), 0, 1000, 1e9).messages.length).toBeGreaterThanOrEqual(20);
      s.close();
    } finally {
      fs.unmount();
    }
  });
});

describe('room sizes', () => {
  const size = (nick: number, body: number, seq: number, ts: number): number => storedSize(nick, body, seq, ts, 4096);
  const sum = (n: number, each: (i: number) => number): number => range(1, n).reduce((a, i) => a + each(i), 0);

  it('survive a reopen, and a store from before the column is counted when opened', () => {
    const dir = mkdtempSync(join(tmpdir(), 'confab-sizes-'));
    const path = join(dir, 'history.db');
    try {
      // An earlier version's schema, with two rooms' messages in it.
      const old = new Database(path);
      old.exec(`CREATE TABLE rooms (id BLOB PRIMARY KEY, latest INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE messages (room BLOB NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL, mid BLOB NOT NULL,
          nick BLOB NOT NULL, body BLOB NOT NULL, PRIMARY KEY (room, seq)) WITHOUT ROWID;`);
      const add = old.prepare('INSERT INTO messages VALUES (?, ?, 1000, ?, ?, ?)');
      for (let n = 1; n <= 3; n++) add.run(room(1), n, mid(n), enc.encode('al'), new Uint8Array(100));
      add.run(room(2), 1, mid(9), enc.encode('bob'), new Uint8Array(10));
      old.prepare('INSERT INTO rooms VALUES (?, 1), (?, 1)').run(room(1), room(2));
      old.close();
      let s = new SqliteHistory({ path, retention: { messages: 1e6, maxAgeMs: 1e12 } });
      const room1 = sum(3, (n) => size(2, 100, n, 1000));
      expect(sizes(path)).toEqual([room1, size(3, 10, 1, 1000)]);
      append(s, [msg(2, 10, 2000, 'x'.repeat(5000))]);
      s.close();
      s = new SqliteHistory({ path, retention: { messages: 1e6, maxAgeMs: 1e12 } });
      expect(sizes(path)).toEqual([room1, size(3, 10, 1, 1000) + size(5, 5000, 2, 2000)]);
      // Pruning takes what it cuts off the count.
      expect(s.prune(1e12 + 1500)).toBe(4);
      s.close();
      expect(sizes(path)).toEqual([0, size(5, 5000, 2, 2000)]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lose what a prune step cut in the same commit: a crash in the middle of a pass leaves them right', () => {
    const dir = mkdtempSync(join(tmpdir(), 'confab-sizes-'));
    const path = join(dir, 'history.db');
    try {
      let s = new SqliteHistory({ path, retention: { messages: 1e6, maxAgeMs: 1e12 } });
      for (let n = 1; n <= 10; n++) append(s, [msg(1, n, 1000 + n, 'x'.repeat(900))]);
      append(s, [msg(2, 1, 1000, 'y')]);
      s.close();
      s = new SqliteHistory({ path, retention: { messages: 2, maxAgeMs: 1e12 } });
      // One step of a pass (room 1), and the process dies: nothing closes the store.
      expect(s.pruneSome(1e6, 1)).toEqual({ removed: 8, done: false });
      expect(sizes(path)[0]).toBe(sum(2, (i) => size(5, 900, 8 + i, 1008 + i)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('of a room counted with no message left are zeroed by the next eviction', () => {
    const dir = mkdtempSync(join(tmpdir(), 'confab-sizes-'));
    const path = join(dir, 'history.db');
    try {
      let s = new SqliteHistory({ path, retention: { messages: 1e6, maxAgeMs: 1e12 } });
      append(s, [msg(3, 1, 1000, 'z')]);
      s.close();
      // As a crash of an earlier version could leave it: a large count, and no message.
      const other = new Database(path);
      other.prepare('DELETE FROM messages WHERE room = ?').run(room(3));
      other.prepare('UPDATE rooms SET bytes = 50000000 WHERE id = ?').run(room(3));
      other.close();
      s = new SqliteHistory({ path, retention: { messages: 1e6, maxAgeMs: 1e12 }, maxBytes: 1 << 20 });
      // Filling the cap: eviction cuts the rooms that hold messages, and nothing is refused.
      for (let n = 1; n <= 100; n++) expect(append(s, [msg(1, n, 1000 + n, 'x'.repeat(20_000))])[0]?.seq).toBe(n);
      expect(s.evicted).toBeGreaterThan(0);
      s.close();
      expect(sizes(path)).toEqual([expect.any(Number), 0]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('are counted again when a crash lost them, before they decide what goes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'confab-sizes-'));
    const path = join(dir, 'history.db');
    try {
      let s = new SqliteHistory({ path, retention: { messages: 1e6, maxAgeMs: 1e12 } });
      for (let n = 1; n <= 30; n++) append(s, [msg(2, 100 + n, 1000 + n, 'q'.repeat(3000))]);
      s.close();
      s = new SqliteHistory({ path, retention: { messages: 1e6, maxAgeMs: 1e12 }, maxBytes: 1 << 20 });
      for (let n = 1; n <= 20; n++) append(s, [msg(1, n, 1000 + n, 'x'.repeat(20_000))]);
      // As after a crash: every count is zero, and nothing appended since is known.
      const other = new Database(path);
      other.exec('UPDATE rooms SET bytes = 0');
      other.close();
      (s as unknown as { pending: Map<Uint8Array, number> }).pending.clear();
      for (let n = 21; n <= 100; n++) expect(append(s, [msg(1, n, 1000 + n, 'x'.repeat(20_000))])[0]?.seq).toBe(n);
      expect(s.evicted).toBeGreaterThan(0);
      // Counted again, the smaller room kept all, and the counts are right once more.
      expect(s.read(room(2), 0, 100, 1e9).messages).toHaveLength(30);
      s.close();
      expect(sizes(path)[1]).toBe(sum(30, (n) => size(5, 3000, n, 1000 + 100 + n)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('are counted as SQLite lays rows out: the record byte for byte (dbstat), overflow pages whole, in SQL and in JS alike', () => {
    const cases: [nick: number, body: number, seq: number, ts: number][] = [];
    for (const body of [
      0, 1, 500, 900, 946, 947, 950, 954, 955, 1000, 1003, 2000, 4093, 4096, 10_000, 60_000, 64_000,
    ]) {
      for (const seq of [1, 2, 127, 128, 40_000, 9_000_000, 2 ** 31]) cases.push([8, body, seq, 1_795_777_283_096]);
    }
    cases.push([24, 946, 40_000, 1000], [1, 0, 0, 0], [200, 9000, 3, -5]);
    const db = new Database(':memory:');
    db.exec(`CREATE TABLE messages (room BLOB NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL, mid BLOB NOT NULL,
      nick BLOB NOT NULL, body BLOB NOT NULL, PRIMARY KEY (room, seq)) WITHOUT ROWID`);
    const put = db.prepare('INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)');
    const payload = db.prepare("SELECT sum(payload) AS p FROM dbstat WHERE name = 'messages'");
    for (const [nick, body, seq, ts] of cases) {
      db.exec('DELETE FROM messages');
      put.run(new Uint8Array(16), seq, ts, new Uint8Array(16), new Uint8Array(nick), new Uint8Array(body));
      expect((payload.get() as { p: number }).p, `${nick}/${body}/${seq}`).toBe(recordBytes(nick, body, seq, ts));
      for (const pageSize of [1024, 4096, 65_536]) {
        const sql = db.prepare(`SELECT ${storedSizeSql(pageSize)} AS n FROM messages`).get() as { n: number };
        expect(sql.n, `${nick}/${body}/${seq} at ${pageSize}`).toBe(storedSize(nick, body, seq, ts, pageSize));
      }
    }
    db.close();
    // A record just past a cell's room takes a page of overflow, and counts it.
    expect(storedSize(8, 946, 40_000, 1_795_777_283_096, 4096)).toBeGreaterThan(
      4 * storedSize(8, 945, 40_000, 1_795_777_283_096, 4096),
    );
    // Against a real store: the pages 200 messages take, per message.
    for (const body of [100, 900, 1000, 5000, 20_000]) {
      const s = new SqliteHistory({ path: ':memory:', retention: { messages: 1e6, maxAgeMs: 1e12 } });
      const before = raw(s).pragma('page_count', { simple: true }) as number;
      for (let n = 1; n <= 200; n++) append(s, [msg(1, n, 1000 + n, 'x'.repeat(body))]);
      const used = ((raw(s).pragma('page_count', { simple: true }) as number) - before) * 4096;
      const counted = sum(200, (n) => storedSize(5, body, n, 1000 + n, 4096));
      expect(counted / used, `body ${body}: counted ${counted}, used ${used}`).toBeGreaterThan(0.6);
      expect(counted / used, `body ${body}: counted ${counted}, used ${used}`).toBeLessThan(1.25);
      s.close();
    }
  });
});

describe('waterLevel', () => {
  it('cuts the largest first, down to a common level', () => {
    expect(waterLevel([100, 50, 10], 30)).toBe(70);
    expect(waterLevel([100, 50, 10], 60)).toBe(45);
    expect(waterLevel([100, 50, 10], 150)).toBeCloseTo(10 / 3);
    expect(waterLevel([100, 50, 10], 500)).toBe(0);
    expect(waterLevel([], 10)).toBe(0);
  });
});

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

function sizes(path: string): number[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT bytes FROM rooms ORDER BY id').all() as { bytes: number }[]).map((r) => r.bytes);
  } finally {
    db.close();
  }
}

/** The store's own connection, to read its page counts. */
function raw(s: SqliteHistory): Database.Database {
  return (s as unknown as { db: Database.Database }).db;
}

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
    const seqs = { next: (i: number) => i + 7, release: () => {}, restart: () => {} };
    expect(s.append([msg(1, 1), msg(1, 1)], seqs).map((r) => r.seq)).toEqual([7, 8]);
    expect(s.read().messages).toEqual([]);
    expect(s.nickOwner()).toBeUndefined();
  });
});
