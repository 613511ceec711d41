import { describe, expect, it } from 'vitest';
import { LingerBudget } from '../../../src/server/linger.js';

describe('LingerBudget', () => {
  it('bounds the places per address and in all, and frees them on release', () => {
    const b = new LingerBudget(2, 3);
    expect([b.take('a'), b.take('a'), b.take('a')]).toEqual([true, true, false]);
    expect([b.take('b'), b.take('c')]).toEqual([true, false]); // 3 in all
    b.release('a');
    expect(b.take('c')).toBe(true);
    expect(b.size).toBe(3);
    for (const ip of ['a', 'b', 'c']) b.release(ip);
    expect([b.size, b.addresses]).toEqual([0, 0]);
    // A release with no place taken changes nothing.
    b.release('z');
    expect(b.size).toBe(0);
  });
});
