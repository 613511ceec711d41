import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../../src/client/index.js';

describe('backoffDelay', () => {
  it('doubles its ceiling per attempt up to the cap, with jitter in the upper half', () => {
    const low = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((a) => backoffDelay(a, 0));
    const high = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((a) => backoffDelay(a, 0.999999));
    expect(low).toEqual([125, 250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    expect(high).toEqual([250, 500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
  });

  it('spreads clients: different random draws give different delays', () => {
    const delays = new Set([0.1, 0.3, 0.5, 0.7, 0.9].map((r) => backoffDelay(4, r)));
    expect(delays.size).toBe(5);
  });

  it('takes its base and cap from options, and survives huge attempt numbers', () => {
    expect(backoffDelay(0, 0, { baseMs: 20, maxMs: 100 })).toBe(10);
    expect(backoffDelay(1e6, 0.5, { baseMs: 20, maxMs: 100 })).toBe(75);
  });
});
