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

/**
 * Places for refused sockets to linger, per address and in all. A refused
 * socket is in no other count, so without a bound a peer that connects as fast
 * as it can and never reads would hold its connect rate × the linger in
 * descriptors (a review reached 13,512 from one address).
 */
export class LingerBudget {
  private readonly perIp = new Map<string, number>();
  private held = 0;
  private readonly maxPerIp: number;
  private readonly maxTotal: number;

  constructor(maxPerIp: number, maxTotal: number) {
    this.maxPerIp = maxPerIp;
    this.maxTotal = maxTotal;
  }

  /** Takes a place for a socket from `ip`; false when the address or the server has none left. */
  take(ip: string): boolean {
    const mine = this.perIp.get(ip) ?? 0;
    if (mine >= this.maxPerIp || this.held >= this.maxTotal) return false;
    this.perIp.set(ip, mine + 1);
    this.held++;
    return true;
  }

  /** Gives back a place taken for `ip`; an address holding none is forgotten. */
  release(ip: string): void {
    const mine = this.perIp.get(ip);
    if (mine === undefined) return;
    if (mine <= 1) this.perIp.delete(ip);
    else this.perIp.set(ip, mine - 1);
    this.held--;
  }

  /** Places taken in all. */
  get size(): number {
    return this.held;
  }

  /** Addresses holding a place. */
  get addresses(): number {
    return this.perIp.size;
  }
}
