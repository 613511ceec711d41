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
  /** Largest the database may grow, in bytes (0: no cap). Past it, writes fail as if the disk were full. */
  maxBytes?: number;
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
  latest INTEGER NOT NULL
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
  private readonly trimBefore: Statement<[Uint8Array, number]>;
  private readonly trimAll: Statement<[Uint8Array]>;
  private readonly roomIds: Statement<[], { id: Buffer; latest: number }>;
  private readonly pruneRoom: Transaction<(id: Uint8Array, rowLatest: number, cutoff: number) => number>;
  private readonly appendAll: Transaction<(batch: readonly PendingMessage[], seqs: SeqSource) => AppendResult[]>;
  /** The background checkpointer, when one runs. */
  readonly checkpointer: Checkpointer | null = null;
  private threadClosed: Promise<void> = Promise.resolve();

  constructor(options: SqliteHistoryOptions) {
    this.retention = options.retention;
    try {
      this.db = new Database(options.path);
      if (options.path !== ':memory:') this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${options.sync === 'full' ? 'FULL' : 'NORMAL'}`);
      this.db.pragma('busy_timeout = 5000');
      this.db.exec(SCHEMA);
      if (options.maxBytes !== undefined && options.maxBytes > 0) {
        const pageSize = this.db.pragma('page_size', { simple: true }) as number;
        this.db.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxBytes / pageSize))}`);
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
    this.trimBefore = db.prepare('DELETE FROM messages WHERE room = ? AND seq < ?');
    this.trimAll = db.prepare('DELETE FROM messages WHERE room = ?');
    this.roomIds = db.prepare('SELECT id, latest FROM rooms');
    // One room's cuts and its row's latest number, together: the row keeps the
    // number the cut messages carried, and the cuts free the pages a full
    // store needs before the row may grow.
    this.pruneRoom = db.transaction((id: Uint8Array, rowLatest: number, cutoff: number): number => {
      const latest = Math.max(rowLatest, this.maxSeq.get(id)?.seq ?? 0);
      let removed = 0;
      // Both cuts are a prefix of the room's key: a seek each when there is nothing to cut.
      const keepAfter = latest - this.retention.messages;
      if (keepAfter > 0) removed += this.trimRoom.run(id, keepAfter).changes;
      const kept = this.firstKept.get(id, cutoff);
      removed += (kept === undefined ? this.trimAll.run(id) : this.trimBefore.run(id, kept.seq)).changes;
      if (latest > rowLatest) this.setLatest.run(id, latest);
      return removed;
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
      results = this.appendAll.immediate(batch, seqs);
      // Only once committed: a row rolled back with its transaction is written again.
      for (const room of this.adding) this.known.add(room);
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
      this.claim.run(nick.toLowerCase(), key, now);
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

function storeError(err: unknown, what: string): StoreError {
  if (err instanceof StoreError) return err;
  const code = (err as { code?: unknown }).code;
  const text = err instanceof Error ? err.message : String(err);
  return new StoreError(typeof code === 'string' ? code : 'STORE', `${what}: ${text}`, { cause: err });
}
