import { afterEach, describe, expect, it } from 'vitest';
import { PRUNE_ROOMS_PER_STEP, SqliteHistory } from '../../src/server/index.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { testServer } from '../helpers/net.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()?.();
});

const MINUTE = 60_000;

/** A store of `count` rooms, each holding one message written `age` ms before `now`. */
function roomsWithOneMessage(store: SqliteHistory, from: number, count: number, now: number, age: number): void {
  for (let i = from; i < from + count; i++) {
    const room = new Uint8Array(16);
    new DataView(room.buffer).setUint32(12, i);
    const message = { room, ts: now - age, nick: new Uint8Array([97]), mid: room, body: new Uint8Array(8) };
    store.append([message], { next: () => 1, release: () => {}, restart: () => {} });
  }
}

function messagesLeft(store: SqliteHistory, count: number): number {
  let left = 0;
  for (let i = 0; i < count; i++) {
    const room = new Uint8Array(16);
    new DataView(room.buffer).setUint32(12, i);
    left += store.read(room, 0, 10, 1e6).messages.length;
  }
  return left;
}

describe('pruning on an injected clock', () => {
  it('goes through the rooms a step per sweep, not all in one turn, and starts a pass once an interval', async () => {
    const clock = new FakeClock();
    const store = new SqliteHistory({ path: ':memory:', retention: { messages: 1000, maxAgeMs: MINUTE } });
    const rooms = 2 * PRUNE_ROOMS_PER_STEP + PRUNE_ROOMS_PER_STEP / 2;
    roomsWithOneMessage(store, 0, rooms, clock.now(), 2 * MINUTE);
    const s = await testServer({ clock, store, sweepMs: 1000, limits: { pruneIntervalMs: MINUTE } });
    cleanup.push(() => s.close());

    clock.advance(MINUTE - 1000);
    expect(messagesLeft(store, rooms)).toBe(rooms);
    // The sweep at the interval starts a pass: one step of rooms, then one a sweep.
    clock.advance(1000);
    expect(messagesLeft(store, rooms)).toBe(rooms - PRUNE_ROOMS_PER_STEP);
    clock.advance(1000);
    expect(messagesLeft(store, rooms)).toBe(rooms - 2 * PRUNE_ROOMS_PER_STEP);
    clock.advance(1000);
    expect(messagesLeft(store, rooms)).toBe(0);

    // Done: the next pass waits for the next interval, counted from this one's start.
    roomsWithOneMessage(store, rooms, 10, clock.now(), 2 * MINUTE);
    clock.advance(MINUTE - 3000);
    expect(messagesLeft(store, rooms + 10)).toBe(10);
    // The new rooms' ids sort after the rest: the pass reaches them at its third step.
    clock.advance(2000);
    expect(messagesLeft(store, rooms + 10)).toBe(10);
    clock.advance(1000);
    expect(messagesLeft(store, rooms + 10)).toBe(0);
  });
});
