/** Something that has writes waiting for the end of this event-loop turn. */
export interface Flushable {
  flush(): void;
}

/** Writes a turn's connections: `add` for each, in the turn's order, then `finish`. */
export interface ConnectionWriter<C> {
  add(conn: C): void;
  finish(): void;
}

/** Each connection writes its own output, as it is added. */
export const flushEach: ConnectionWriter<Flushable> = { add: (conn) => conn.flush(), finish: () => {} };

/**
 * Collects rooms and connections with pending output during one event-loop turn
 * and flushes them together in a `setImmediate`, after the turn's I/O callbacks
 * have run. Rooms flush first (turning their batch into one buffer per member),
 * then connections (one write, or one corked writev, each; or all of them in
 * one call with the native fan-out).
 */
export class Batcher<C extends Flushable = Flushable> {
  private readonly rooms: (Flushable | undefined)[] = [];
  private roomCount = 0;
  // The turn's connections fill `conns` from 0 to `connCount`. Two arrays take
  // turns and are cleared, never shrunk, so that a turn that writes to hundreds
  // of members allocates nothing here.
  private conns: (C | undefined)[] = [];
  private connCount = 0;
  private spare: (C | undefined)[] | null = [];
  private scheduled = false;
  // Flushes running now (one may start inside another); whether a flush was
  // asked for while they ran with nothing queued (touch); whether anything was
  // queued or asked for while they ran at all.
  private depth = 0;
  private touched = false;
  private asked = false;
  private turn = 0;
  private readonly afterFlush: () => void;
  private readonly beforeFlush: () => void;
  private readonly writer: ConnectionWriter<C>;
  private readonly defer: (run: () => void) => void;

  /**
   * `beforeFlush` runs first in every flush (the relay commits the turn's
   * messages there, then broadcasts them); `afterFlush` runs last.
   * `writer` writes the turn's connections. `defer` runs a flush after the
   * turn's I/O callbacks (`setImmediate`; tests pass their own).
   */
  constructor(
    afterFlush: () => void = () => {},
    beforeFlush: () => void = () => {},
    writer: ConnectionWriter<C> = flushEach,
    defer: (run: () => void) => void = setImmediate,
  ) {
    this.afterFlush = afterFlush;
    this.beforeFlush = beforeFlush;
    this.writer = writer;
    this.defer = defer;
  }

  /** Makes sure a flush follows this turn, with nothing queued yet. */
  touch(): void {
    if (this.depth > 0) this.touched = true;
    this.schedule();
  }

  addRoom(room: Flushable): void {
    this.rooms[this.roomCount++] = room;
    this.schedule();
  }

  addConnection(conn: C): void {
    this.conns[this.connCount++] = conn;
    this.schedule();
  }

  /** Runs the pending flushes now (also used when membership changes mid-turn). */
  readonly flush = (): void => {
    this.scheduled = false;
    if (this.depth === 0) this.asked = false;
    this.depth++;
    let done = false;
    try {
      this.run();
      done = true;
    } finally {
      if (--this.depth === 0) {
        // What the flush queued for itself (the commit's broadcasts, the rooms'
        // writes) it has written; only what came after needs another.
        // Scheduling on every add made every message's flush cost a second,
        // empty, turn. A flush that threw gets another only if something was
        // queued while it ran: one that throws before queueing anything (a
        // failing commit) must not run again and again on its own.
        const again = done ? this.roomCount > 0 || this.connCount > 0 || this.touched : this.asked;
        this.touched = false;
        this.asked = false;
        if (again) this.schedule();
      }
    }
  };

  private run(): void {
    this.beforeFlush();
    // Filled by count and cleared, never replaced: a turn's rooms allocate nothing here.
    const rooms = this.rooms;
    for (let i = 0; i < this.roomCount; i++) (rooms[i] as Flushable).flush();
    rooms.fill(undefined, 0, this.roomCount);
    this.roomCount = 0;
    const conns = this.conns;
    const n = this.connCount;
    // A flush inside this one (a write's callback could start one) gets a new array.
    this.conns = this.spare ?? [];
    this.spare = null;
    this.connCount = 0;
    // Start each turn's writes at another place in the list: whoever is written
    // first hears first and answers first, and a fixed order would let the
    // same connections win every turn.
    if (n > 0) {
      const start = this.turn++ % n;
      for (let i = start; i < n; i++) this.writer.add(conns[i] as C);
      for (let i = 0; i < start; i++) this.writer.add(conns[i] as C);
      this.writer.finish();
      conns.fill(undefined, 0, n); // no closed connection is kept alive from here
    }
    this.spare = conns;
    this.afterFlush();
  }

  private schedule(): void {
    if (this.depth > 0) this.asked = true;
    else if (!this.scheduled) {
      this.scheduled = true;
      this.defer(this.flush);
    }
  }
}
