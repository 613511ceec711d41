import { encodeMemberJoined, encodeMemberLeft } from '../protocol/index.js';
import type { Batcher, Flushable } from './batcher.js';
import type { Connection } from './connection.js';

/** A connection's presence in one room under one nick. */
export interface Member {
  readonly conn: Connection;
  readonly room: Room;
  readonly nick: string;
  /** The nick as UTF-8, encoded once at join and copied into every frame. */
  readonly nickBytes: Uint8Array;
  /** Its identity key, proven at join. */
  readonly key: Uint8Array;
}

/**
 * A room: its members in join order, its sequence counter and the frames of
 * this event-loop turn that still have to go out.
 *
 * Fan-out: all frames of a turn are concatenated once, and that one buffer is
 * queued to every member. A member who sent some of them gets a copy without its
 * own frames instead, built once per distinct sender, not per recipient.
 */
export class Room implements Flushable {
  readonly id: Uint8Array;
  readonly key: string;
  /** The id of the numbering `seq` counts in, which JOINED gives (PROTOCOL.md §4.9). */
  readonly numbering: Uint8Array;
  seq = 0;
  /** The last number the commit under way has handed out (the relay's, kept only if the commit succeeds). */
  tentative = 0;
  /** This turn's SENDs to it waiting for the commit (the relay's count). */
  sending = 0;
  readonly members: Member[] = [];
  private readonly byNick = new Map<string, Member>();
  // This turn's frames fill these three from 0 to `pendingCount`; they are
  // cleared after each flush, never shrunk or replaced, so that a turn's
  // broadcasts allocate no arrays (emptying an array by its length would
  // give its storage back, and the next push would allocate it again).
  private readonly pending: (Uint8Array | undefined)[] = [];
  /** Who sent each pending frame (null: the server, goes to everyone). */
  private readonly pendingFrom: (Connection | null)[] = [];
  /** What its sender gets in its place (its ACK), or null for nothing. */
  private readonly pendingOwn: (Uint8Array | null)[] = [];
  private pendingCount = 0;
  private readonly batcher: Batcher<Connection>;

  constructor(id: Uint8Array, key: string, numbering: Uint8Array, batcher: Batcher<Connection>) {
    this.id = id;
    this.key = key;
    this.numbering = numbering;
    this.batcher = batcher;
  }

  memberByNick(nick: string): Member | undefined {
    return this.byNick.get(nick.toLowerCase());
  }

  /** Adds a member and tells the others. Flushes the turn's batch first so that
   * the newcomer gets nothing numbered before its JOINED. */
  add(member: Member): void {
    if (this.pendingCount > 0) this.flush();
    this.members.push(member);
    this.byNick.set(member.nick.toLowerCase(), member);
    this.broadcast(encodeMemberJoined(this.id, member.nickBytes, member.key), member.conn);
  }

  /** Removes a member and tells the others why. */
  remove(member: Member, reason: number): void {
    const i = this.members.indexOf(member);
    if (i < 0) return;
    if (this.pendingCount > 0) this.flush();
    this.members.splice(i, 1);
    this.byNick.delete(member.nick.toLowerCase());
    this.broadcast(encodeMemberLeft(this.id, member.nickBytes, reason), member.conn);
  }

  /**
   * Queues a frame for every member except `from`, to go out at the end of the
   * turn; `from` gets `own` in its place (its ACK), so that each member hears
   * the room's numbers in order, its own messages included.
   */
  broadcast(frame: Uint8Array, from: Connection | null, own: Uint8Array | null = null): void {
    const i = this.pendingCount++;
    if (i === 0) this.batcher.addRoom(this);
    this.pending[i] = frame;
    this.pendingFrom[i] = from;
    this.pendingOwn[i] = own;
  }

  flush(): void {
    const n = this.pendingCount;
    if (n === 0) return;
    // Nothing a flush calls broadcasts to a room, so the lists stay as they are until cleared.
    this.write(n);
    this.pendingCount = 0;
    this.pending.fill(undefined, 0, n); // no frame is kept alive from here
    this.pendingFrom.fill(null, 0, n);
    this.pendingOwn.fill(null, 0, n);
  }

  /** Sends the turn's `n` frames. */
  private write(n: number): void {
    const from = this.pendingFrom;
    const owns = this.pendingOwn;
    const members = this.members;
    if (n === 1) {
      const frame = this.pending[0] as Uint8Array;
      const sender = from[0] ?? null;
      for (const m of members) if (m.conn !== sender) m.conn.enqueue(frame);
      const own = owns[0] ?? null;
      if (sender !== null && own !== null) sender.enqueue(own);
      return;
    }
    const frames = this.pending.slice(0, n) as Uint8Array[];
    const all = Buffer.concat(frames);
    const senders = new Set<Connection>();
    for (let i = 0; i < frames.length; i++) {
      const sender = from[i];
      if (sender !== null && sender !== undefined) senders.add(sender);
    }
    const forSender = new Map<Connection, Buffer>();
    // Every sender is still a member: the relay flushes a room before anyone leaves it.
    for (const sender of senders) {
      const mine: Uint8Array[] = [];
      for (let i = 0; i < frames.length; i++) {
        if (from[i] !== sender) mine.push(frames[i] as Uint8Array);
        else if (owns[i] !== null) mine.push(owns[i] as Uint8Array);
      }
      forSender.set(sender, Buffer.concat(mine));
    }
    for (const m of members) {
      const buf = forSender.size > 0 ? (forSender.get(m.conn) ?? all) : all;
      if (buf.length > 0) m.conn.enqueue(buf);
    }
  }
}
