import { describe, expect, it } from 'vitest';
import { Batcher } from '../../../src/server/batcher.js';

describe('Batcher', () => {
  it('commits first, then rooms, then connections, and starts the writes at another connection each turn', () => {
    const order: string[] = [];
    const batcher = new Batcher(
      () => order.push('after'),
      () => order.push('commit'),
    );
    const conn = (name: string) => ({ flush: () => order.push(name) });
    const [a, b, c] = [conn('a'), conn('b'), conn('c')];
    const starts: string[] = [];
    for (let turn = 0; turn < 3; turn++) {
      order.length = 0;
      batcher.addRoom({ flush: () => order.push('room') });
      for (const x of [a, b, c]) batcher.addConnection(x);
      batcher.flush();
      expect(order.slice(0, 2)).toEqual(['commit', 'room']);
      expect([...order.slice(2, 5)].sort()).toEqual(['a', 'b', 'c']);
      expect(order[5]).toBe('after');
      starts.push(order[2] as string);
    }
    // No connection is written first every turn.
    expect(new Set(starts).size).toBe(3);
  });
});

describe('Batcher, reused arrays', () => {
  it('writes every connection once when a flush starts inside another, turn after turn', () => {
    const written: string[] = [];
    const batcher = new Batcher();
    const later = { flush: () => written.push('later') };
    // Queued while the inner flush runs: it belongs to the next flush.
    const late = {
      flush: () => {
        written.push('late');
        batcher.addConnection(later);
      },
    };
    const conn = (name: string, nested = false) => ({
      flush: () => {
        written.push(name);
        if (nested) {
          // A write whose side effect queues another connection and flushes at once.
          batcher.addConnection(late);
          batcher.flush();
        }
      },
    });
    for (let turn = 0; turn < 5; turn++) {
      written.length = 0;
      const names = ['a', 'b', 'c', 'd'];
      for (const n of names) batcher.addConnection(conn(n, n === 'b'));
      batcher.flush();
      expect([...written].sort()).toEqual(['a', 'b', 'c', 'd', 'late']);
      // b's write ran the inner flush, so `late` came right after it.
      expect(written[written.indexOf('b') + 1]).toBe('late');
      written.length = 0;
      batcher.flush();
      expect(written).toEqual(['later']);
      written.length = 0;
      batcher.flush(); // nothing left over for the next turn
      expect(written).toEqual([]);
    }
  });
});

describe('Batcher, scheduling', () => {
  /** A batcher whose deferred flushes wait in `queue` until the test runs them. */
  function deferred(before: (b: Batcher) => void = () => {}, after: (b: Batcher) => void = () => {}) {
    const queue: (() => void)[] = [];
    const batcher: Batcher = new Batcher(
      () => after(batcher),
      () => before(batcher),
      undefined,
      (run) => queue.push(run),
    );
    return { batcher, queue };
  }

  it('asks for one flush a turn, however much is queued', () => {
    const { batcher, queue } = deferred();
    batcher.touch();
    batcher.addRoom({ flush: () => {} });
    batcher.addConnection({ flush: () => {} });
    expect(queue).toHaveLength(1);
  });

  it('asks for no second flush for what its own commit and rooms queued', () => {
    const written: string[] = [];
    const conn = { flush: () => written.push('conn') };
    const room = { flush: (b: Batcher) => b.addConnection(conn) };
    // The commit broadcasts to a room, and the room queues its member: all of it this flush.
    const { batcher, queue } = deferred((b) => b.addRoom({ flush: () => room.flush(b) }));
    batcher.touch();
    (queue.shift() as () => void)();
    expect(written).toEqual(['conn']);
    expect(queue).toHaveLength(0);
  });

  it('asks for another flush for what is queued after its writes, or touched while it ran', () => {
    const written: string[] = [];
    const dropped = { flush: () => written.push('dropped') };
    let drop = true;
    const { batcher, queue } = deferred(undefined, (b) => {
      // A connection dropped for overflow: its ERROR goes out in the next flush.
      if (drop) b.addConnection(dropped);
      drop = false;
    });
    batcher.touch();
    (queue.shift() as () => void)();
    expect(queue).toHaveLength(1);
    (queue.shift() as () => void)();
    expect(written).toEqual(['dropped']);
    expect(queue).toHaveLength(0);

    const touching = { flush: () => batcher.touch() };
    batcher.addConnection(touching);
    (queue.shift() as () => void)();
    expect(queue).toHaveLength(1);
  });

  it('after a flush that threw, asks again only for what was queued while it ran', () => {
    const written: string[] = [];
    let fail: 'first' | 'after-queueing' | null = 'first';
    const queue: (() => void)[] = [];
    const room = { flush: () => written.push('room') };
    const batcher = new Batcher(
      () => {},
      () => {
        if (fail === 'first') throw new Error('commit failed');
        if (fail === 'after-queueing') {
          batcher.addRoom(room);
          throw new Error('commit failed late');
        }
      },
      undefined,
      (run) => queue.push(run),
    );
    batcher.addConnection({ flush: () => written.push('conn') });
    expect(() => (queue.shift() as () => void)()).toThrow('commit failed');
    // Nothing queued while it ran: a commit that keeps failing must not spin.
    expect(queue).toHaveLength(0);
    fail = 'after-queueing';
    batcher.touch();
    expect(() => (queue.shift() as () => void)()).toThrow('commit failed late');
    // The room it queued before throwing gets its flush, with the connection from before.
    expect(queue).toHaveLength(1);
    fail = null;
    (queue.shift() as () => void)();
    expect(written.sort()).toEqual(['conn', 'room']);
    expect(queue).toHaveLength(0);
  });

  it('asks for one more flush after nested flushes only for what came after the outer one wrote', () => {
    const written: string[] = [];
    const { batcher, queue } = deferred();
    const later = { flush: () => written.push('later') };
    const inner = { flush: () => written.push('inner') };
    const outer = {
      flush: () => {
        written.push('outer');
        // A write that queues a connection and flushes at once (a drop mid-turn).
        batcher.addConnection(inner);
        batcher.flush();
        // Queued after the inner flush, while the outer one still runs.
        batcher.addConnection(later);
      },
    };
    batcher.addConnection(outer);
    expect(queue).toHaveLength(1);
    (queue.shift() as () => void)();
    expect(written).toEqual(['outer', 'inner']);
    expect(queue).toHaveLength(1);
    (queue.shift() as () => void)();
    expect(written).toEqual(['outer', 'inner', 'later']);
    expect(queue).toHaveLength(0);

    // The same without the late add: nothing left, no second flush.
    written.length = 0;
    const quiet = {
      flush: () => {
        batcher.addConnection(inner);
        batcher.flush();
      },
    };
    batcher.addConnection(quiet);
    (queue.shift() as () => void)();
    expect(written).toEqual(['inner']);
    expect(queue).toHaveLength(0);
  });
});
