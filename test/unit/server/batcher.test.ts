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
