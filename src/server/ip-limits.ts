import { TokenBucket } from '../protocol/index.js';

interface PerIp {
  open: number;
  bucket: TokenBucket;
}

/**
 * Connection limits per IP address: how many may be open at once, and how
 * many new ones per minute. Entries are forgotten once an address has nothing
 * open and a full bucket, so the table stays as small as the set of active peers.
 */
export class IpLimiter {
  private readonly table = new Map<string, PerIp>();
  private readonly maxOpen: number;
  private readonly perMinute: number;

  constructor(maxOpen: number, perMinute: number) {
    this.maxOpen = maxOpen;
    this.perMinute = perMinute;
  }

  /** Admits a new connection from `ip`, or says why not. */
  admit(ip: string, now: number): string | null {
    let entry = this.table.get(ip);
    if (entry === undefined) {
      entry = { open: 0, bucket: new TokenBucket(this.perMinute, 60_000 / this.perMinute, now) };
      this.table.set(ip, entry);
    }
    if (entry.open >= this.maxOpen) return `at most ${this.maxOpen} connections from one address`;
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

  /** Forgets addresses with nothing open and a full bucket. */
  sweep(now: number): void {
    for (const [ip, entry] of this.table) if (entry.open === 0 && entry.bucket.full(now)) this.table.delete(ip);
  }

  get size(): number {
    return this.table.size;
  }
}
