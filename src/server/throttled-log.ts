import type { Logger } from 'pino';

/**
 * Warnings about something that can happen thousands of times a second (a
 * flood of refused connections, a store that can't write): the first of each
 * kind is logged at once, then at most one per `everyMs`, carrying how many
 * were not logged since (`suppressed`). The log stays readable, and an
 * operator still learns that it goes on and how much.
 */
export class ThrottledLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly everyMs: number;

  constructor(log: Logger, now: () => number, everyMs = 10_000) {
    this.log = log;
    this.now = now;
    this.everyMs = everyMs;
  }

  /** Logs `msg` with `fields` at warn, unless one of `kind` was logged less than `everyMs` ago. */
  warn(kind: string, fields: Record<string, unknown>, msg: string): void {
    const now = this.now();
    const seen = this.last.get(kind);
    if (seen !== undefined && now - seen.at < this.everyMs) {
      seen.suppressed++;
      return;
    }
    const suppressed = seen?.suppressed ?? 0;
    this.last.set(kind, { at: now, suppressed: 0 });
    this.log.warn(suppressed > 0 ? { ...fields, suppressed } : fields, msg);
  }
}
