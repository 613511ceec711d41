import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { Emitter } from './emitter.js';
import { ClientError } from './errors.js';

/** What a member knows about another nick's key in one room. */
export interface Pin {
  nick: string;
  /** The accepted key, base64url. */
  key: string;
  verified: boolean;
  /** A different key seen for this nick and not yet accepted. */
  pending?: string;
}

/** The per-sender replay window: highest sequence seen and that envelope's hash. */
export interface SenderMark {
  seq: number;
  /** base64url SHA-256 of that envelope, for the next one's prevHash. */
  hash: string;
  /**
   * The room's sequence number that message came under (for our own mark, set
   * at its ACK): a catch-up that brings our own back there (after a restart,
   * when the cursor had not passed it yet) is not a replay, and a sender's gap
   * is explained only by a `missed` report between two such numbers. Absent in
   * marks written before it was kept.
   */
  at?: number;
}

/** A message sealed and sent but not yet acknowledged: resent, same id and bytes, after a restart. */
export interface OutboxEntry {
  /** Client message id, base64url. */
  mid: string;
  /** The sealed envelope, base64url. */
  body: string;
  /** The nick it is signed as (a resend under another nick must be sealed again). */
  nick?: string;
  /** Our sequence number in it, and its hash (base64url): our replay mark once it is acknowledged. */
  seq?: number;
  hash?: string;
  /**
   * When it was sealed again: its earlier copies (our number in each and its
   * hash, base64url), of which the server may have stored one (its ACK lost),
   * and the room's number at the join it was sealed again after. A copy
   * stored by then is an earlier one.
   */
  was?: { seq: number; hash: string }[];
  after?: number;
}

interface Data {
  v: 1;
  outbox: OutboxEntry[];
  /** Our own last sequence number in this room. */
  mySeq: number;
  /** base64url hash of our last envelope. */
  myPrev: string;
  pins: Record<string, Pin>;
  senders: Record<string, SenderMark>;
  /**
   * Our own messages acknowledged past the cursor: room number → envelope
   * hash (base64url). They were shown when sent; a catch-up (after a
   * reconnect, or a restart) that brings them back at those numbers is not a
   * replay. Dropped as the cursor passes them; at most `MAX_OWN_AHEAD`.
   */
  ownAhead?: Record<string, string>;
  /**
   * How far the room had been seen when this file was written: the same
   * snapshot as the senders' marks. The cursor file is written as each
   * message is shown, this file once a turn; a process killed in between left
   * a cursor past marks that had not caught up, and the next message of each
   * sender then showed a gap that was never there.
   */
  cursor?: number;
  /**
   * The server's id of the numbering `cursor` counts in (base64url), from
   * the JOINED of the run that wrote it: another at the next join means the
   * server started the room's numbers again, and the cursor is void.
   */
  numbering?: string;
}

/** Most own messages kept in `ownAhead`: a catch-up that never ends must not grow the file for ever. */
export const MAX_OWN_AHEAD = 1000;

function empty(): Data {
  return { v: 1, mySeq: 0, myPrev: '', pins: {}, senders: {}, outbox: [] };
}

export interface RoomStateEvents extends Record<string, unknown> {
  /**
   * A write done in the background (the end-of-turn save, the cursor) failed:
   * a full disk, a home made read-only. Reported once until a write succeeds
   * again; what was not written stays in memory and is written at the next
   * change.
   */
  error: ClientError;
}

/**
 * One room's client-side trust state: pinned keys (TOFU), verification marks,
 * each sender's high-water mark, and our own counter. Kept as a small JSON file
 * in the home (`rooms/<room id>.json`, mode 0600), or only in memory.
 */
export class RoomState extends Emitter<RoomStateEvents> {
  private data: Data;
  private readonly path: string | undefined;

  private constructor(path: string | undefined, data: Data) {
    super();
    this.path = path;
    this.data = data;
  }

  /** State kept in memory only (library use without a home). */
  static memory(): RoomState {
    return new RoomState(undefined, empty());
  }

  /** The path of the room's file ending in `suffix` (`.json`, `.lock`) under `home`, its folder made if missing. */
  static fileOf(home: string, roomIdHex: string, suffix: string): string {
    const dir = join(home, 'rooms');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return join(dir, `${roomIdHex}${suffix}`);
  }

  /**
   * Loads (or starts) the state of `roomIdHex` under `home`.
   * @throws Error naming the file if it exists and can't be read or parsed
   * (never taken for a fresh start: its pins are what make a key change show)
   */
  static load(home: string, roomIdHex: string): RoomState {
    const path = RoomState.fileOf(home, roomIdHex, '.json');
    let data = empty();
    try {
      const parsed = JSON.parse(readFileSync(path, 'utf8')) as unknown;
      // Not a version-1 object (another version's file, an array, damage that
      // still parses) is not a fresh start either: written over, it would lose
      // the pins, and this key would number its messages from 1 again.
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || (parsed as Partial<Data>).v !== 1) {
        const v = typeof parsed === 'object' && parsed !== null ? (parsed as { v?: unknown }).v : undefined;
        throw new SyntaxError(
          typeof v === 'number' && v > 1 ? `written by a newer confab (version ${v})` : 'not a room state',
        );
      }
      const ok = parsed as Partial<Data>;
      const isRecord = (x: unknown): boolean => typeof x === 'object' && x !== null && !Array.isArray(x);
      if ((ok.pins !== undefined && !isRecord(ok.pins)) || (ok.senders !== undefined && !isRecord(ok.senders))) {
        throw new SyntaxError('its pins or senders are not what a room state holds');
      }
      data = { ...empty(), ...ok, outbox: Array.isArray(ok.outbox) ? ok.outbox : [] };
      if (data.cursor !== undefined && !(Number.isSafeInteger(data.cursor) && data.cursor >= 0)) delete data.cursor;
      if (data.numbering !== undefined && typeof data.numbering !== 'string') delete data.numbering;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        const why = err instanceof Error ? err.message : String(err);
        throw new Error(
          `cannot read this room's state file ${path} (${why}): move it away to start the room afresh, losing its pinned keys and unsent messages`,
          { cause: err },
        );
      }
    }
    return new RoomState(path, data);
  }

  /** The file as last read or written (inode, size, mtime): each save renames a new file in. */
  private stamp = '';
  /**
   * Pins set lazily and not written yet, each with the pin it replaced: kept
   * through a reload unless the file changed that nick meanwhile (see setPin).
   */
  private readonly unsaved = new Map<string, { pin: Pin; base: Pin | undefined }>();

  /**
   * Picks up pins changed by another process (`confab trust`, `confab
   * verify`) since we last read or wrote the file. A stat per call; the file is
   * re-read only when it changed.
   */
  reload(): void {
    if (this.path === undefined) return;
    try {
      const stamp = stampOf(statSync(this.path));
      if (stamp === this.stamp) return;
      const parsed = JSON.parse(readFileSync(this.path, 'utf8')) as Partial<Data>;
      this.stamp = stamp;
      if (parsed.v === 1) {
        const pins = parsed.pins ?? {};
        // Ours stand where the other process left the nick as it was; where it
        // changed it (the user verified or accepted a key), its word wins.
        for (const [nick, { pin, base }] of this.unsaved) {
          if (samePin(pins[nick], base)) pins[nick] = pin;
          else this.unsaved.delete(nick); // the next lazy pin of the nick starts from the file's word
        }
        this.data.pins = pins;
      }
    } catch {
      // no file yet, or mid-rename: keep what we have
    }
  }

  pin(nick: string): Pin | undefined {
    this.reload();
    return this.data.pins[nick.toLowerCase()];
  }

  pins(): Pin[] {
    this.reload();
    return Object.values(this.data.pins);
  }

  /**
   * Records a pin. The user's decisions (verified, a change accepted) are
   * written at once. `lazily`, for what the room itself shows us (a key seen
   * first, a change noticed), is written at the end of the turn with the
   * other changes: a server announcing thousands of members in one burst then
   * costs one write, not one rewrite of a growing file per member. Lost to a
   * crash, such a pin is only seen again, and recorded again, next time.
   */
  setPin(pin: Pin, lazily = false): void {
    this.reload();
    const nick = pin.nick.toLowerCase();
    const base = this.unsaved.get(nick)?.base ?? this.data.pins[nick];
    this.data.pins[nick] = pin;
    if (!lazily) {
      this.save();
      return;
    }
    if (this.path === undefined) return; // nothing to write, nor to reload
    this.unsaved.set(nick, { pin, base });
    this.later();
  }

  sender(key: string): SenderMark | undefined {
    return this.data.senders[key];
  }

  /** Notes that our own message `hash` was stored as room message `seq`, past the cursor; saved at the end of this turn. */
  ownAheadAdd(seq: number, hash: string): void {
    const ahead = (this.data.ownAhead ??= {});
    ahead[String(seq)] = hash;
    const numbers = Object.keys(ahead);
    if (numbers.length > MAX_OWN_AHEAD) {
      const lowest = Math.min(...numbers.map(Number));
      delete ahead[String(lowest)];
    }
    this.later();
  }

  /** The hash of our own message acknowledged as room message `seq` past the cursor, if any. */
  ownAheadAt(seq: number): string | undefined {
    return this.data.ownAhead?.[String(seq)];
  }

  /** Forgets our own messages at or below `seq` (the cursor has passed them, or one was seen again). */
  ownAheadUpTo(seq: number): void {
    const ahead = this.data.ownAhead;
    if (ahead === undefined) return;
    let changed = false;
    for (const n of Object.keys(ahead)) {
      if (Number(n) <= seq) {
        delete ahead[n];
        changed = true;
      }
    }
    if (changed) this.later();
  }

  /** Records a sender's newest message; saved at the end of this turn. */
  markSender(key: string, mark: SenderMark): void {
    this.data.senders[key] = mark;
    this.later();
  }

  /**
   * Reserves our next sequence number and records the envelope hash it will
   * follow. Written to disk before the message leaves, so a restart never
   * reuses a number (receivers would take it for a replay).
   */
  nextSeq(): { seq: number; prev: string } {
    const prev = this.data.myPrev;
    this.data.mySeq += 1;
    return { seq: this.data.mySeq, prev };
  }

  /**
   * Puts back what nextSeq and sealed change, as they are now: for a message
   * whose sealing or saving fails, which must spend no number (the next one
   * would follow an envelope nobody received) and leave the outbox as it was.
   */
  undoPoint(): () => void {
    const { mySeq, myPrev } = this.data;
    const outbox = [...this.data.outbox];
    return () => {
      this.data.mySeq = mySeq;
      this.data.myPrev = myPrev;
      this.data.outbox = outbox;
    };
  }

  /**
   * Records the hash of the envelope just sealed with `nextSeq`, and the
   * envelope itself in the outbox (in place of an entry with the same id, when
   * sealed again), and saves: before it is sent, so a crash can't lose it or
   * reuse its number.
   */
  sealed(hash: string, entry: OutboxEntry): void {
    // One sealed again under its old number is our latest only if nothing followed it.
    if (entry.seq === undefined || entry.seq === this.data.mySeq) this.data.myPrev = hash;
    const i = this.data.outbox.findIndex((e) => e.mid === entry.mid);
    if (i >= 0) this.data.outbox[i] = entry;
    else this.data.outbox.push(entry);
    this.save();
  }

  /**
   * The server had stored an earlier copy of outbox entry `mid`, our message
   * `seq` whose hash is `hash`: that is the copy the others have, so it is
   * what our replay mark and our next message must name, if nothing of ours
   * followed it yet.
   */
  delivered(mid: string, seq: number, hash: string): void {
    const entry = this.data.outbox.find((e) => e.mid === mid);
    if (entry?.seq !== seq || entry.hash === hash) return;
    if (entry.seq === this.data.mySeq && this.data.myPrev === entry.hash) this.data.myPrev = hash;
    entry.hash = hash;
    // Not saved now: this runs as a frame is read, where a full disk must not
    // end the connection; if it is lost, our next message names the other copy.
    this.later();
  }

  /** Messages sealed and not yet acknowledged, oldest first. */
  outbox(): readonly OutboxEntry[] {
    return this.data.outbox;
  }

  /**
   * Takes an acknowledged (or finally refused) message out of the outbox.
   * Saved lazily: if a crash loses this, the message is resent and the server
   * recognises its id.
   */
  outboxDone(mid: string): void {
    const i = this.data.outbox.findIndex((e) => e.mid === mid);
    if (i < 0) return;
    this.data.outbox.splice(i, 1);
    this.later();
  }

  private cursorFd: number | null = null;

  /**
   * The room's last sequence number seen, from an earlier run; undefined on a
   * first visit. The state file's (consistent with the senders' marks) where it
   * has one; a cursor file past it means the run was killed before it saved
   * the marks of the messages in between, which are then shown again (at most
   * one turn's) rather than taken for gaps. Files written before it was kept:
   * the cursor file's.
   */
  cursor(): number | undefined {
    if (this.data.cursor === undefined && this.path !== undefined) {
      try {
        const n = Number(readFileSync(this.cursorPath(), 'utf8').trim());
        // Kept with the rest from here on: written at the next save.
        if (Number.isSafeInteger(n) && n >= 0) this.data.cursor = n;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    return this.data.cursor;
  }

  /**
   * Records how far the room has been seen: in the state file at the end of
   * this turn, with the senders' marks (what the next run reads, so a run
   * killed meanwhile shows this turn's messages again and loses none), and at
   * once in `rooms/<id>.cursor`, a fixed-size record a crash can't tear, which
   * is read only beside a state file from before the cursor was kept in it.
   */
  setCursor(seq: number): void {
    if (this.data.cursor !== seq) {
      this.data.cursor = seq;
      this.later();
    }
    if (this.path === undefined) return;
    try {
      if (this.cursorFd === null) {
        const p = this.cursorPath();
        this.cursorFd = openSync(p, existsSync(p) ? 'r+' : 'w', 0o600);
      }
      writeSync(this.cursorFd, `${String(seq).padStart(16, ' ')}\n`, 0);
    } catch (err) {
      // Called as each message is shown: a throw would end the connection, and
      // the next one would fail the same way. Kept in memory, written at the next message.
      this.failed('cursor', err);
      return;
    }
    this.failing.delete('cursor');
  }

  /** The numbering the cursor counts in (`JoinOptions.numbering`), if an earlier run kept it. */
  numbering(): Uint8Array | undefined {
    return this.data.numbering === undefined
      ? undefined
      : new Uint8Array(Buffer.from(this.data.numbering, 'base64url'));
  }

  /** Records the numbering a JOINED named, saved with the cursor at the end of this turn. */
  setNumbering(numbering: Uint8Array): void {
    const text = Buffer.from(numbering).toString('base64url');
    if (this.data.numbering === text) return;
    this.data.numbering = text;
    this.later();
  }

  private cursorPath(): string {
    return (this.path as string).replace(/\.json$/, '.cursor');
  }

  private dirty = false;
  private scheduled: NodeJS.Immediate | null = null;
  /**
   * The files whose background write failed and was reported, each until one
   * of its writes succeeds: kept apart, since on a full disk the cursor (a
   * write in place) still goes in while the state file (a new copy) does not.
   */
  private readonly failing = new Set<'state' | 'cursor'>();

  /**
   * Marks the state changed and saves it once this turn's work is done: one
   * write for a whole burst of messages, made right after they are shown. If
   * that write fails, the state stays dirty and the next change tries again.
   */
  private later(): void {
    this.dirty = true;
    if (this.path === undefined || this.scheduled !== null) return;
    this.scheduled = setImmediate(() => {
      this.scheduled = null;
      this.flush();
    });
  }

  /**
   * Writes pending changes now. Never throws: a failure is an `error` event
   * (once until a write succeeds) and the changes wait for the next try.
   * Returns false if they could not be written.
   */
  flush(): boolean {
    if (this.scheduled !== null) {
      clearImmediate(this.scheduled);
      this.scheduled = null;
    }
    if (!this.dirty) return true;
    try {
      this.save();
      return true;
    } catch (err) {
      this.failed('state', err);
      return false;
    }
  }

  /** Reports a failed background write, once until one succeeds. */
  private failed(file: 'state' | 'cursor', err: unknown): void {
    if (this.failing.has(file)) return;
    this.failing.add(file);
    const why = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    this.emit(
      'error',
      new ClientError(
        'SAVE_FAILED',
        `could not write ${file === 'cursor' ? 'how far this room was read' : "this room's state"} in ${this.path ?? 'the home'} (${why}): kept in memory, written again at the next change`,
        false,
        { cause: err },
      ),
    );
  }

  /**
   * Writes the state now. Throws what the file system throws; the state then
   * stays dirty (the file lacks what memory has), for the next try.
   */
  private save(): void {
    if (this.path === undefined) {
      this.dirty = false;
      return;
    }
    this.reload(); // never write back pins another process has just changed
    const tmp = `${this.path}.${process.pid}.tmp`;
    let stamp: string;
    try {
      const fd = openSync(tmp, 'w', 0o600);
      try {
        writeFileSync(fd, JSON.stringify(this.data));
        // Taken from our own file before it goes in (a rename keeps inode, size
        // and mtime): a stat of the path after could see another process's
        // file renamed in just after ours, and never read it.
        stamp = stampOf(fstatSync(fd));
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.path);
    } catch (err) {
      this.dirty = true;
      try {
        unlinkSync(tmp); // a half-written copy would hold on to the space a full disk lacks
      } catch {
        // never created, or already gone
      }
      throw err;
    }
    this.dirty = false;
    this.failing.delete('state');
    this.unsaved.clear();
    this.stamp = stamp;
  }
}

/** Whether two pins (or their absence) say the same. */
function samePin(a: Pin | undefined, b: Pin | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.key === b.key && a.verified === b.verified && a.pending === b.pending;
}

/**
 * What tells one version of a room file from the next. The mtime alone can
 * repeat (a coarse file system clock), and then another process's write was
 * missed and overwritten; every save renames a new file in, with a new inode.
 */
function stampOf(st: Stats): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}`;
}
