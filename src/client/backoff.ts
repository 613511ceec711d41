/** Reconnect delays: exponential, capped, with full jitter so clients don't return in a herd. */
export interface BackoffOptions {
  /** First retry's ceiling, ms. Default 250. */
  baseMs?: number;
  /** Largest ceiling, ms. Default 10,000. */
  maxMs?: number;
}

/**
 * Delay before retry number `attempt` (0-based): uniform in
 * [ceiling/2, ceiling], ceiling = min(maxMs, baseMs·2^attempt). The lower half
 * is cut so that a retry never fires at once in a tight loop.
 * @param random a number in [0, 1), injected for deterministic tests
 */
export function backoffDelay(attempt: number, random: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? 250;
  const max = longestDelay(options);
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (ceiling / 2) * random);
}

/** The largest ceiling a delay can have: `maxMs`, 10,000 by default. */
export function longestDelay(options: BackoffOptions = {}): number {
  return options.maxMs ?? 10_000;
}
