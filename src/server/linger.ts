import type { Socket } from 'node:net';
import type { Clock } from '../protocol/index.js';

/**
 * Destroys `socket` if it is still open `ms` after its end was sent: a peer
 * that never reads must not hold it open. The timer goes when the socket
 * closes: left running, it would hold the connection's objects, and the
 * process at shutdown, for the whole `ms`.
 */
export function lingerThenDestroy(socket: Socket, clock: Clock, ms: number): void {
  if (socket.destroyed) return;
  const cancel = clock.setTimer(() => socket.destroy(), ms);
  socket.once('close', cancel);
}
