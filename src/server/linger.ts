import type { Socket } from 'node:net';
import type { Clock } from '../protocol/index.js';

/**
 * Destroys `socket` if it is still open `ms` after its end was sent: a peer
 * that never reads must not hold it open. The timer is cancelled when the
 * socket closes, so one that closes in time leaves nothing behind: until
 * 2026-11-27 each closed connection kept a timer, and with it the process on
 * shutdown (about 2 s) and the connection's objects, for the whole `ms`.
 */
export function lingerThenDestroy(socket: Socket, clock: Clock, ms: number): void {
  if (socket.destroyed) return;
  const cancel = clock.setTimer(() => socket.destroy(), ms);
  socket.once('close', cancel);
}
