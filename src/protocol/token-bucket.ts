/**
 * A token bucket: `burst` tokens, one more every `intervalMs`. Pure (time is
 * passed in), so the server's limits and the client's pacing share it and
 * test deterministically.
 */
export class TokenBucket {
  /** Most tokens it holds. */
  readonly burst: number;
  private tokens: number;
  private last: number;
  private readonly intervalMs: number;

  constructor(burst: number, intervalMs: number, now: number) {
    this.burst = burst;
    this.intervalMs = intervalMs;
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + (now - this.last) / this.intervalMs);
      this.last = now;
    }
  }

  /** Takes `count` tokens (default 1) if there are that many; else takes none. */
  take(now: number, count = 1): boolean {
    this.refill(now);
    if (this.tokens >= count) {
      this.tokens -= count;
      return true;
    }
    return false;
  }

  /** Milliseconds until `count` tokens (default 1) are available (0 if they are now). */
  wait(now: number, count = 1): number {
    this.refill(now);
    return this.tokens >= count ? 0 : Math.ceil((count - this.tokens) * this.intervalMs);
  }

  /** Empties the bucket (the other side said we went too fast). */
  drain(now: number): void {
    this.refill(now);
    this.tokens = 0;
  }

  /** True when the bucket is back to full: nothing to remember about this key. */
  full(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }
}
