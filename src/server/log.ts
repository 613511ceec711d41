import { pino } from 'pino';
import type { Logger } from 'pino';

/**
 * The server's logger: JSON lines on stderr, because stdout belongs to what the
 * program prints for people and scripts. Message bodies are never passed to it.
 */
export function createLogger(level: string = process.env['CONFAB_LOG'] ?? 'info'): Logger {
  return pino({ level, base: null }, pino.destination({ dest: 2, sync: true }));
}

/** A short, non-reversible label for a room id in logs. */
export function roomLabel(room: Uint8Array): string {
  return Buffer.from(room.subarray(0, 4)).toString('hex');
}

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/**
 * A client's text (its HELLO agent) as it may go in a log line: control
 * characters, DEL, C1 and the Unicode line and paragraph separators written
 * as `\uXXXX`. JSON escaping leaves the last ones raw, and a reader that
 * splits lines on them (Python's splitlines) would read a forged record.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
