/** One message as the store keeps it: the SEND body byte for byte, never decoded. */
export interface StoredMessage {
  seq: number;
  /** Server receive time, ms since the epoch. */
  ts: number;
  /** The sender's nick as UTF-8 bytes. */
  nick: Uint8Array;
  body: Uint8Array;
}

/** Where `append` gets sequence numbers: the relay's per-room counters, tentatively. */
export interface SeqSource {
  next(index: number): number;
  /** The number just given for `index` was not used (a duplicate). */
  release(index: number): void;
  /** The attempt was rolled back and is made again (the store made room): hand out the same numbers from the start. */
  restart(): void;
}

/** A message handed to `append`, before it has a sequence number. */
export interface PendingMessage {
  room: Uint8Array;
  ts: number;
  nick: Uint8Array;
  mid: Uint8Array;
  body: Uint8Array;
}

/** What became of one appended message. */
export interface AppendResult {
  /** Its sequence number: the new one, or the first copy's for a resend. */
  seq: number;
  ts: number;
  /** True when the room already held this message id: nothing was stored or should be relayed. */
  duplicate: boolean;
}

/** A page of a room's history. */
export interface HistoryPage {
  messages: StoredMessage[];
  /** Lowest sequence number still stored; `latest + 1` when nothing is. */
  oldest: number;
}

/** A room as the store knows it. */
export interface RoomLookup {
  /** Its latest sequence number (0 for a room never written to). */
  readonly latest: number;
  /** Whether the store keeps a row for it: it was joined, or held a message, before. */
  readonly stored: boolean;
}

/**
 * Where the relay keeps rooms' recent messages (as ciphertext) and nick
 * ownership. Every method is synchronous: the relay calls it once per
 * event-loop turn with the whole turn's batch, so the cost is one transaction
 * per turn, not per message (and one more for a room someone leaves in the
 * middle of a turn with messages waiting).
 *
 * A write that fails (disk full, read-only) throws `StoreError` and changes
 * nothing; the next call tries again. A read that fails (an I/O error, a
 * damaged file) throws `StoreError` too: the relay refuses that one request
 * with STORE_FAILED and keeps the connection.
 */
export interface HistoryStore {
  /**
   * Whether it keeps what a JOIN adds (a nick's claim, a room's row) after
   * the members leave. The relay then limits how fast one address may add to
   * it (`newRowsPerIp`).
   */
  readonly persistent: boolean;
  /**
   * The id JOINED gives every room's numbering (PROTOCOL.md §4.9), for a
   * store whose rooms count on from their rows for as long as it is kept; null
   * for one that keeps no rows, whose rooms start again at 0 once empty (each
   * gets an id of its own then).
   */
  readonly numbering: Uint8Array | null;
  /** What a JOIN needs to know of a room that is not open, in one lookup. */
  lookupRoom(room: Uint8Array): RoomLookup;
  /**
   * Writes the room's row (latest 0) if there is none, at its first JOIN, so
   * that joining it again finds it known and costs nothing. Throws
   * `StoreError` if it can't write.
   */
  addRoom(room: Uint8Array): void;
  /**
   * Stores a batch of messages in one transaction, in order. `seqs.next(i)`
   * gives the sequence number for `batch[i]`; if it turns out to be a
   * duplicate, the store hands the number back with `seqs.release(i)` before
   * asking for the next one. If the call throws, nothing was stored and the
   * numbers handed out are void.
   */
  append(batch: readonly PendingMessage[], seqs: SeqSource): AppendResult[];
  /** Up to `limit` messages after `after` (and at most about `maxBytes` of them), oldest first. */
  read(room: Uint8Array, after: number, limit: number, maxBytes: number): HistoryPage;
  /** The key that owns `nick` (lower-cased) on this server, if any. */
  nickOwner(nick: string): Uint8Array | undefined;
  /** Gives `nick` to `key` if nobody owns it yet; returns the owner after the call. */
  claimNick(nick: string, key: Uint8Array): Uint8Array;
  /** Frees a nick for the next key that uses it; false if nobody owned it. */
  releaseNick(nick: string): boolean;
  /** Deletes what retention no longer keeps, in every room at once; returns how many messages went. */
  prune(now: number): number;
  /**
   * One step of a prune pass: the next `maxRooms` rooms after the last step's.
   * The server calls it once a sweep until a pass is `done`, so that no single
   * turn of its event loop reads every room the store has ever had. A step
   * that throws ends its pass: the next step starts another, at the first room.
   */
  pruneSome(now: number, maxRooms: number): PruneStep;
  /** `PRAGMA integrity_check`, or the equivalent: 'ok' when the store is sound. */
  check(): string;
  close(): void;
  /** After close(): settles once work the store runs in the background (a thread) has finished too. */
  closed?(): Promise<void>;
}

/** Why the store could not write. Retryable: the relay answers STORE_FAILED. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  /** The underlying code, e.g. SQLITE_FULL. */
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** What one step of a prune pass did. */
export interface PruneStep {
  /** Messages deleted. */
  removed: number;
  /** Whether the pass has been through every room; the next step starts another. */
  done: boolean;
}

/** How long and how much history rooms keep. */
export interface Retention {
  /** Most messages kept per room. */
  messages: number;
  /** Oldest message kept, in ms. */
  maxAgeMs: number;
}
