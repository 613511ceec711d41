/**
 * What `confab join` prints, as one shape for both output modes. `--json`
 * writes these objects as they are (doc/JSON.md); line mode formats them.
 */

/** A member or sender as shown: nick, short key fingerprint, and trust. */
export interface Who {
  nick: string;
  /** First ten digits of the key's fingerprint, `12345-67890`. */
  fingerprint: string;
  verified: boolean;
  /** `new` (first sight, now pinned), `known`, `verified`, or `changed` (differs from the pinned key). */
  trust: 'new' | 'known' | 'verified' | 'changed';
}

export type ChatEvent =
  | { type: 'invite'; link: string; ts: number }
  | { type: 'joined'; nick: string; fingerprint: string; members: Who[]; seq: number; ts: number }
  | ({
      type: 'message';
      text: string;
      action: boolean;
      seq: number;
      senderSeq: number;
      ts: number;
      warning?: string;
      /** From the server's history (the backlog, or caught up after being away), not live. */
      history: boolean;
      /** Our own message, seen in history. */
      own: boolean;
    } & Who)
  | { type: 'missed'; count: number; ts: number }
  | { type: 'resent'; count: number; ts: number }
  | { type: 'released'; nick: string; count: number; dropped: number; ts: number }
  | { type: 'sent'; nick: string; text: string; seq: number; ts: number }
  | ({ type: 'join'; ts: number } & Who)
  | { type: 'leave'; nick: string; reason: 'left' | 'disconnected'; ts: number }
  | { type: 'rejected'; reason: string; nick: string; seq: number; message: string; ts: number }
  | { type: 'gap'; nick: string; fingerprint: string; missing: number; ts: number }
  | { type: 'key-changed'; nick: string; oldFingerprint: string; newFingerprint: string; ts: number }
  | { type: 'disconnect'; code: string | null; message: string | null; reconnecting: boolean; ts: number }
  | { type: 'reconnect'; members: Who[]; ts: number }
  /** `text`: the input line it is about, for a line of this run that was not sent. */
  | { type: 'error'; code: string; message: string; text?: string; ts: number };

/** Members a `joined` line names (each with a fingerprint, 5,200 SHA-512s to compute); the rest are counted. */
export const SHOWN_MEMBERS = 20;

/**
 * `a 12345-67890, b 23456-78901, and 980 more`: the first SHOWN_MEMBERS members,
 * tagged, then a count and `hint` (where the rest can be seen, if anywhere).
 */
export function hereList<W>(members: readonly W[], tagged: (w: W) => string, hint = ''): string {
  const names = members.slice(0, SHOWN_MEMBERS).map(tagged).join(', ');
  const more = members.length - SHOWN_MEMBERS;
  return more > 0 ? `${names}, and ${more} more${hint}` : names;
}

/**
 * Lets through at most `limit` join events in each `windowMs` and counts the
 * rest, which `summary` then reports as one line: at the next event that is not
 * a join, at the first join of the next window, or when the window ends. A
 * server that announces thousands of members at once (a restart, or a hostile
 * one) then costs a few lines, and a few fingerprints, instead of one each.
 */
export class JoinBurst {
  private readonly limit: number;
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly setTimer: (run: () => void, ms: number) => () => void;
  private readonly summary: (count: number) => void;
  private windowStart = -Infinity;
  private shown = 0;
  private held = 0;
  private cancel: (() => void) | null = null;

  constructor(
    summary: (count: number) => void,
    options: {
      limit?: number;
      windowMs?: number;
      now?: () => number;
      setTimer?: (run: () => void, ms: number) => () => void;
    } = {},
  ) {
    this.summary = summary;
    this.limit = options.limit ?? 10;
    this.windowMs = options.windowMs ?? 2000;
    // Monotonic: a wall clock set back would hold every join until it caught up.
    this.now = options.now ?? (() => performance.now());
    this.setTimer =
      options.setTimer ??
      ((run, ms) => {
        const t = setTimeout(run, ms);
        t.unref();
        return () => clearTimeout(t);
      });
  }

  /** Whether to show `event` now. A join past the limit is counted instead; anything else first flushes the count. */
  admit(event: ChatEvent): boolean {
    if (event.type !== 'join') {
      this.flush();
      return true;
    }
    const now = this.now();
    if (now - this.windowStart >= this.windowMs) {
      this.flush();
      this.windowStart = now;
      this.shown = 0;
    }
    if (this.shown < this.limit) {
      this.shown++;
      return true;
    }
    if (this.held++ === 0) this.cancel = this.setTimer(() => this.flush(), this.windowStart + this.windowMs - now);
    return false;
  }

  /** Reports the joins held back, if any. */
  flush(): void {
    this.cancel?.();
    this.cancel = null;
    if (this.held === 0) return;
    const count = this.held;
    this.held = 0;
    this.summary(count);
  }
}

/** What the line for joins held back by JoinBurst says, then `hint`. */
export function moreJoinedText(count: number, hint = ''): string {
  return `${count} more joined${hint}`;
}

function tag(w: Who, inert: (s: string) => string): string {
  const mark = w.trust === 'verified' ? ' ✓' : w.trust === 'changed' ? ' !' : '';
  return `${inert(w.nick)} ${w.fingerprint}${mark}`;
}

/** One line of plain output, or null for events line mode does not show on stdout. */
export function formatLine(event: ChatEvent, inert: (s: string) => string): string | null {
  switch (event.type) {
    case 'invite':
      return `* invite: ${event.link}`;
    case 'joined':
      return event.members.length === 0
        ? `* joined as ${inert(event.nick)} ${event.fingerprint}; nobody else is here yet`
        : `* joined as ${inert(event.nick)} ${event.fingerprint}; here: ${hereList(event.members, (m) => tag(m, inert))}`;
    case 'message': {
      const warn = event.warning === 'history-mismatch' ? ' (! this sender showed others a different history)' : '';
      const mark = event.history ? '(history) ' : '';
      return event.action
        ? `${mark}* ${tag(event, inert)} ${inert(event.text)}${warn}`
        : `${mark}<${tag(event, inert)}> ${inert(event.text)}${warn}`;
    }
    case 'join':
      return `* ${tag(event, inert)} joined`;
    case 'leave':
      return event.reason === 'left' ? `* ${inert(event.nick)} left` : `* ${inert(event.nick)} left (connection lost)`;
    case 'rejected':
      return `! rejected a message relayed as ${inert(event.nick)} (#${event.seq}): ${event.reason}: ${inert(event.message)}`;
    case 'gap':
      return `! ${event.missing} message${event.missing === 1 ? '' : 's'} from ${inert(event.nick)} ${event.fingerprint} never reached you (sent while you were away, or dropped by the relay)`;
    case 'key-changed':
      return (
        `! WARNING: the key of ${inert(event.nick)} changed (was ${event.oldFingerprint}, now ${event.newFingerprint}). ` +
        `It may be a new install, or someone posing as ${inert(event.nick)}. Sending here is blocked until you decide: ` +
        `confab trust ${inert(event.nick)} to accept it, or confab trust ${inert(event.nick)} --reject to keep the old key` +
        // Never the invite link itself: it holds the room secret, and lines like this get pasted.
        ' (add --room INVITE if this home knows several rooms)'
      );
    case 'missed':
      return `! ${missedText(event.count)}`;
    case 'resent':
      return `* ${resentText(event.count)}`;
    case 'released':
      return `* ${releasedText(inert(event.nick), event.count, event.dropped)}`;
    case 'sent':
    case 'disconnect':
    case 'reconnect':
    case 'error':
      return null;
  }
}

/** The stderr notice line mode prints for connection events and errors. */
export function formatNotice(event: ChatEvent, inert: (s: string) => string): string | null {
  switch (event.type) {
    case 'disconnect':
      return `confab: connection lost${event.message !== null ? ` (${inert(event.message)})` : ''}${
        event.reconnecting ? '; reconnecting' : ''
      }`;
    case 'reconnect':
      return 'confab: reconnected';
    case 'error':
      return `confab: ${event.code}: ${inert(event.message)}`;
    default:
      return null;
  }
}

/** What a `released` event says: the messages a key signed before it was accepted, shown now. `nick`: made inert. */
export function releasedText(nick: string, count: number, dropped: number): string {
  const shown = `${count} message${count === 1 ? '' : 's'} ${nick} sent under the new key before you accepted it`;
  const follow = count === 0 ? '' : count === 1 ? ' follows' : ' follow';
  return `${shown}${follow}${dropped > 0 ? ` (${dropped} more were not kept)` : ''}`;
}

/** What a `resent` event says. */
export function resentText(count: number): string {
  return `sending ${count} message${count === 1 ? '' : 's'} left unacknowledged by your last session`;
}

/** What a `missed` event says: how many messages of the room can't be had, and why. */
export function missedText(count: number): string {
  return count === 0
    ? 'the server numbers this room from the start again, or from an older point (it lost its history: a restart without its data, or a store replaced or restored from a copy): what it no longer has is gone, anything sent while you were disconnected from it among it; its last messages are read again, and the ones you had are not shown twice'
    : `${count} message${count === 1 ? '' : 's'} of this room can't be had: the server no longer keeps ${count === 1 ? 'it' : 'them'} (past its retention, or it keeps no history)`;
}
