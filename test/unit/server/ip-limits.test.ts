import { describe, expect, it } from 'vitest';
import { addressKey, IpLimiter } from '../../../src/server/ip-limits.js';

const limits = { maxConnectionsPerIp: 2, connectionsPerIpPerMinute: 60, newRowsPerIp: 4, newRowIntervalMs: 1000 };

describe('IpLimiter', () => {
  it('new rows: all or nothing, and the wait until there are enough', () => {
    const l = new IpLimiter(limits);
    expect(l.takeRows('a', 2, 0)).toBe(true);
    expect(l.rowWait('a', 1, 0)).toBe(0);
    expect(l.takeRows('a', 1, 0)).toBe(true);
    expect(l.rowWait('a', 2, 0)).toBe(1000); // one left
    expect(l.takeRows('a', 2, 0)).toBe(false); // and nothing taken
    expect(l.takeRows('a', 1, 0)).toBe(true);
    expect(l.takeRows('b', 2, 0)).toBe(true); // per address
    expect(l.rowWait('a', 2, 1500)).toBe(500);
    expect(l.rowWait('a', 2, 1500)).toBe(500); // asking takes nothing
    expect(l.takeRows('a', 2, 2000)).toBe(true);
  });

  it('remembers an address after its connections close until its buckets are full again', () => {
    const l = new IpLimiter(limits);
    expect(l.admit('a', 0)).toBeNull();
    expect(l.takeRows('a', 4, 0)).toBe(true);
    l.release('a');
    l.sweep(1000); // the connection bucket is full again; the rows are not
    expect(l.size).toBe(1);
    expect(l.takeRows('a', 1, 1000)).toBe(true); // the one regained, not a fresh four
    expect(l.rowWait('a', 1, 1000)).toBe(1000);
    l.sweep(4999);
    expect(l.size).toBe(1);
    l.sweep(5000);
    expect(l.size).toBe(0);
  });

  it('refuses connections past the open cap and the per-minute rate', () => {
    const l = new IpLimiter({ ...limits, connectionsPerIpPerMinute: 3 });
    expect(l.admit('a', 0)).toBeNull();
    expect(l.admit('a', 0)).toBeNull();
    expect(l.admit('a', 0)).toBe('at most 2 connections from one address');
    l.release('a');
    expect(l.admit('a', 0)).toBeNull();
    l.release('a');
    expect(l.admit('a', 0)).toBe('too many new connections from your address; retry in 20 s');
  });

  it('past the cap of idle addresses, forgets the oldest idle ones, never one with a connection open', () => {
    const l = new IpLimiter(limits);
    expect(l.admit('open', 0)).toBeNull();
    for (let i = 0; i < 10; i++) expect(l.takeRows(`idle${i}`, 4, 0)).toBe(true);
    l.sweep(0, 4);
    expect(l.size).toBe(5);
    expect(l.rowWait('idle6', 1, 0)).toBe(1000); // kept: still drained, and among the newest 4
    expect(l.rowWait('idle0', 1, 0)).toBe(0); // forgotten: a full bucket again
    l.sweep(0, 0);
    expect(l.size).toBe(1);
    expect(l.admit('open', 0)).toBeNull(); // still counted: one open, one more allowed
    expect(l.admit('open', 0)).toBe('at most 2 connections from one address');
  });

  it('past the cap, forgets addresses that only connected before any with spent rows', () => {
    const l = new IpLimiter(limits);
    expect(l.takeRows('spender', 4, 0)).toBe(true);
    for (let i = 0; i < 100; i++) {
      expect(l.admit(`visitor${i}`, 0)).toBeNull();
      l.release(`visitor${i}`);
    }
    l.sweep(0, 10);
    expect(l.size).toBe(10);
    expect(l.rowWait('spender', 1, 0)).toBe(1000); // still remembered as spent
  });
});

describe('addressKey', () => {
  it('an IPv4 address is itself, also IPv4-mapped from a dual-stack socket', () => {
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::FFFF:127.0.0.1')).toBe('127.0.0.1');
  });

  it('an IPv6 address counts as its /64, however it is written', () => {
    const key = '2001:db8:0:12::/64';
    for (const ip of [
      '2001:db8:0:12::1',
      '2001:db8::12:0:0:0:1',
      '2001:0db8:0000:0012:ffff:ffff:ffff:ffff',
      '2001:DB8:0:12:a:b:1.2.3.4',
      '2001:db8:0:12::1%eth0',
    ]) {
      expect(addressKey(ip)).toBe(key);
    }
    expect(addressKey('2001:db8:0:13::1')).toBe('2001:db8:0:13::/64');
    expect(addressKey('1::2:3:4:5:6:7')).toBe('1:0:2:3::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('::')).toBe('0:0:0:0::/64');
  });

  it('leaves what is not an address as it is', () => {
    for (const ip of ['?', '1::2::3', '2001:db8:zz::1', '1:2:3:4:5:6:7:8:9']) expect(addressKey(ip)).toBe(ip);
  });
});
