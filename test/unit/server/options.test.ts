import { describe, expect, it } from 'vitest';
import { MAX_HEARTBEAT_MS, MIN_HEARTBEAT_MS } from '../../../src/protocol/index.js';
import { DEFAULT_LIMITS, MAX_LIMIT, resolveOptions } from '../../../src/server/options.js';

describe('server limits', () => {
  it('take the defaults, and values up to the longest a timer waits', () => {
    expect(resolveOptions({}).limits).toEqual(DEFAULT_LIMITS);
    expect(resolveOptions({ limits: { handshakeTimeoutMs: MAX_LIMIT } }).limits.handshakeTimeoutMs).toBe(MAX_LIMIT);
  });

  it('refuse a value past 2^31 - 1, which a timer would cut to 1 ms and WELCOME to 32 bits', () => {
    expect(() => resolveOptions({ limits: { heartbeatMs: 4_294_967_396 } })).toThrow(
      'limit "heartbeatMs" may not exceed 2147483647, got 4294967396',
    );
    expect(() => resolveOptions({ limits: { messageBurst: 2 ** 32 } })).toThrow(RangeError);
  });

  it('refuse a ping interval outside what clients take: they give up after three without a byte', () => {
    expect(() => resolveOptions({ limits: { heartbeatMs: MAX_HEARTBEAT_MS + 1, deadAfterMs: MAX_LIMIT } })).toThrow(
      'limit "heartbeatMs" must be from 100 to 3600000',
    );
    expect(() => resolveOptions({ limits: { heartbeatMs: MIN_HEARTBEAT_MS - 1 } })).toThrow(RangeError);
  });

  it('refuse a silence limit that would drop healthy idle connections: under heartbeatMs + two sweeps', () => {
    expect(() => resolveOptions({ limits: { deadAfterMs: 10 } })).toThrow(
      'limit "deadAfterMs" must be at least heartbeatMs + 2000 (17000)',
    );
    // Before, taken: a client idle for 8 s was dropped three times (the server saw no PONG in time).
    expect(() => resolveOptions({ limits: { heartbeatMs: 1000, deadAfterMs: 1500 } })).toThrow(RangeError);
    expect(resolveOptions({ limits: { heartbeatMs: 1000, deadAfterMs: 3000 } }).limits.deadAfterMs).toBe(3000);
    expect(resolveOptions({ limits: { heartbeatMs: 100, deadAfterMs: 120 }, sweepMs: 10 }).limits.heartbeatMs).toBe(
      100,
    );
  });

  it('refuse a ping interval under the sweep: the server pings once a sweep, clients give up after three heartbeats', () => {
    // Before, taken: with heartbeatMs 100 an idle client reconnected 5 times in 8 s.
    expect(() => resolveOptions({ limits: { heartbeatMs: 300, deadAfterMs: 5000 } })).toThrow(
      'limit "heartbeatMs" must be at least 1000',
    );
  });

  it('refuse an allowance of new rows per address under 2: one JOIN may add a nick and a room', () => {
    expect(() => resolveOptions({ limits: { newRowsPerIp: 1 } })).toThrow(
      'limit "newRowsPerIp" must be at least 2: one JOIN may add a nick and a room, got 1',
    );
    expect(resolveOptions({ limits: { newRowsPerIp: 2 } }).limits.newRowsPerIp).toBe(2);
  });
});
