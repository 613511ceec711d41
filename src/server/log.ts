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
