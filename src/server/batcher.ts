/** Something that has writes waiting for the end of this event-loop turn. */
export interface Flushable {
  flush(): void;
}

/**
 * Collects rooms and connections with pending output during one event-loop turn
 * and flushes them together in a `setImmediate`, after the turn's I/O callbacks
 * have run. Rooms flush first (turning their batch into one buffer per member),
 * then connections (one write, or one corked writev, each).
 */
export class Batcher {
  private rooms: Flushable[] = [];
  private conns: Flushable[] = [];
  private scheduled = false;
  private turn = 0;
  private readonly afterFlush: () => void;
  private readonly beforeFlush: () => void;

  /**
   * `beforeFlush` runs first in every flush (the relay commits the turn's
   * messages there, then broadcasts them); `afterFlush` runs last.
   */
  constructor(afterFlush: () => void = () => {}, beforeFlush: () => void = () => {}) {
    this.afterFlush = afterFlush;
    this.beforeFlush = beforeFlush;
  }

  /** Makes sure a flush follows this turn, with nothing queued yet. */
  touch(): void {
    this.schedule();
  }

  addRoom(room: Flushable): void {
    this.rooms.push(room);
    this.schedule();
  }

  addConnection(conn: Flushable): void {
    this.conns.push(conn);
    this.schedule();
  }

  /** Runs the pending flushes now (also used when membership changes mid-turn). */
  readonly flush = (): void => {
    this.scheduled = false;
    this.beforeFlush();
    const rooms = this.rooms;
    this.rooms = [];
    for (const room of rooms) room.flush();
    const conns = this.conns;
    this.conns = [];
    // Start each turn's writes at another place in the list: whoever is written
    // first hears first and answers first, and a fixed order would let the
    // same connections win every turn.
    const n = conns.length;
    const start = n === 0 ? 0 : this.turn++ % n;
    for (let i = start; i < n; i++) (conns[i] as Flushable).flush();
    for (let i = 0; i < start; i++) (conns[i] as Flushable).flush();
    this.afterFlush();
  };

  private schedule(): void {
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }
}
