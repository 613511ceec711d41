/**
 * Time as the rest of the code sees it. Servers and clients take a Clock in
 * their options so that deadlines, heartbeats and backoff test deterministically.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Runs `fn` once after `ms`; the returned function cancels it. */
  setTimer(fn: () => void, ms: number): () => void;
}

/** The longest delay `setTimeout` honours (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    // setTimeout takes at most 2^31 - 1 ms and turns anything longer into 1 ms,
    // with a warning each time: a server's WELCOME could ask for that.
    const handle = setTimeout(fn, Math.min(ms, MAX_TIMER_MS));
    return () => clearTimeout(handle);
  },
};
