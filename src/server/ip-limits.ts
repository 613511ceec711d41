import { TokenBucket } from '../protocol/index.js';
import type { ServerLimits } from './options.js';

interface PerIp {
  open: number;
  /** New connections. */
  bucket: TokenBucket;
  /** New rows in the history store (nick claims, room rows); made at the address's first. */
  rows: TokenBucket | null;
}

/** The per-address limits `IpLimiter` enforces. */
export type IpLimits = Pick<
  ServerLimits,
  'maxConnectionsPerIp' | 'connectionsPerIpPerMinute' | 'newRowsPerIp' | 'newRowIntervalMs'
>;

/**
 * The address a peer is limited as: an IPv4 address itself (also when a
 * dual-stack socket gives it IPv4-mapped), and an IPv6 address's /64, the
 * smallest network a site is given, every address of which one peer may use
 * (ergo limits IPv6 by /64 too). Anything else is kept as it is.
 */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (mapped !== null) return mapped[1] as string;
  if (!ip.includes(':')) return ip;
  const zone = ip.indexOf('%');
  const addr = zone < 0 ? ip : ip.slice(0, zone);
  const halves = addr.split('::');
  if (halves.length > 2) return ip;
  const groups = (half: string | undefined): string[] =>
    half === undefined || half === '' ? [] : half.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g]));
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const all =
    halves.length === 2
      ? [...head, ...Array<string>(Math.max(0, 8 - head.length - tail.length)).fill('0'), ...tail]
      : head;
  if (all.length !== 8 || !all.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return ip;
  return `${all
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/**
 * Addresses remembered with no connection open (for their buckets): past it the
 * sweep forgets the oldest, which come back with full buckets. Without it, a
 * peer with many addresses (the /64s of an IPv6 prefix) could grow the table
 * with one entry per address for the half hour a drained row bucket takes to refill.
 */
export const IDLE_ADDRESSES = 65_536;

/**
 * Limits per IP address: how many connections may be open at once, how many
 * new ones per minute, and how fast the address may add what the history store
 * keeps for good (a nick's claim, a room's row), which neither retention
 * nor eviction frees. Entries are forgotten once an address has nothing open
 * and full buckets, so the table stays as small as the set of recent peers.
 */
export class IpLimiter {
  private readonly table = new Map<string, PerIp>();
  private readonly limits: IpLimits;

  constructor(limits: IpLimits) {
    this.limits = limits;
  }

  private entry(ip: string, now: number): PerIp {
    let entry = this.table.get(ip);
    if (entry === undefined) {
      const perMinute = this.limits.connectionsPerIpPerMinute;
      entry = { open: 0, bucket: new TokenBucket(perMinute, 60_000 / perMinute, now), rows: null };
      this.table.set(ip, entry);
    }
    return entry;
  }

  /** Admits a new connection from `ip`, or says why not. */
  admit(ip: string, now: number): string | null {
    const entry = this.entry(ip, now);
    const max = this.limits.maxConnectionsPerIp;
    if (entry.open >= max) return `at most ${max} connections from one address`;
    if (!entry.bucket.take(now)) {
      return `too many new connections from your address; retry in ${Math.ceil(entry.bucket.wait(now) / 1000)} s`;
    }
    entry.open++;
    return null;
  }

  /** A connection admitted earlier has closed. */
  release(ip: string): void {
    const entry = this.table.get(ip);
    if (entry !== undefined) entry.open = Math.max(0, entry.open - 1);
  }

  private rowBucket(ip: string, now: number): TokenBucket {
    const entry = this.entry(ip, now);
    return (entry.rows ??= new TokenBucket(this.limits.newRowsPerIp, this.limits.newRowIntervalMs, now));
  }

  /** Milliseconds until `ip` may add `count` new rows to the store (0: it may now). Takes nothing. */
  rowWait(ip: string, count: number, now: number): number {
    return this.rowBucket(ip, now).wait(now, count);
  }

  /** Takes `count` new rows from `ip`'s allowance, once they were added; false (nothing taken) if it had not that many. */
  takeRows(ip: string, count: number, now: number): boolean {
    return this.rowBucket(ip, now).take(now, count);
  }

  /**
   * Forgets addresses with nothing open and full buckets. Past `idleCap` idle
   * ones, it forgets the oldest of those with only a connection bucket left to
   * refill (a minute's memory) first, and only then ones with spent row
   * buckets: addresses that merely connected can't wipe out what others spent.
   */
  sweep(now: number, idleCap = IDLE_ADDRESSES): void {
    let idle = 0;
    for (const [ip, entry] of this.table) {
      if (entry.open > 0) continue;
      if (entry.bucket.full(now) && (entry.rows === null || entry.rows.full(now))) this.table.delete(ip);
      else idle++;
    }
    // A Map iterates in insertion order: the first idle entries are the oldest.
    for (const rowsToo of [false, true]) {
      for (const [ip, entry] of this.table) {
        if (idle <= idleCap) return;
        if (entry.open === 0 && (rowsToo || entry.rows === null || entry.rows.full(now))) {
          this.table.delete(ip);
          idle--;
        }
      }
    }
  }

  get size(): number {
    return this.table.size;
  }
}
