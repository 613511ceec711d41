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
  | { type: 'sent'; nick: string; text: string; seq: number; ts: number }
  | ({ type: 'join'; ts: number } & Who)
  | { type: 'leave'; nick: string; reason: 'left' | 'disconnected'; ts: number }
  | { type: 'rejected'; reason: string; nick: string; seq: number; message: string; ts: number }
  | { type: 'gap'; nick: string; fingerprint: string; missing: number; ts: number }
  | { type: 'key-changed'; nick: string; oldFingerprint: string; newFingerprint: string; ts: number }
  | { type: 'disconnect'; code: string | null; message: string | null; reconnecting: boolean; ts: number }
  | { type: 'reconnect'; members: Who[]; ts: number }
  | { type: 'error'; code: string; message: string; ts: number };

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
        : `* joined as ${inert(event.nick)} ${event.fingerprint}; here: ${event.members.map((m) => tag(m, inert)).join(', ')}`;
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

/** What a `resent` event says. */
export function resentText(count: number): string {
  return `sending ${count} message${count === 1 ? '' : 's'} left unacknowledged by your last session`;
}

/** What a `missed` event says: how many messages of the room can't be had, and why. */
export function missedText(count: number): string {
  return count === 0
    ? "the server lost this room's history (it restarted without its data): messages sent while you were away are gone"
    : `${count} message${count === 1 ? '' : 's'} of this room can't be had: the server no longer keeps ${count === 1 ? 'it' : 'them'} (past its retention, or it keeps no history)`;
}
