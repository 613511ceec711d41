import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import type { Database as Db, Statement, Transaction } from 'better-sqlite3';
import { Checkpointer } from './checkpointer.js';
import { NUMBERING_LEN } from '../protocol/index.js';
import { StoreError } from './history.js';
import { ENTRY_BYTES, storedSize, storedSizeSql, waterLevel } from './store-size.js';
import type {
  AppendResult,
  HistoryPage,
  HistoryStore,
  PendingMessage,
  PruneStep,
  Retention,
  RoomLookup,
  SeqSource,
  StoredMessage,
} from './history.js';

/** Options of the SQLite store. */
export interface SqliteHistoryOptions {
  /** Database file, or `:memory:`. */
  path: string;
  retention: Retention;
  /**
   * `full` syncs every commit to disk (survives power loss); `normal`, the
   * default, survives a crash of the process but may lose the last commits to a
   * power cut (SQLite's WAL with synchronous=NORMAL).
   */
  sync?: 'normal' | 'full';
  /**
   * Largest the database may grow, in bytes (0: no cap). A write that meets it
   * first evicts the oldest messages of the rooms that hold the most (see
   * `evict`), then is made again. A full disk is reported, not evicted for.
   */
  maxBytes?: number;
  /** Told of each eviction a full store made, for the log. */
  onEvict?: (eviction: Eviction) => void;
  /**
   * Checkpoint the write-ahead log from a background thread every this many ms
   * (a file database only), instead of in whichever commit crosses SQLite's
   * threshold; 0 (the default) leaves it to SQLite.
   */
  checkpointMs?: number;
  /** Random bytes for the store's numbering id, made once when the store is new; default node:crypto. */
  randomBytes?: (length: number) => Uint8Array;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS rooms (
  id BLOB PRIMARY KEY,
  latest INTEGER NOT NULL,
  bytes INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
  room BLOB NOT NULL,
  seq INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  mid BLOB NOT NULL,
  nick BLOB NOT NULL,
  body BLOB NOT NULL,
  PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_mid ON messages (room, mid);
CREATE TABLE IF NOT EXISTS nicks (
  nick TEXT PRIMARY KEY,
  key BLOB NOT NULL,
  since INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value BLOB NOT NULL
) WITHOUT ROWID;
`;

/** What one eviction took from a full store. */
export interface Eviction {
  rooms: number;
  messages: number;
  /** Bytes of the store, as `storedSize` counts them. */
  bytes: number;
}

/** Rooms with sizes not yet written past which they are written before the next prune. */
const MAX_PENDING = 16_384;

/**
 * Most rooms one step of a prune pass reads and cuts (`pruneSome`). A room
 * costs a few index seeks (8 µs on a slow host), and every room ever joined
 * keeps its row, so a pass over all of them in one go froze the event loop for
 * 3.3 s at 400,000 rooms (one address may now add only one a minute, past its
 * first 32, but many addresses add up).
 */
export const PRUNE_ROOMS_PER_STEP = 1000;

/** The id before every room's: where a prune pass starts. */
const BEFORE_FIRST_ROOM = new Uint8Array(0);

/** Most rooms one eviction reads to find its level. */
const MAX_RANKED = 4096;

/** Evictions a single write may make before it is refused. */
const MAX_EVICTIONS = 8;
/** Most one eviction frees (a sixteenth of the cap, up to this): a larger one stalls the event loop longer. */
const EVICT_MAX_BYTES = 16 * 1024 * 1024;

interface Row {
  seq: number;
  ts: number;
  nick: Buffer;
  body: Buffer;
}

/**
 * The embedded history store: one SQLite database in WAL mode. Messages are
 * the SEND bodies exactly as received (ciphertext), with their room, sequence
 * number, receive time, sender nick and client message id.
 */
export class SqliteHistory implements HistoryStore {
  // In memory too: it lives as long as the server, up to its cap.
  readonly persistent = true;
  /**
   * Made when the store is, kept in it: every room's numbers go on from its
   * row for as long as this file is kept, so one id serves them all. A new
   * file (or `:memory:`, at each start) starts every room from 0 again, and
   * has a new one.
   */
  readonly numbering: Uint8Array;
  private readonly db: Db;
  private readonly retention: Retention;
  private readonly insert: Statement<[Uint8Array, number, number, Uint8Array, Uint8Array, Uint8Array]>;
  private readonly byMid: Statement<[Uint8Array, Uint8Array], { seq: number; ts: number }>;
  private readonly setLatest: Statement<[Uint8Array, number]>;
  private readonly addRoomRow: Statement<[Uint8Array, number]>;
  private readonly getLatest: Statement<[Uint8Array], { latest: number }>;
  private readonly maxSeq: Statement<[Uint8Array], { seq: number | null }>;
  /** Room ids (by identity: the relay hands a room's messages, and its addRoom, one id array) whose row is written. */
  private readonly known = new WeakSet<Uint8Array>();
  /** Rooms whose row the transaction under way writes: known once it commits. */
  private readonly adding: Uint8Array[] = [];
  private readonly page: Statement<[Uint8Array, number, number], Row>;
  private readonly first: Statement<[Uint8Array], { seq: number | null }>;
  private readonly owner: Statement<[string], { key: Buffer }>;
  private readonly claim: Statement<[string, Uint8Array, number]>;
  private readonly release: Statement<[string]>;
  private readonly trimRoom: Statement<[Uint8Array, number]>;
  private readonly firstKept: Statement<[Uint8Array, number, number], { seq: number }>;
  private readonly roomsFrom: Statement<[Uint8Array, number], { id: Buffer; latest: number }>;
  /** Where the prune pass under way goes on from: the last room it cut (the empty id before the first). */
  private pruneAfter: Uint8Array = BEFORE_FIRST_ROOM;
  private readonly cutSize: Statement<[Uint8Array, number], { n: number; bytes: number }>;
  private readonly oldestSizes: Statement<[Uint8Array], { seq: number; bytes: number }>;
  private readonly addBytes: Statement<[number, Uint8Array]>;
  private readonly roomSizes: Statement<[], { id: Buffer; latest: number; bytes: number }>;
  private readonly roomRow: Statement<[Uint8Array], { id: Buffer; latest: number; bytes: number }>;
  private readonly largest: Statement<[number], { id: Buffer; latest: number; bytes: number }>;
  private readonly countedTotal: Statement<[], { bytes: number }>;
  private readonly countedSizes: Statement<[], { id: Buffer; bytes: number }>;
  private readonly pruneRoom: Transaction<
    (id: Uint8Array, rowLatest: number, cutoff: number) => { n: number; bytes: number }
  >;
  /**
   * Changes of rooms' sizes not yet written to `rooms.bytes`: appends, and
   * what prune and eviction cut. Kept here, not written per commit (that row's
   * page would be one more in the log at every commit) nor in eviction's
   * deletes (at the cap a row that grows needs a page). Written after each
   * prune and eviction, past MAX_PENDING rooms, and at close, so a crash loses
   * at most a prune interval's worth; eviction counts every room again when
   * the sizes fall far short of the pages in use. One room may have several
   * entries (its id arrays differ); they add up.
   */
  private readonly pending = new Map<Uint8Array, number>();
  /** `max_page_count` when there is a cap, else 0. */
  private readonly maxPages: number = 0;
  /**
   * Pages past the cap that eviction and pruning may use: a sixty-fourth of
   * the cap, 16 to 1,024 pages (4 MiB at 4 KiB pages).
   */
  private readonly reservePages: number = 0;
  private readonly pageSize: number;
  private readonly onEvict: (eviction: Eviction) => void;
  /** Messages evicted since the store opened. */
  evicted = 0;
  /** Bytes appended since the pages in use were last compared with the cap. */
  private sinceCheck = 0;
  /** Bytes appended between those checks: a quarter of the reserve, or 1 MiB without a cap. */
  private readonly checkEvery: number = 1 << 20;
  private readonly appendAll: Transaction<(batch: readonly PendingMessage[], seqs: SeqSource) => AppendResult[]>;
  /** The background checkpointer, when one runs. */
  readonly checkpointer: Checkpointer | null = null;
  private threadClosed: Promise<void> = Promise.resolve();

  constructor(options: SqliteHistoryOptions) {
    this.retention = options.retention;
    this.onEvict = options.onEvict ?? (() => {});
    try {
      this.db = new Database(options.path);
      if (options.path !== ':memory:') this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${options.sync === 'full' ? 'FULL' : 'NORMAL'}`);
      this.db.pragma('busy_timeout = 5000');
      this.db.exec(SCHEMA);
      this.pageSize = this.db.pragma('page_size', { simple: true }) as number;
      migrate(this.db, storedSizeSql(this.pageSize));
      this.db.exec(ROOMS_BY_SIZE);
      this.numbering = numberingOf(this.db, options.randomBytes ?? randomBytes);
      if (options.maxBytes !== undefined && options.maxBytes > 0) {
        this.maxPages = Math.max(1, Math.floor(options.maxBytes / this.pageSize));
        this.reservePages = Math.min(1024, Math.max(16, Math.floor(this.maxPages / 64)));
        this.checkEvery = (this.reservePages * this.pageSize) / 4;
        this.db.pragma(`max_page_count = ${this.maxPages}`);
      }
    } catch (err) {
      throw storeError(err, `cannot open the history store ${options.path}`);
    }
    const db = this.db;
    const checkpointMs = options.checkpointMs ?? 0;
    if (checkpointMs > 0 && options.path !== ':memory:') {
      const own = (): void => {
        if (db.open) db.pragma(`wal_autocheckpoint = ${SQLITE_AUTOCHECKPOINT}`);
      };
      try {
        this.checkpointer = new Checkpointer(options.path, checkpointMs, own);
        db.pragma(`wal_autocheckpoint = ${BACKSTOP_PAGES}`);
      } catch {
        // No worker thread here: SQLite checkpoints in the commits, as by default.
        own();
      }
    }
    this.insert = db.prepare(
      'INSERT INTO messages (room, seq, ts, mid, nick, body) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room, mid) DO NOTHING',
    );
    this.byMid = db.prepare('SELECT seq, ts FROM messages WHERE room = ? AND mid = ?');
    this.setLatest = db.prepare(
      'INSERT INTO rooms (id, latest) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET latest = excluded.latest',
    );
    // A room's row is written at its first JOIN (addRoom; or with its first
    // message, if that write failed) and brought up to date by prune
    // (pruneRoom): its messages' own highest number is the latest, and the row
    // keeps it once they are all gone. One b-tree fewer per commit.
    this.addRoomRow = db.prepare('INSERT INTO rooms (id, latest) VALUES (?, ?) ON CONFLICT (id) DO NOTHING');
    this.getLatest = db.prepare('SELECT latest FROM rooms WHERE id = ?');
    this.maxSeq = db.prepare('SELECT max(seq) AS seq FROM messages WHERE room = ?');
    this.page = db.prepare('SELECT seq, ts, nick, body FROM messages WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?');
    this.first = db.prepare('SELECT min(seq) AS seq FROM messages WHERE room = ?');
    this.owner = db.prepare('SELECT key FROM nicks WHERE nick = ?');
    this.claim = db.prepare('INSERT INTO nicks (nick, key, since) VALUES (?, ?, ?) ON CONFLICT (nick) DO NOTHING');
    this.release = db.prepare('DELETE FROM nicks WHERE nick = ?');
    this.trimRoom = db.prepare('DELETE FROM messages WHERE room = ? AND seq <= ?');
    // Receive times rise with sequence numbers, so a room's expired messages are
    // a prefix: walking the key from the first one the count keeps finds the
    // first one kept at the cost of the ones to delete, with no index on time
    // to keep up per insert.
    this.firstKept = db.prepare('SELECT seq FROM messages WHERE room = ? AND seq > ? AND ts >= ? ORDER BY seq LIMIT 1');
    this.roomsFrom = db.prepare('SELECT id, latest FROM rooms WHERE id > ? ORDER BY id LIMIT ?');
    const size = storedSizeSql(this.pageSize);
    this.cutSize = db.prepare(
      `SELECT count(*) AS n, coalesce(sum(${size}), 0) AS bytes FROM messages WHERE room = ? AND seq <= ?`,
    );
    this.oldestSizes = db.prepare(`SELECT seq, ${size} AS bytes FROM messages WHERE room = ? ORDER BY seq`);
    this.addBytes = db.prepare('UPDATE rooms SET bytes = bytes + ? WHERE id = ?');
    this.roomSizes = db.prepare('SELECT id, latest, bytes FROM rooms WHERE bytes != 0');
    this.largest = db.prepare('SELECT id, latest, bytes FROM rooms WHERE bytes > 0 ORDER BY bytes DESC LIMIT ?');
    this.countedTotal = db.prepare('SELECT total(bytes) AS bytes FROM rooms WHERE bytes > 0');
    this.roomRow = db.prepare('SELECT id, latest, bytes FROM rooms WHERE id = ?');
    this.countedSizes = db.prepare(`SELECT room AS id, sum(${size}) AS bytes FROM messages GROUP BY room`);
    // One room's cut, its row's latest number and its size, together: the row
    // keeps the number the cut messages carried, and a size written later (a
    // pass takes N / 1,000 s) would be lost to a crash in between, leaving the
    // row counting bytes that are gone, at the top of eviction's ranking for
    // good. The cut comes first, so that a full store has the pages it frees
    // before any row changes.
    this.pruneRoom = db.transaction((id: Uint8Array, rowLatest: number, cutoff: number) => {
      const latest = Math.max(rowLatest, this.maxSeq.get(id)?.seq ?? 0);
      // Both cuts are a prefix of the room's key, so one delete makes them: a
      // seek when there is nothing to cut.
      const byCount = latest - this.retention.messages;
      const kept = this.firstKept.get(id, byCount, cutoff);
      const cut = this.cutUpTo(id, kept === undefined ? latest : kept.seq - 1);
      if (latest > rowLatest) this.setLatest.run(id, latest);
      if (cut.bytes > 0) this.addBytes.run(-cut.bytes, id);
      return cut;
    });
    this.appendAll = db.transaction((batch: readonly PendingMessage[], seqs: SeqSource) => {
      const results: AppendResult[] = [];
      for (let i = 0; i < batch.length; i++) {
        const m = batch[i] as PendingMessage;
        const seq = seqs.next(i);
        // One index lookup, in the insert: a resend is the rare case.
        if (this.insert.run(m.room, seq, m.ts, m.mid, m.nick, m.body).changes === 0) {
          seqs.release(i);
          const first = this.byMid.get(m.room, m.mid);
          if (first === undefined) throw new StoreError('SQLITE_CONSTRAINT', 'message id conflict without a row');
          results.push({ seq: first.seq, ts: first.ts, duplicate: true });
          continue;
        }
        if (!this.known.has(m.room) && !this.adding.includes(m.room)) {
          this.addRoomRow.run(m.room, seq);
          this.adding.push(m.room);
        }
        results.push({ seq, ts: m.ts, duplicate: false });
      }
      return results;
    });
  }

  /** Deletes the room's messages numbered up to `seq`; returns how many went, and their size. */
  private cutUpTo(id: Uint8Array, seq: number): { n: number; bytes: number } {
    const cut = this.cutSize.get(id, seq) ?? { n: 0, bytes: 0 };
    if (cut.n > 0) this.trimRoom.run(id, seq);
    return cut;
  }

  private addPending(id: Uint8Array, bytes: number): void {
    this.pending.set(id, (this.pending.get(id) ?? 0) + bytes);
  }

  /** Writes the pending changes of sizes to `rooms.bytes`. */
  private writePending(): void {
    if (this.pending.size === 0) return;
    this.withReserve(() =>
      this.db
        .transaction(() => {
          for (const [id, bytes] of this.pending) if (bytes !== 0) this.addBytes.run(bytes, id);
        })
        .immediate(),
    );
    // Only once committed: rolled back, they are written the next time.
    this.pending.clear();
  }

  /**
   * Makes room in a full store: deletes the oldest messages of the rooms that
   * take the most of it, taking each down to a common level, until a
   * sixteenth of the cap (at most 16 MiB) is free. A room under that level
   * loses nothing, so one client filling rooms of its own takes its own history
   * first, and nobody's new messages are refused. Rooms keep their numbers.
   *
   * It stops once that much is cut, so rooms tied at the level lose their
   * turn to the next eviction rather than a message each at once.
   *
   * Its transaction only deletes (and brings up to date the number of a room
   * it empties): the sizes it changes are written in a second one, with the
   * pages the deletes freed. Even a
   * delete can need a page (a divider cell replaced by a longer one splits its
   * parent), and at the cap there is none: eviction runs with `reservePages`
   * more than the cap allows.
   */
  evict(): Eviction {
    const cap = this.maxPages > 0 ? this.maxPages * this.pageSize : Infinity;
    const target = Math.max(1, Math.min(cap / 16, EVICT_MAX_BYTES));
    const { rooms, ranked, level } = this.ranking(target);
    const done: Eviction = { rooms: 0, messages: 0, bytes: 0 };
    this.withReserve(() =>
      this.db
        .transaction(() => {
          const emptied: RoomSize[] = [];
          for (const room of ranked) {
            if (room.bytes <= level || done.bytes >= target) break;
            // Whole messages, oldest first, until the room is down to the level.
            let bytes = 0;
            let last = 0;
            for (const m of this.oldestSizes.iterate(room.id)) {
              bytes += m.bytes;
              last = m.seq;
              if (bytes >= room.bytes - level) break;
            }
            if (last === 0) {
              // Counted with no message left (a count a crash kept from an
              // older version): it ranks at the top for nothing. Zeroed.
              room.bytes = 0;
              continue;
            }
            const latest = this.maxSeq.get(room.id)?.seq ?? 0;
            const cut = this.cutUpTo(room.id, last);
            room.bytes -= cut.bytes;
            // Emptied: the row keeps the number (until a prune it holds 0, or the first message's).
            if (last >= latest && latest > room.latest) emptied.push({ ...room, latest });
            done.rooms++;
            done.messages += cut.n;
            done.bytes += cut.bytes;
          }
          for (const room of emptied) this.setLatest.run(room.id, room.latest);
        })
        .immediate(),
    );
    // Every pending change was taken into `rooms`: what is left to write is how each room's size differs from its row.
    this.pending.clear();
    for (const room of rooms.values())
      if (room.bytes !== room.written) this.pending.set(room.id, room.bytes - room.written);
    // Now, with the pages the deletes freed: the index of sizes ranks the next
    // eviction, and rooms emptied here must not stay at its top. Failing, they
    // wait for the next prune.
    try {
      this.writePending();
    } catch {
      // Kept pending.
    }
    this.evicted += done.messages;
    if (done.messages > 0) this.onEvict(done);
    return done;
  }

  /**
   * The rooms eviction may cut, largest first, and the level it cuts them to.
   * `rooms` also holds every room appended to since the sizes were written,
   * whose rows the eviction brings up to date.
   *
   * Only the largest rooms are read (by the index on `rooms.bytes`), as many
   * as decide the level: a server keeps a row for every room ever joined, and
   * reading them all made an eviction take 0.7-0.95 s at 300,000
   * rooms. When the sizes add up to less than half the pages in use (a crash
   * lost appends, say), every room is counted afresh from its messages (a scan).
   */
  private ranking(target: number): { rooms: Map<string, RoomSize>; ranked: RoomSize[]; level: number } {
    const rooms = new Map<string, RoomSize>();
    const add = (row: { id: Buffer; latest: number; bytes: number }): RoomSize => {
      const room = { id: row.id, latest: row.latest, bytes: row.bytes, written: row.bytes };
      rooms.set(row.id.toString('hex'), room);
      return room;
    };
    let counted = this.countedTotal.get()?.bytes ?? 0;
    for (const [id, bytes] of this.pending) {
      const key = Buffer.from(id).toString('hex');
      let room = rooms.get(key);
      if (room === undefined) {
        const row = this.roomRow.get(id);
        if (row === undefined) continue;
        room = add(row);
      }
      counted -= Math.max(0, room.bytes);
      room.bytes += bytes;
      counted += Math.max(0, room.bytes);
    }
    const pages = (this.db.pragma('page_count', { simple: true }) as number) - this.freePages();
    // Counted right, the sizes are 0.6 to 1.2 times the pages (b-trees' pages are partly filled).
    if (counted < (pages * this.pageSize) / 2) {
      for (const room of rooms.values()) room.bytes = 0;
      for (const row of this.countedSizes.all()) {
        const room = rooms.get(row.id.toString('hex')) ?? add(this.roomRow.get(row.id) ?? { ...row, latest: 0 });
        room.bytes = row.bytes;
      }
      // Rows that say they hold something and do not.
      for (const row of this.roomSizes.all()) if (!rooms.has(row.id.toString('hex'))) add(row).bytes = 0;
      return { rooms, ...rank(rooms, target) };
    }
    for (let limit = 64; ; limit *= 4) {
      const rows = this.largest.all(limit);
      for (const row of rows) if (!rooms.has(row.id.toString('hex'))) add(row);
      const { ranked, level } = rank(rooms, target);
      // A room not read holds at most what the last one read does. Past
      // MAX_RANKED, rooms tied with the last read wait for the next eviction.
      const unread = rows.length < limit ? 0 : (rows[rows.length - 1]?.bytes ?? 0);
      if (level >= unread || limit >= MAX_RANKED) return { rooms, ranked, level };
    }
  }

  /** Runs `work` with the reserve open; writes past it fail as at the cap. */
  private withReserve<T>(work: () => T): T {
    if (this.maxPages === 0) return work();
    this.db.pragma(`max_page_count = ${this.maxPages + this.reservePages}`);
    try {
      return work();
    } finally {
      // SQLite keeps the file's own size if it has grown past the cap.
      this.db.pragma(`max_page_count = ${this.maxPages}`);
    }
  }

  /**
   * Evicts before the cap is met, once the pages in use come within the
   * reserve of it, so that eviction finds free pages and a commit seldom meets
   * the cap; and writes the pending sizes when they are many. Checked every so
   * many bytes appended (a quarter of the reserve), not per commit.
   */
  private makeRoomAhead(appended: number): void {
    this.sinceCheck += appended;
    if (this.sinceCheck < this.checkEvery) return;
    this.sinceCheck = 0;
    try {
      if (this.maxPages > 0) {
        const used = (this.db.pragma('page_count', { simple: true }) as number) - this.freePages();
        if (used > this.maxPages - this.reservePages) this.evict();
      }
      if (this.pending.size > MAX_PENDING) this.writePending();
    } catch {
      // The commit stands; the next one that meets the cap evicts, or is refused.
    }
  }

  private freePages(): number {
    return this.db.pragma('freelist_count', { simple: true }) as number;
  }

  /**
   * Whether a write of `bytes` (as `storedSize` counts them) failed for the
   * cap: SQLite reports it and a full disk with the same code. At the cap the
   * file is as large as allowed and has fewer free pages than the write needs.
   */
  private atCap(bytes: number): boolean {
    if (this.maxPages === 0) return false;
    // Twice the write's pages, for the b-trees' splits, and a few more.
    const needs = Math.ceil((2 * bytes) / this.pageSize) + 16;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    return this.freePages() < needs && pages + needs >= this.maxPages;
  }

  /**
   * After a write of `bytes` failed with `failure`: when it met the cap,
   * evicts and runs it again, as often as eviction frees something; otherwise
   * throws `failure`. `restart` readies the write's inputs for another
   * attempt. A full disk is not the store's to fix: its error goes up
   * (eviction would not shrink the file, and needs the log to grow).
   */
  private afterFull<T>(failure: unknown, bytes: () => number, write: () => T, restart: () => void): T {
    let err = failure;
    for (let evictions = 0; ; evictions++) {
      if (!isFull(err) || evictions === MAX_EVICTIONS || !this.atCap(bytes())) throw err;
      let freed: Eviction;
      try {
        freed = this.evict();
      } catch {
        throw err;
      }
      if (freed.messages === 0) throw err;
      restart();
      try {
        return write();
      } catch (again) {
        err = again;
      }
    }
  }

  lookupRoom(room: Uint8Array): RoomLookup {
    return storeRead('cannot read the room', () => {
      const row = this.getLatest.get(room);
      return { latest: Math.max(row?.latest ?? 0, this.maxSeq.get(room)?.seq ?? 0), stored: row !== undefined };
    });
  }

  /** The room's latest sequence number (0 for a room never written to). */
  latest(room: Uint8Array): number {
    return this.lookupRoom(room).latest;
  }

  addRoom(room: Uint8Array): void {
    this.writeRow(() => this.addRoomRow.run(room, 0), room.length + ENTRY_BYTES, 'cannot record the room');
    // Its first message need not write the row again.
    this.known.add(room);
  }

  /**
   * One row written on its own, outside the turn's batch: at the cap it evicts
   * to make room for `bytes`, as an append does, and tries again.
   */
  private writeRow(write: () => unknown, bytes: number, what: string): void {
    try {
      try {
        write();
      } catch (err) {
        this.afterFull(
          err,
          () => bytes,
          write,
          () => {},
        );
      }
    } catch (err) {
      throw storeError(err, what);
    }
  }

  append(batch: readonly PendingMessage[], seqs: SeqSource): AppendResult[] {
    let results: AppendResult[];
    try {
      // IMMEDIATE: the write lock is taken at BEGIN, where SQLite waits for it
      // (busy_timeout). A deferred transaction that reads before it writes
      // upgrades its lock instead, and an upgrade that meets the checkpoint
      // thread on the log's lock fails at once with SQLITE_BUSY.
      try {
        results = this.appendAll.immediate(batch, seqs);
      } catch (err) {
        results = this.afterFull(
          err,
          () => {
            // Before their numbers are known, as if each took the most bytes a number can.
            let bytes = 0;
            for (const m of batch) bytes += storedSize(m.nick.length, m.body.length, 2 ** 31, m.ts, this.pageSize);
            return bytes;
          },
          () => this.appendAll.immediate(batch, seqs),
          () => {
            this.adding.length = 0;
            seqs.restart();
          },
        );
      }
      // Only once committed: a row rolled back with its transaction is written again.
      for (const room of this.adding) this.known.add(room);
      let appended = 0;
      for (let i = 0; i < batch.length; i++) {
        const r = results[i] as AppendResult;
        if (r.duplicate) continue;
        const m = batch[i] as PendingMessage;
        const size = storedSize(m.nick.length, m.body.length, r.seq, m.ts, this.pageSize);
        this.addPending(m.room, size);
        appended += size;
      }
      this.makeRoomAhead(appended);
    } catch (err) {
      throw storeError(err, 'cannot store messages');
    } finally {
      this.adding.length = 0;
    }
    return results;
  }

  read(room: Uint8Array, after: number, limit: number, maxBytes: number): HistoryPage {
    const messages: StoredMessage[] = [];
    let bytes = 0;
    return storeRead('cannot read the history', () => {
      for (const row of this.page.iterate(room, after, limit)) {
        bytes += row.body.length + row.nick.length + 40;
        if (messages.length > 0 && bytes > maxBytes) break;
        messages.push({ seq: row.seq, ts: row.ts, nick: row.nick, body: row.body });
      }
      const first = this.first.get(room)?.seq ?? null;
      return { messages, oldest: first ?? this.latest(room) + 1 };
    });
  }

  nickOwner(nick: string): Uint8Array | undefined {
    return storeRead('cannot read the nick', () => this.owner.get(nick.toLowerCase())?.key);
  }

  claimNick(nick: string, key: Uint8Array, now = Date.now()): Uint8Array {
    this.writeRow(
      () => this.claim.run(nick.toLowerCase(), key, now),
      nick.length + key.length + ENTRY_BYTES,
      'cannot record the nick',
    );
    return this.nickOwner(nick) ?? key;
  }

  releaseNick(nick: string): boolean {
    try {
      return this.release.run(nick.toLowerCase()).changes > 0;
    } catch (err) {
      throw storeError(err, 'cannot release the nick');
    }
  }

  prune(now: number): number {
    this.pruneAfter = BEFORE_FIRST_ROOM;
    let removed = 0;
    for (;;) {
      const step = this.pruneSome(now, PRUNE_ROOMS_PER_STEP);
      removed += step.removed;
      if (step.done) return removed;
    }
  }

  pruneSome(now: number, maxRooms: number): PruneStep {
    let removed = 0;
    let done = false;
    const cutoff = now - this.retention.maxAgeMs;
    try {
      // The cuts first: at the cap, only they free the pages the sizes' rows may need.
      this.withReserve(() => {
        const rows = this.roomsFrom.all(this.pruneAfter, maxRooms);
        for (const row of rows) {
          removed += this.pruneRoom(row.id, row.latest, cutoff).n;
          this.pruneAfter = row.id;
        }
        done = rows.length < maxRooms;
      });
      if (done) this.pruneAfter = BEFORE_FIRST_ROOM;
      // The appends' sizes, once a pass (and when many are waiting): written
      // per step, they would be a write per active room a second.
      if (done || this.pending.size > MAX_PENDING) this.writePending();
    } catch (err) {
      // A pass that fails ends there: the next starts again at the first room
      // (the server starts one at its next interval), none skipped.
      this.pruneAfter = BEFORE_FIRST_ROOM;
      throw storeError(err, 'cannot prune history');
    }
    return { removed, done };
  }

  check(): string {
    const rows = this.db.pragma('integrity_check') as { integrity_check: string }[];
    return rows.map((r) => r.integrity_check).join('; ');
  }

  close(): void {
    this.threadClosed = this.checkpointer?.close() ?? Promise.resolve();
    try {
      this.writePending();
    } catch {
      // Eviction counts again when the counts fall short.
    }
    try {
      // Best effort, so that little is left in the log (the thread may hold the checkpoint lock).
      if (this.checkpointer !== null) this.db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // The log stays; SQLite replays it at the next open.
    }
    this.db.close();
  }

  /** Settles once the checkpoint thread has closed its connection (the last to close removes the log's files). */
  closed(): Promise<void> {
    return this.threadClosed;
  }
}

/** SQLite's default threshold for its own checkpoints, in pages. */
const SQLITE_AUTOCHECKPOINT = 1000;
/**
 * The writer's threshold while the background thread checkpoints: the log's
 * bound under steady commits (10,000 pages, 40 MiB at SQLite's 4 KiB pages).
 */
const BACKSTOP_PAGES = 10_000;

/** Eviction reads the largest rooms first, and only as many as it needs. */
const ROOMS_BY_SIZE = 'CREATE INDEX IF NOT EXISTS rooms_bytes ON rooms (bytes)';

/** The store's numbering id, written the first time this version opens it. */
function numberingOf(db: Db, random: (length: number) => Uint8Array): Uint8Array {
  const read = db.prepare<[], { value: Buffer }>("SELECT value FROM meta WHERE key = 'numbering'");
  const kept = read.get()?.value;
  if (kept?.length === NUMBERING_LEN) return new Uint8Array(kept);
  // Only when missing (a store from before, or a new one): a read does not
  // wait for a running server's write lock, as `confab admin` on its file may.
  db.prepare(
    "INSERT INTO meta (key, value) VALUES ('numbering', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
  ).run(Buffer.from(random(NUMBERING_LEN)));
  return new Uint8Array((read.get() as { value: Buffer }).value);
}

/** Brings a store made by an earlier version up to this schema. */
function migrate(db: Db, size: string): void {
  const columns = db.pragma('table_info(rooms)') as { name: string }[];
  if (columns.some((c) => c.name === 'bytes')) return;
  db.transaction(() => {
    db.exec('ALTER TABLE rooms ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0');
    db.exec(`UPDATE rooms SET bytes = coalesce((SELECT sum(${size}) FROM messages WHERE messages.room = rooms.id), 0)`);
    db.exec(ROOMS_BY_SIZE);
  }).immediate();
}

/** The rooms holding something, largest first, and the level eviction cuts them to. */
function rank(rooms: Map<string, RoomSize>, target: number): { ranked: RoomSize[]; level: number } {
  const ranked = [...rooms.values()].filter((r) => r.bytes > 0).sort((a, b) => b.bytes - a.bytes);
  return {
    ranked,
    level: waterLevel(
      ranked.map((r) => r.bytes),
      target,
    ),
  };
}

/** A room as eviction sees it: `bytes` its size now, `written` what its row says. */
interface RoomSize {
  id: Buffer;
  latest: number;
  bytes: number;
  written: number;
}

function isFull(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'SQLITE_FULL';
}

/** `read()`, with whatever it throws (an I/O error, a damaged file) as a `StoreError`. */
function storeRead<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    throw storeError(err, what);
  }
}

function storeError(err: unknown, what: string): StoreError {
  if (err instanceof StoreError) return err;
  const code = (err as { code?: unknown }).code;
  const text = err instanceof Error ? err.message : String(err);
  return new StoreError(typeof code === 'string' ? code : 'STORE', `${what}: ${text}`, { cause: err });
}
