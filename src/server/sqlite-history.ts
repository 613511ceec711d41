import Database from 'better-sqlite3';
import type { Database as Db, Statement, Transaction } from 'better-sqlite3';
import { Checkpointer } from './checkpointer.js';
import { StoreError } from './history.js';
import type {
  AppendResult,
  HistoryPage,
  HistoryStore,
  PendingMessage,
  Retention,
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
   * Largest the database may grow, in bytes (0: no cap). A write that meets it,
   * or a full disk, first evicts the oldest messages of the rooms that hold the
   * most (see `evict`), then is made again.
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
`;

/** What one eviction took from a full store. */
export interface Eviction {
  rooms: number;
  messages: number;
  /** Message bytes, as `rooms.bytes` counts them (see ROW_BYTES). */
  bytes: number;
}

/**
 * What a stored message counts for in `rooms.bytes`: its nick and body, plus
 * this much for the room id, message id, number and time (the b-tree's own
 * overhead is not counted).
 */
export const ROW_BYTES = 48;

/** The SQL of a message's size as `rooms.bytes` counts it. */
const SIZE = `length(nick) + length(body) + ${ROW_BYTES}`;

/** Evictions a single write may make before it is refused (each frees a sixteenth of the cap). */
const MAX_EVICTIONS = 8;

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
  private readonly db: Db;
  private readonly retention: Retention;
  private readonly insert: Statement<[Uint8Array, number, number, Uint8Array, Uint8Array, Uint8Array]>;
  private readonly byMid: Statement<[Uint8Array, Uint8Array], { seq: number; ts: number }>;
  private readonly setLatest: Statement<[Uint8Array, number]>;
  private readonly addRoom: Statement<[Uint8Array, number]>;
  private readonly getLatest: Statement<[Uint8Array], { latest: number }>;
  private readonly maxSeq: Statement<[Uint8Array], { seq: number | null }>;
  /** Room ids (by identity: the relay hands a room's messages one id array) whose row is written. */
  private readonly known = new WeakSet<Uint8Array>();
  /** Rooms whose row the transaction under way writes: known once it commits. */
  private readonly adding: Uint8Array[] = [];
  private readonly page: Statement<[Uint8Array, number, number], Row>;
  private readonly first: Statement<[Uint8Array], { seq: number | null }>;
  private readonly owner: Statement<[string], { key: Buffer }>;
  private readonly claim: Statement<[string, Uint8Array, number]>;
  private readonly release: Statement<[string]>;
  private readonly trimRoom: Statement<[Uint8Array, number]>;
  private readonly firstKept: Statement<[Uint8Array, number], { seq: number }>;
  private readonly roomIds: Statement<[], { id: Buffer; latest: number }>;
  private readonly cutSize: Statement<[Uint8Array, number], { n: number; bytes: number }>;
  private readonly oldestSizes: Statement<[Uint8Array], { seq: number; bytes: number }>;
  private readonly grow: Statement<[number, Uint8Array]>;
  private readonly shrink: Statement<[number, Uint8Array]>;
  private readonly largest: Statement<[], { id: Buffer; latest: number; bytes: number }>;
  private readonly recount: Statement<[]>;
  private readonly totalBytes: Statement<[], { bytes: number }>;
  private readonly pruneRoom: Transaction<(id: Uint8Array, rowLatest: number, cutoff: number) => number>;
  private readonly evictOnce: Transaction<(target: number) => Eviction>;
  /**
   * Bytes appended per room since they were last added to `rooms.bytes`. Kept
   * here, not written per commit: that row's page would be one more in the log
   * at every commit. Added at each prune, eviction and close, so a crash loses
   * at most a prune interval's worth, and eviction recounts when its counts
   * free nothing.
   */
  private grown = new Map<Uint8Array, number>();
  private readonly maxBytes: number;
  /** `max_page_count` when there is a cap, else 0. */
  private maxPages = 0;
  private pageSize = 4096;
  private readonly onEvict: (eviction: Eviction) => void;
  /** Messages evicted since the store opened. */
  evicted = 0;
  private readonly appendAll: Transaction<(batch: readonly PendingMessage[], seqs: SeqSource) => AppendResult[]>;
  /** The background checkpointer, when one runs. */
  readonly checkpointer: Checkpointer | null = null;
  private threadClosed: Promise<void> = Promise.resolve();

  constructor(options: SqliteHistoryOptions) {
    this.retention = options.retention;
    this.maxBytes = options.maxBytes ?? 0;
    this.onEvict = options.onEvict ?? (() => {});
    try {
      this.db = new Database(options.path);
      if (options.path !== ':memory:') this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${options.sync === 'full' ? 'FULL' : 'NORMAL'}`);
      this.db.pragma('busy_timeout = 5000');
      this.db.exec(SCHEMA);
      migrate(this.db);
      if (options.maxBytes !== undefined && options.maxBytes > 0) {
        this.pageSize = this.db.pragma('page_size', { simple: true }) as number;
        this.maxPages = Math.max(1, Math.floor(options.maxBytes / this.pageSize));
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
    // A room's row is written with its first message and brought up to date by
    // prune (pruneRoom): its messages' own highest number is the latest, and the
    // row keeps it once they are all gone. One b-tree fewer per commit.
    this.addRoom = db.prepare('INSERT INTO rooms (id, latest) VALUES (?, ?) ON CONFLICT (id) DO NOTHING');
    this.getLatest = db.prepare('SELECT latest FROM rooms WHERE id = ?');
    this.maxSeq = db.prepare('SELECT max(seq) AS seq FROM messages WHERE room = ?');
    this.page = db.prepare('SELECT seq, ts, nick, body FROM messages WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?');
    this.first = db.prepare('SELECT min(seq) AS seq FROM messages WHERE room = ?');
    this.owner = db.prepare('SELECT key FROM nicks WHERE nick = ?');
    this.claim = db.prepare('INSERT INTO nicks (nick, key, since) VALUES (?, ?, ?) ON CONFLICT (nick) DO NOTHING');
    this.release = db.prepare('DELETE FROM nicks WHERE nick = ?');
    this.trimRoom = db.prepare('DELETE FROM messages WHERE room = ? AND seq <= ?');
    // Receive times rise with sequence numbers, so a room's expired messages are
    // a prefix: walking the key from the oldest finds the first one kept at the
    // cost of the ones to delete, with no index on time to keep up per insert.
    this.firstKept = db.prepare('SELECT seq FROM messages WHERE room = ? AND ts >= ? ORDER BY seq LIMIT 1');
    this.roomIds = db.prepare('SELECT id, latest FROM rooms');
    // One room's cuts and its row's latest number, together: the row keeps the
    // number the cut messages carried, and the cuts free the pages a full
    // store needs before the row may grow.
    this.cutSize = db.prepare(
      `SELECT count(*) AS n, coalesce(sum(${SIZE}), 0) AS bytes FROM messages WHERE room = ? AND seq <= ?`,
    );
    this.oldestSizes = db.prepare(`SELECT seq, ${SIZE} AS bytes FROM messages WHERE room = ? ORDER BY seq`);
    this.grow = db.prepare('UPDATE rooms SET bytes = bytes + ? WHERE id = ?');
    this.shrink = db.prepare('UPDATE rooms SET bytes = max(0, bytes - ?) WHERE id = ?');
    this.largest = db.prepare('SELECT id, latest, bytes FROM rooms WHERE bytes > 0 ORDER BY bytes DESC');
    this.recount = db.prepare(RECOUNT);
    this.totalBytes = db.prepare('SELECT coalesce(sum(bytes), 0) AS bytes FROM rooms');
    this.pruneRoom = db.transaction((id: Uint8Array, rowLatest: number, cutoff: number): number => {
      const latest = Math.max(rowLatest, this.maxSeq.get(id)?.seq ?? 0);
      // Both cuts are a prefix of the room's key, so one delete makes them: a
      // seek when there is nothing to cut.
      const kept = this.firstKept.get(id, cutoff);
      const cut = Math.max(latest - this.retention.messages, kept === undefined ? latest : kept.seq - 1);
      const removed = this.cutUpTo(id, cut);
      if (latest > rowLatest) this.setLatest.run(id, latest);
      return removed;
    });
    this.evictOnce = db.transaction((target: number): Eviction => {
      this.addGrown();
      const rows = this.largest.all();
      const level = waterLevel(
        rows.map((r) => r.bytes),
        target,
      );
      const done: Eviction = { rooms: 0, messages: 0, bytes: 0 };
      for (const row of rows) {
        if (row.bytes <= level) break;
        // Whole messages, oldest first, until the room is down to the level.
        let bytes = 0;
        let last = 0;
        for (const m of this.oldestSizes.iterate(row.id)) {
          bytes += m.bytes;
          last = m.seq;
          if (bytes >= row.bytes - level) break;
        }
        if (last === 0) {
          // A count left over from a crash: the room holds nothing.
          this.shrink.run(row.bytes, row.id);
          continue;
        }
        const latest = Math.max(row.latest, this.maxSeq.get(row.id)?.seq ?? 0);
        if (latest > row.latest) this.setLatest.run(row.id, latest);
        const n = this.cutUpTo(row.id, last);
        done.rooms++;
        done.messages += n;
        done.bytes += bytes;
      }
      return done;
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
          this.addRoom.run(m.room, seq);
          this.adding.push(m.room);
        }
        results.push({ seq, ts: m.ts, duplicate: false });
      }
      return results;
    });
  }

  /** Deletes the room's messages numbered up to `seq` and takes their size off its count; returns how many went. */
  private cutUpTo(id: Uint8Array, seq: number): number {
    const cut = this.cutSize.get(id, seq);
    if (cut === undefined || cut.n === 0) return 0;
    this.trimRoom.run(id, seq);
    this.shrink.run(cut.bytes, id);
    return cut.n;
  }

  /** Adds the sizes appended since the last time to `rooms.bytes` (inside a transaction of the caller's). */
  private addGrown(): void {
    for (const [id, bytes] of this.grown) this.grow.run(bytes, id);
    this.grown.clear();
  }

  /**
   * Makes room in a full store: deletes the oldest messages of the rooms that
   * hold the most bytes, taking each down to a common level, until about a
   * sixteenth of the cap is free. A room under that level loses nothing, so
   * one client filling rooms of its own takes its own history first, and
   * nobody's new messages are refused. Rooms keep their numbers.
   */
  evict(): Eviction {
    const target = Math.max(1, this.maxBytes > 0 ? this.maxBytes / 16 : this.storedBytes() / 16);
    let done = this.evictOnce.immediate(target);
    if (done.messages === 0) {
      // The counts may have lost a crash's worth of appends: count again, once.
      this.db.transaction(() => this.recount.run()).immediate();
      this.grown.clear();
      done = this.evictOnce.immediate(target);
    }
    this.evicted += done.messages;
    if (done.messages > 0) this.onEvict(done);
    return done;
  }

  /** Whether a write of `bytes` failed for the cap: SQLite reports it and a full disk with the same code. */
  private atCap(bytes: number): boolean {
    if (this.maxPages === 0) return false;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    // Slack for the b-trees' splits and the pages of overflow chains.
    return pages + Math.ceil(bytes / (this.pageSize / 2)) + 8 >= this.maxPages;
  }

  private storedBytes(): number {
    this.db.transaction(() => this.addGrown()).immediate();
    return this.totalBytes.get()?.bytes ?? 0;
  }

  /**
   * Runs a write of about `bytes`; when it met the cap, evicts and runs it
   * again, as often as eviction frees something. `restart` readies the write's
   * inputs for another attempt. A full disk is not the store's to fix: its
   * error goes up (eviction would not shrink the file, and needs the log to grow).
   */
  private withRoom<T>(bytes: number, write: () => T, restart: () => void): T {
    for (let evictions = 0; ; evictions++) {
      try {
        return write();
      } catch (err) {
        if (!isFull(err) || !this.atCap(bytes) || evictions === MAX_EVICTIONS) throw err;
        let freed: Eviction;
        try {
          freed = this.evict();
        } catch {
          throw err;
        }
        if (freed.messages === 0) throw err;
        restart();
      }
    }
  }

  latest(room: Uint8Array): number {
    return Math.max(this.getLatest.get(room)?.latest ?? 0, this.maxSeq.get(room)?.seq ?? 0);
  }

  append(batch: readonly PendingMessage[], seqs: SeqSource): AppendResult[] {
    let results: AppendResult[];
    try {
      // IMMEDIATE: the write lock is taken at BEGIN, where SQLite waits for it
      // (busy_timeout). A deferred transaction that reads before it writes
      // upgrades its lock instead, and an upgrade that meets the checkpoint
      // thread on the log's lock fails at once with SQLITE_BUSY.
      let bytes = 0;
      for (const m of batch) bytes += m.nick.length + m.body.length + ROW_BYTES;
      results = this.withRoom(
        bytes,
        () => this.appendAll.immediate(batch, seqs),
        () => {
          this.adding.length = 0;
          seqs.restart();
        },
      );
      // Only once committed: a row rolled back with its transaction is written again.
      for (const room of this.adding) this.known.add(room);
      for (let i = 0; i < batch.length; i++) {
        if ((results[i] as AppendResult).duplicate) continue;
        const m = batch[i] as PendingMessage;
        this.grown.set(m.room, (this.grown.get(m.room) ?? 0) + m.nick.length + m.body.length + ROW_BYTES);
      }
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
    for (const row of this.page.iterate(room, after, limit)) {
      bytes += row.body.length + row.nick.length + 40;
      if (messages.length > 0 && bytes > maxBytes) break;
      messages.push({ seq: row.seq, ts: row.ts, nick: row.nick, body: row.body });
    }
    const first = this.first.get(room)?.seq ?? null;
    return { messages, oldest: first ?? this.latest(room) + 1 };
  }

  nickOwner(nick: string): Uint8Array | undefined {
    return this.owner.get(nick.toLowerCase())?.key;
  }

  claimNick(nick: string, key: Uint8Array, now = Date.now()): Uint8Array {
    try {
      this.withRoom(
        nick.length + key.length + ROW_BYTES,
        () => this.claim.run(nick.toLowerCase(), key, now),
        () => {},
      );
    } catch (err) {
      throw storeError(err, 'cannot record the nick');
    }
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
    let removed = 0;
    const cutoff = now - this.retention.maxAgeMs;
    try {
      this.db.transaction(() => this.addGrown()).immediate();
      for (const row of this.roomIds.all()) removed += this.pruneRoom(row.id, row.latest, cutoff);
    } catch (err) {
      throw storeError(err, 'cannot prune history');
    }
    return removed;
  }

  check(): string {
    const rows = this.db.pragma('integrity_check') as { integrity_check: string }[];
    return rows.map((r) => r.integrity_check).join('; ');
  }

  close(): void {
    this.threadClosed = this.checkpointer?.close() ?? Promise.resolve();
    try {
      this.db.transaction(() => this.addGrown()).immediate();
    } catch {
      // Eviction recounts when the counts fall short.
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

/** Every room's `bytes` counted from its messages: after a crash, or for a store made before the column. */
const RECOUNT = `UPDATE rooms SET bytes = coalesce((SELECT sum(${SIZE}) FROM messages WHERE messages.room = rooms.id), 0)`;

/** Brings a store made by an earlier version up to this schema. */
function migrate(db: Db): void {
  const columns = db.pragma('table_info(rooms)') as { name: string }[];
  if (columns.some((c) => c.name === 'bytes')) return;
  db.transaction(() => {
    db.exec('ALTER TABLE rooms ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0');
    db.exec(RECOUNT);
  }).immediate();
}

/**
 * The level to which rooms of these sizes (largest first) are cut so that
 * `target` bytes go: the largest lose the most, and none goes below it.
 */
export function waterLevel(sizes: readonly number[], target: number): number {
  let sum = 0;
  for (let k = 0; k < sizes.length; k++) {
    sum += sizes[k] as number;
    const next = sizes[k + 1] ?? 0;
    if (sum - (k + 1) * next >= target) return Math.max(next, (sum - target) / (k + 1));
  }
  return 0;
}

function isFull(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'SQLITE_FULL';
}

function storeError(err: unknown, what: string): StoreError {
  if (err instanceof StoreError) return err;
  const code = (err as { code?: unknown }).code;
  const text = err instanceof Error ? err.message : String(err);
  return new StoreError(typeof code === 'string' ? code : 'STORE', `${what}: ${text}`, { cause: err });
}
