import type { Logger } from 'pino';
import {
  CHALLENGE_LEN,
  encodeDeliver,
  encodeFrame,
  encodeHistory,
  ErrorCode,
  FrameType,
  LeaveReason,
  MAX_BODY,
  MAX_FETCH,
  MEMBERS_PER_FRAME,
  NICK_PATTERN,
  NUMBERING_LEN,
  TokenBucket,
  parseClientFrame,
  PROTOCOL_VERSION,
  ProtocolError,
} from '../protocol/index.js';
import type {
  ClientFrame,
  Clock,
  ErrorCodeName,
  FetchFrame,
  JoinFrame,
  LeaveFrame,
  MemberInfo,
  SendFrame,
} from '../protocol/index.js';
import { Batcher, flushEach } from './batcher.js';
import { addressKey, IpLimiter } from './ip-limits.js';
import { socketFd } from './direct-write.js';
import type { DirectWriter } from './direct-write.js';
import { Connection, ConnState } from './connection.js';
import { StoreError } from './history.js';
import { lingerThenDestroy } from './linger.js';
import type { AppendResult, HistoryStore, PendingMessage, SeqSource } from './history.js';
import { printable, roomLabel } from './log.js';
import { ThrottledLog } from './throttled-log.js';
import type { ServerLimits } from './options.js';
import { Room } from './room.js';
import { verifyJoinProof } from './verify.js';
import type { Member } from './room.js';

/** Software name the server announces in WELCOME. */
export const SERVER_AGENT = 'confab-server/0.1.0';

/** Counters for tests, benchmarks and operators. Never message content. */
export interface RelayStats {
  connections: number;
  rooms: number;
  messagesIn: number;
  deliveries: number;
  /** Requests refused with RATE_LIMITED: SENDs and JOINs over their rates, FETCHes with a page in flight, JOINs over the address's new rows. */
  rateLimited: number;
  /** Resent messages recognised by their message id (acknowledged, not stored or relayed again). */
  duplicates: number;
  /** Commits that failed (disk full, read-only): their SENDs were refused with STORE_FAILED. */
  storeFailures: number;
  /** Messages the history store evicted, full, to make room (see SqliteHistory.evict). */
  evicted: number;
  dropped: Partial<Record<ErrorCodeName, number>>;
}

/**
 * The relay logic, apart from sockets and timers: handshake, rooms, nicks,
 * fan-out, and what to do with every frame or error a connection produces.
 * Bodies are handled as opaque bytes and never decoded.
 */
export class Relay {
  readonly rooms = new Map<string, Room>();
  readonly connections = new Set<Connection>();
  readonly batcher: Batcher<Connection>;
  /** Per-address limits: connections (the server's listener admits through it) and new rows of the store. */
  readonly addresses: IpLimiter;
  readonly stats: RelayStats = {
    connections: 0,
    rooms: 0,
    messagesIn: 0,
    deliveries: 0,
    rateLimited: 0,
    duplicates: 0,
    storeFailures: 0,
    evicted: 0,
    dropped: {},
  };
  private readonly limits: ServerLimits;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly overflowed: Connection[] = [];
  private readonly randomBytes: (length: number) => Uint8Array;
  private nextId = 1;
  private readonly store: HistoryStore;
  /** This turn's accepted SENDs, committed together before the turn's writes. */
  private pending: PendingSend[] = [];
  /** Rooms left empty this turn: forgotten after its flush, so a message sent to one before is numbered by it still. */
  private readonly emptied: Room[] = [];
  /** The batch `append` is numbering, for `seqs`. */
  private committing: readonly PendingSend[] = [];
  /** Hands out the commit's sequence numbers from each room's `tentative` counter (made once, not per turn). */
  private readonly seqs: SeqSource = {
    next: (i) => ++(this.committing[i] as PendingSend).member.room.tentative,
    release: (i) => {
      (this.committing[i] as PendingSend).member.room.tentative--;
    },
    restart: () => {
      for (const p of this.committing) p.member.room.tentative = p.member.room.seq;
    },
  };
  private failing = false;
  /** Connections ended this turn, closed after its flush (see `end`). */
  private readonly ending: { conn: Connection; frame: Uint8Array | null; reason: number }[] = [];
  /** The native fan-out's writer, or null when writes go through the streams. */
  private readonly direct: DirectWriter | null;
  /** A JOIN's rows the store could not write (a full disk): logged without flooding. */
  private readonly rowFailures: ThrottledLog;

  constructor(
    limits: ServerLimits,
    clock: Clock,
    log: Logger,
    randomBytes: (length: number) => Uint8Array,
    store: HistoryStore,
    /** The native fan-out's writer; null writes through the streams. */
    direct: DirectWriter | null = null,
  ) {
    this.limits = limits;
    this.clock = clock;
    this.log = log;
    this.randomBytes = randomBytes;
    this.store = store;
    this.direct = direct;
    this.rowFailures = new ThrottledLog(log, () => clock.now());
    this.addresses = new IpLimiter(limits);
    this.batcher = new Batcher<Connection>(
      () => {
        this.dropOverflowed();
        this.finishEnding();
        this.forgetEmptied();
      },
      () => this.commit(),
      this.direct ?? flushEach,
    );
  }

  /** Whether the turn's writes go through the native fan-out. */
  get nativeWrites(): boolean {
    return this.direct !== null;
  }

  /** Whether the native fan-out submits the turn's writes through io_uring (false once a ring has failed). */
  get ioUring(): boolean {
    return this.direct?.ioUring === true;
  }

  /** Registers a new socket's connection; `ip` is its address as the per-address limits count it. */
  open(socket: Connection['socket'], ip = addressKey(socket.remoteAddress ?? '?')): Connection {
    const conn = new Connection(
      this.nextId++,
      socket,
      this.clock.now(),
      this.limits.maxFrame,
      this.limits.sendQueueBytes,
      this.batcher,
      this.noteOverflow,
      this.randomBytes(CHALLENGE_LEN),
      new TokenBucket(this.limits.messageBurst, this.limits.messageIntervalMs, this.clock.now()),
      socketFd(socket),
      ip,
    );
    this.connections.add(conn);
    this.stats.connections = this.connections.size;
    return conn;
  }

  /** Feeds bytes read from a connection's socket. */
  receive(conn: Connection, chunk: Uint8Array): void {
    if (conn.state >= ConnState.ENDING) return;
    const now = this.clock.now();
    conn.lastReadAt = now;
    conn.pingSentAt = 0;
    let frames: Uint8Array[];
    try {
      frames = conn.decoder.push(chunk);
      for (const raw of frames) {
        // Judged by its type byte alone: parsed, a HELLO of another version or
        // a bad body would end the session, and on an open one it must only be
        // refused (PROTOCOL.md §4.1).
        if (raw[0] === FrameType.HELLO && conn.state === ConnState.OPEN) {
          this.reject(conn, 0, 'BAD_FRAME', 'HELLO may only be sent once');
          if (conn.state >= ConnState.ENDING) return;
          continue;
        }
        const answered = conn.answerBytes;
        this.handle(conn, parseClientFrame(raw));
        if (conn.state >= ConnState.ENDING) return;
        // Only a frame that was answered can have passed it (a SEND is answered at the commit).
        if (conn.answerBytes !== answered && conn.answersOverCap()) {
          // Not reading its answers: what is queued goes, with the ERROR behind it, and nothing more is read.
          this.dropBehind(conn);
          return;
        }
      }
      // A bad length prefix after whole frames: those were handled first, in order.
      const bad = conn.decoder.error;
      if (bad !== null) throw bad;
    } catch (err) {
      this.fail(conn, err);
      return;
    }
    // READ_TIMEOUT times one frame, first byte to last: a chunk that finished a
    // frame and began the next started that one now, not when the last began.
    if (!conn.decoder.midFrame) conn.frameStartedAt = 0;
    else if (conn.frameStartedAt === 0 || frames.length > 0) conn.frameStartedAt = now;
  }

  /** The peer closed its side: a frame cut short is an error, anything else a clean leave. */
  peerEnded(conn: Connection): void {
    if (conn.state >= ConnState.ENDING) return;
    try {
      conn.decoder.finish();
    } catch (err) {
      this.fail(conn, err);
      return;
    }
    this.close(conn, LeaveReason.LEFT);
  }

  /** The socket is gone, for whatever reason. Idempotent. */
  closed(conn: Connection): void {
    if (conn.state === ConnState.CLOSED) return;
    this.leaveAll(conn, LeaveReason.DISCONNECTED);
    conn.state = ConnState.CLOSED;
    this.connections.delete(conn);
    this.stats.connections = this.connections.size;
  }

  /**
   * Sends a fatal typed error (when the socket can still take it) and closes,
   * after this turn's flush. The others in its rooms see it leave as disconnected.
   */
  drop(conn: Connection, code: ErrorCodeName, message: string, rid = 0): void {
    if (conn.state >= ConnState.ENDING) return;
    this.stats.dropped[code] = (this.stats.dropped[code] ?? 0) + 1;
    this.log.info({ conn: conn.id, remote: conn.remote, code }, 'dropping connection');
    this.end(
      conn,
      encodeFrame({ type: 'error', rid, code: ErrorCode[code], fatal: true, message }),
      LeaveReason.DISCONNECTED,
    );
  }

  /** Closes cleanly after the peer's own end, after this turn's flush. */
  close(conn: Connection, reason: number): void {
    if (conn.state >= ConnState.ENDING) return;
    this.end(conn, null, reason);
  }

  /**
   * Ends a connection once this turn's flush is written, not now: the SENDs it
   * had accepted this turn are committed, relayed and acknowledged with
   * everyone else's while it is still a member, so their ACKs go out ahead of
   * its ERROR (another member leaving one of its rooms may commit them
   * earlier, as a member still). Nothing more it sends is read.
   */
  private end(conn: Connection, frame: Uint8Array | null, reason: number): void {
    conn.state = ConnState.ENDING;
    // Nothing more is read: what the peer still sends stays in the kernel, not
    // in buffers read only to be dropped.
    conn.socket.pause();
    this.ending.push({ conn, frame, reason });
    this.batcher.touch();
  }

  /** Leaves, says why and closes, for each connection ended this turn (after the flush's writes). */
  private finishEnding(): void {
    if (this.ending.length === 0) return;
    for (const { conn, frame, reason } of this.ending.splice(0)) {
      if (conn.state !== ConnState.ENDING) continue; // its socket closed meanwhile
      this.leaveAll(conn, reason);
      // For SENDQ_EXCEEDED too: nothing more is queued, the ERROR goes behind what
      // is, and a client that was only held up for a moment reads why it was cut.
      if (frame !== null) conn.writeNow(frame);
      else conn.flush();
      conn.state = ConnState.CLOSING;
      conn.socket.end();
      // A peer that never reads its error must not hold the socket open.
      lingerThenDestroy(conn.socket, this.clock, this.limits.closeLingerMs);
    }
  }

  /**
   * Says goodbye to every connection with one frame and ends them, without the
   * n² leave notices that closing them one by one would send.
   */
  shutdown(bye: Uint8Array): void {
    this.batcher.flush();
    for (const conn of this.connections) {
      if (conn.state >= ConnState.CLOSING) continue;
      conn.memberships.length = 0;
      conn.writeNow(bye);
      conn.state = ConnState.CLOSING;
      conn.socket.end();
    }
    this.rooms.clear();
    this.stats.rooms = 0;
  }

  /** Checks every connection's deadlines; called by the server's sweep timer. */
  sweep(): void {
    const now = this.clock.now();
    const l = this.limits;
    for (const conn of this.connections) {
      if (conn.state === ConnState.OPEN) {
        const behind = conn.behind();
        conn.behindSweeps = behind ? conn.behindSweeps + 1 : 0;
        if (!behind) conn.readAgain();
      }
      if (conn.state === ConnState.HANDSHAKE && now - conn.connectedAt >= l.handshakeTimeoutMs) {
        this.drop(conn, 'HANDSHAKE_TIMEOUT', `no HELLO within ${l.handshakeTimeoutMs} ms`);
      } else if (conn.frameStartedAt !== 0 && now - conn.frameStartedAt >= l.frameTimeoutMs) {
        this.drop(conn, 'READ_TIMEOUT', `a frame took longer than ${l.frameTimeoutMs} ms to arrive`);
      } else if (conn.behindSweeps >= 2) {
        // Past the cap at this sweep and the last: falling behind, not a burst it is reading.
        this.dropBehind(conn);
      } else if (conn.state === ConnState.OPEN && now - conn.lastReadAt >= l.deadAfterMs) {
        this.drop(conn, 'HEARTBEAT_TIMEOUT', `nothing heard for ${l.deadAfterMs} ms`);
      } else if (conn.state === ConnState.OPEN && conn.pingSentAt === 0 && now - conn.lastReadAt >= l.heartbeatMs) {
        conn.pingSentAt = now;
        conn.enqueue(encodeFrame({ type: 'ping', token: now >>> 0 }));
      }
    }
  }

  private handle(conn: Connection, frame: ClientFrame): void {
    if (conn.state === ConnState.HANDSHAKE) {
      if (frame.type !== 'hello') {
        this.drop(conn, 'HANDSHAKE_REQUIRED', `expected HELLO first, got ${frame.type.toUpperCase()}`);
        return;
      }
      conn.state = ConnState.OPEN;
      conn.answer(
        encodeFrame({
          type: 'welcome',
          version: PROTOCOL_VERSION,
          agent: SERVER_AGENT,
          maxFrame: this.limits.maxFrame,
          maxBody: Math.min(this.limits.maxBody, MAX_BODY),
          heartbeatMs: this.limits.heartbeatMs,
          challenge: conn.challenge,
          rateBurst: this.limits.messageBurst,
          rateIntervalMs: this.limits.messageIntervalMs,
        }),
      );
      this.log.debug({ conn: conn.id, remote: conn.remote, agent: printable(frame.agent) }, 'hello');
      return;
    }
    switch (frame.type) {
      case 'send':
        this.send(conn, frame);
        return;
      case 'join':
        this.join(conn, frame);
        return;
      case 'leave':
        this.leave(conn, frame);
        return;
      case 'fetch':
        this.fetch(conn, frame);
        return;
      case 'ping':
        if (!this.spend(conn)) return;
        conn.limited = null;
        conn.answer(encodeFrame({ type: 'pong', token: frame.token }));
        return;
      case 'pong':
        this.spend(conn);
        return;
      case 'error':
        if (this.spend(conn)) this.log.debug({ conn: conn.id, code: frame.code }, 'client reported an error');
        return;
    }
  }

  private send(conn: Connection, frame: SendFrame): void {
    const member = findMember(conn, frame.room);
    if (member === undefined) {
      this.reject(conn, frame.rid, 'NOT_IN_ROOM', 'join the room before sending to it');
      return;
    }
    if (frame.body.length > this.limits.maxBody) {
      this.reject(conn, frame.rid, 'BODY_TOO_LARGE', `message body over ${this.limits.maxBody} bytes`);
      return;
    }
    // After one refusal every later SEND is refused too, until the client's
    // PING says it has seen the refusal: so a client that resends after its
    // PING keeps its messages in order (doc/PROTOCOL.md §4).
    if (conn.limited === 'STORE_FAILED') {
      this.reject(conn, frame.rid, 'STORE_FAILED', 'an earlier message could not be stored; PING, then resend');
      return;
    }
    if (conn.limited !== null || !conn.bucket.take(this.clock.now())) {
      conn.limited = 'RATE_LIMITED';
      const l = this.limits;
      this.overRate(
        conn,
        frame.rid,
        ++conn.strikes,
        'messages',
        `at most ${l.messageBurst} at once, then 1 per ${l.messageIntervalMs} ms`,
      );
      return;
    }
    conn.strikes = 0;
    // Stored with the rest of this turn's messages in one transaction before
    // anyone hears of it: no ACK, and no DELIVER, without a commit.
    if (this.pending.length === 0) this.batcher.touch();
    member.room.sending++;
    this.pending.push({
      room: member.room.id,
      ts: this.clock.now(),
      nick: member.nickBytes,
      mid: frame.mid,
      body: frame.body,
      conn,
      member,
      rid: frame.rid,
    });
  }

  /** Commits this turn's messages, then acknowledges and relays them (or refuses them all). */
  private commit(): void {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.commitBatch(batch);
  }

  /**
   * Commits, ahead of the turn's end, the messages this turn has sent to a room
   * someone is leaving: the others hear them before they hear that the sender
   * left, and the sender gets its ACKs before its LEFT. Only that room's: its
   * frames are flushed at once by the leave, while another room's DELIVERs
   * would wait for the turn's end behind a FETCH answer that holds them.
   */
  private commitRoom(room: Room): void {
    const batch = this.pending.filter((p) => p.member.room === room);
    if (batch.length === 0) return;
    this.pending = this.pending.filter((p) => p.member.room !== room);
    this.commitBatch(batch);
  }

  private commitBatch(batch: PendingSend[]): void {
    // Numbers are handed out tentatively and kept only if the commit succeeds.
    for (const p of batch) {
      p.member.room.tentative = p.member.room.seq;
      p.member.room.sending = 0;
    }
    let results: AppendResult[];
    this.committing = batch;
    try {
      results = this.store.append(batch, this.seqs);
    } catch (err) {
      this.refuseBatch(batch, err);
      return;
    } finally {
      this.committing = [];
    }
    if (this.failing) {
      this.failing = false;
      this.log.warn('history store writable again');
    }
    for (const p of batch) p.member.room.seq = p.member.room.tentative;
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i] as PendingSend;
      const r = results[i] as AppendResult;
      const room = p.member.room;
      const ack = encodeFrame({ type: 'ack', rid: p.rid, room: room.id, seq: r.seq, ts: r.ts });
      if (r.duplicate) {
        // Already stored and relayed: only the sender hears of it again.
        this.stats.duplicates++;
        p.conn.answer(ack);
        continue;
      }
      // The sender's ACK takes its message's place in what the sender hears of
      // the room, so every member sees the room's numbers in order.
      room.broadcast(encodeDeliver(room.id, r.seq, r.ts, p.member.nickBytes, p.body), p.conn, ack);
      this.stats.messagesIn++;
      this.stats.deliveries += room.members.length - 1; // the sender is still a member (see removeMember)
    }
  }

  private refuseBatch(batch: readonly PendingSend[], err: unknown): void {
    if (!(err instanceof StoreError)) throw err;
    this.stats.storeFailures++;
    if (!this.failing) {
      this.failing = true;
      this.log.error({ code: err.code, messages: batch.length }, 'history store cannot write; refusing messages');
    }
    for (const p of batch) {
      p.conn.limited = 'STORE_FAILED';
      this.reject(p.conn, p.rid, 'STORE_FAILED', 'the server could not store the message; retry later');
    }
  }

  /** FETCH: a page of the room's stored history, then FETCHED. */
  private fetch(conn: Connection, frame: FetchFrame): void {
    const member = findMember(conn, frame.room);
    if (member === undefined) {
      this.reject(conn, frame.rid, 'NOT_IN_ROOM', 'join the room before fetching its history');
      return;
    }
    // One page at a time: the next is read only once the last is mostly on its
    // way. Otherwise one packet of FETCHes (35 bytes each) would have the server
    // read and queue a 128 KiB page for every one of them before any write.
    if (conn.queuedBytes() > this.limits.fetchBytes / 2) {
      const message = 'the last page of history is still on its way; ask again later';
      this.overRate(conn, frame.rid, ++conn.fetchStrikes, 'FETCHes', message);
      return;
    }
    conn.fetchStrikes = 0;
    const room = member.room;
    const limit = Math.min(frame.limit, MAX_FETCH, this.limits.fetchMessages);
    let page;
    try {
      page = this.store.read(room.id, frame.after, limit, this.limits.fetchBytes);
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      this.log.error({ code: err.code }, 'history store cannot read');
      this.reject(conn, frame.rid, 'STORE_FAILED', 'the server could not read its history; retry later');
      return;
    }
    for (const m of page.messages) conn.answer(encodeHistory(frame.rid, room.id, m.seq, m.ts, m.nick, m.body));
    conn.answer(
      encodeFrame({
        type: 'fetched',
        rid: frame.rid,
        room: room.id,
        oldest: Math.min(page.oldest, room.seq + 1),
        latest: room.seq,
        count: page.messages.length,
      }),
    );
  }

  /**
   * Refuses a request over its rate with RATE_LIMITED; the `floodStrikes`-th
   * refusal in a row (`strikes`, counted by the caller) drops the connection.
   */
  private overRate(conn: Connection, rid: number, strikes: number, what: string, message: string): void {
    this.stats.rateLimited++;
    if (strikes >= this.limits.floodStrikes) {
      this.drop(conn, 'RATE_LIMITED', `${strikes} ${what} in a row over the rate limit`, rid);
    } else {
      this.reject(conn, rid, 'RATE_LIMITED', message);
    }
  }

  private join(conn: Connection, frame: JoinFrame): void {
    // Before the signature check (the costliest step): every JOIN is announced
    // to the whole room, so joining and leaving in a loop would flood it.
    const l = this.limits;
    const now = this.clock.now();
    if (!(conn.joins ??= new TokenBucket(l.joinBurst, l.joinIntervalMs, now)).take(now)) {
      this.stats.rateLimited++;
      // Never fatal by itself, and no strikes: it spends the budget of frames that carry no message.
      if (!this.spend(conn)) return;
      this.reject(
        conn,
        frame.rid,
        'RATE_LIMITED',
        `at most ${l.joinBurst} joins at once, then 1 per ${l.joinIntervalMs} ms`,
      );
      return;
    }
    if (!NICK_PATTERN.test(frame.nick)) {
      this.reject(conn, frame.rid, 'BAD_NICK', 'a nick is 1 to 24 of A-Z a-z 0-9 _ . -');
      return;
    }
    if (!verifyJoinProof(frame, conn.challenge)) {
      this.reject(conn, frame.rid, 'BAD_JOIN_PROOF', 'the join proof does not verify for that key');
      return;
    }
    if (findMember(conn, frame.room) !== undefined) {
      this.reject(conn, frame.rid, 'ALREADY_JOINED', 'this connection is already in that room');
      return;
    }
    if (conn.memberships.length >= this.limits.maxRoomsPerConnection) {
      this.reject(conn, frame.rid, 'TOO_MANY_ROOMS', `at most ${this.limits.maxRoomsPerConnection} rooms`);
      return;
    }
    const key = Buffer.from(frame.room).toString('hex');
    let room = this.rooms.get(key);
    let owner: Uint8Array | undefined;
    let latest: number;
    // A store that keeps rows and has none for the room (a stored message comes with one).
    let newRoom = false;
    try {
      owner = this.store.nickOwner(frame.nick);
      if (room === undefined) {
        const state = this.store.lookupRoom(frame.room);
        latest = state.latest;
        newRoom = this.store.persistent && !state.stored;
      } else {
        latest = room.seq;
      }
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      this.log.error({ code: err.code }, 'history store cannot read');
      this.reject(conn, frame.rid, 'STORE_FAILED', 'the server could not read its store; retry later');
      return;
    }
    if (owner !== undefined && !sameId(owner, frame.key)) {
      this.reject(conn, frame.rid, 'NICK_OWNED', `the nick "${frame.nick}" belongs to another key on this server`);
      return;
    }
    if (room !== undefined && room.memberByNick(frame.nick) !== undefined) {
      this.reject(conn, frame.rid, 'NICK_TAKEN', `the nick "${frame.nick}" is in use in this room`);
      return;
    }
    if (room !== undefined && room.members.length >= this.limits.maxRoomMembers) {
      this.reject(conn, frame.rid, 'ROOM_FULL', `the room has ${this.limits.maxRoomMembers} members`);
      return;
    }
    // What this JOIN adds to the store for good: the nick's claim, and the
    // room's row. Neither retention nor eviction frees them, so an address may
    // add them only so fast. Both are written here, at the JOIN that pays for
    // them, so joining the same room again costs nothing.
    const nickRow = this.store.persistent && owner === undefined ? 1 : 0;
    const roomRow = newRoom ? 1 : 0;
    const rows = nickRow + roomRow;
    if (rows > 0) {
      const wait = this.addresses.rowWait(conn.ip, rows, now);
      if (wait > 0) {
        this.stats.rateLimited++;
        this.reject(
          conn,
          frame.rid,
          'RATE_LIMITED',
          `too many new nicks and rooms from your address; retry in ${Math.ceil(wait / 1000)} s`,
        );
        return;
      }
    }
    // The room's id array: the store knows a room's row by it, and its messages carry it.
    const id = room?.id ?? new Uint8Array(frame.room);
    // Only what was written is spent. A nick not written is claimed at a later
    // join; a room's row, with its first message or at a later join.
    let added = 0;
    if (nickRow > 0 && this.wroteRow(() => this.store.claimNick(frame.nick, frame.key), 'nick ownership')) added++;
    if (roomRow > 0 && this.wroteRow(() => this.store.addRoom(id), 'the room')) added++;
    // Checked above, in the same synchronous call: there are enough.
    if (added > 0) this.addresses.takeRows(conn.ip, added, now);
    if (room === undefined) {
      // A store without rows starts an emptied room from 0 again: a new numbering.
      room = new Room(id, key, this.store.numbering ?? this.randomBytes(NUMBERING_LEN), this.batcher);
      room.seq = latest;
      this.rooms.set(key, room);
      this.stats.rooms = this.rooms.size;
    }
    const others: MemberInfo[] = room.members.map((m) => ({ nick: m.nick, key: m.key }));
    const member: Member = {
      conn,
      room,
      nick: frame.nick,
      // Buffer.from copies small values into Node's shared pool: no allocation each.
      nickBytes: Buffer.from(frame.nick),
      key: Buffer.from(frame.key),
    };
    room.add(member);
    conn.memberships.push(member);
    // Long lists go out in MEMBER_LIST frames first; JOINED carries the last part.
    let bytes = 0;
    // Queued as the room's, not as an answer the joiner can pile up: the JOIN
    // rate bounds them, and its allowance the stream (a packet of JOINs of big
    // rooms is not cut off for the lists' sum).
    const answer = (buf: Uint8Array): void => {
      bytes += buf.length;
      conn.enqueue(buf);
    };
    let from = 0;
    while (others.length - from > MEMBERS_PER_FRAME) {
      const part = others.slice(from, from + MEMBERS_PER_FRAME);
      answer(encodeFrame({ type: 'member-list', rid: frame.rid, room: room.id, members: part }));
      from += MEMBERS_PER_FRAME;
    }
    answer(
      encodeFrame({
        type: 'joined',
        rid: frame.rid,
        room: room.id,
        nick: frame.nick,
        seq: room.seq,
        numbering: room.numbering,
        members: others.slice(from),
      }),
    );
    // A big room's list would pass the send-queue cap by itself (10,000 members
    // are about 570 KB): the joiner is given the time to read it.
    conn.allowJoinAnswer(bytes);
    this.log.debug({ conn: conn.id, room: roomLabel(room.id), members: room.members.length }, 'join');
  }

  private leave(conn: Connection, frame: LeaveFrame): void {
    const member = findMember(conn, frame.room);
    if (member === undefined) {
      this.reject(conn, frame.rid, 'NOT_IN_ROOM', 'not in that room');
      return;
    }
    this.removeMember(member, LeaveReason.LEFT);
    conn.answer(encodeFrame({ type: 'left', rid: frame.rid, room: member.room.id }));
  }

  private leaveAll(conn: Connection, reason: number): void {
    while (conn.memberships.length > 0) this.removeMember(conn.memberships[0] as Member, reason);
  }

  private removeMember(member: Member, reason: number): void {
    const room = member.room;
    if (room.sending > 0) this.commitRoom(room);
    // Before the membership goes: the room's frames so far, which `remove`
    // flushes first, reach the leaver as a member (the others', not its own).
    room.remove(member, reason);
    const list = member.conn.memberships;
    list.splice(list.indexOf(member), 1);
    if (room.members.length === 0) {
      room.flush();
      // Kept until the turn's flush: a message sent to it this turn is numbered
      // by this object, and one who joins it again this turn gets the same one.
      this.emptied.push(room);
      this.batcher.touch();
    }
  }

  /** Forgets the rooms still empty after the turn's commit; their history and sequence number live on in the store. */
  private forgetEmptied(): void {
    if (this.emptied.length === 0) return;
    for (const room of this.emptied) {
      if (room.members.length === 0 && this.rooms.get(room.key) === room) this.rooms.delete(room.key);
    }
    this.emptied.length = 0;
    this.stats.rooms = this.rooms.size;
  }

  /** Makes one of a JOIN's writes; false, logged, if the store can't (the JOIN goes ahead). */
  private wroteRow(write: () => void, what: string): boolean {
    try {
      write();
      return true;
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      // Each JOIN on a full disk: 600 lines a second from one address, on that disk.
      this.rowFailures.warn(what, { code: err.code }, `cannot record ${what}`);
      return false;
    }
  }

  /**
   * A non-fatal error answering one request. Refusals for what the client asked (not for its pace,
   * counted as strikes, nor for the store's failure) spend its `noopBurst`.
   */
  private reject(conn: Connection, rid: number, code: ErrorCodeName, message: string): void {
    if (code !== 'RATE_LIMITED' && code !== 'STORE_FAILED' && !this.spend(conn)) return;
    conn.answer(encodeFrame({ type: 'error', rid, code: ErrorCode[code], fatal: false, message }));
  }

  /**
   * Counts a frame that carries nothing for a room. Past `noopBurst` at once,
   * then one per `noopIntervalMs`, the connection is dropped: PINGs, or
   * requests the server refuses, sent as fast as a socket takes them kept a
   * core busy, and nothing else limited them. Returns false if it was dropped.
   */
  private spend(conn: Connection): boolean {
    const l = this.limits;
    const now = this.clock.now();
    if ((conn.noops ??= new TokenBucket(l.noopBurst, l.noopIntervalMs, now)).take(now)) return true;
    this.stats.rateLimited++;
    this.drop(
      conn,
      'RATE_LIMITED',
      `over ${l.noopBurst} frames that carry no message (PING, PONG, ERROR, refused requests) at once, then 1 per ${l.noopIntervalMs} ms`,
    );
    return false;
  }

  private fail(conn: Connection, err: unknown): void {
    if (err instanceof ProtocolError) {
      this.drop(conn, err.code, err.message);
      return;
    }
    this.log.error({ conn: conn.id, err }, 'internal error handling a frame');
    this.drop(conn, 'INTERNAL', 'internal server error');
  }

  private readonly noteOverflow = (conn: Connection): void => {
    this.overflowed.push(conn);
    this.batcher.addConnection(conn); // makes sure a flush, and so the drop, follows
  };

  /** Drops a connection that is not reading what it is sent. */
  private dropBehind(conn: Connection): void {
    this.drop(conn, 'SENDQ_EXCEEDED', `send queue passed ${this.limits.sendQueueBytes} bytes`);
  }

  /** Drops the connections whose send queue overflowed during the flush just done. */
  private dropOverflowed(): void {
    if (this.overflowed.length === 0) return;
    const list = this.overflowed.splice(0);
    for (const conn of list) {
      this.dropBehind(conn);
    }
  }
}

/** A SEND accepted this turn, waiting for the commit: what the store keeps, and whom to answer. */
interface PendingSend extends PendingMessage {
  conn: Connection;
  member: Member;
  rid: number;
}

function findMember(conn: Connection, room: Uint8Array): Member | undefined {
  for (const m of conn.memberships) if (sameId(m.room.id, room)) return m;
  return undefined;
}

function sameId(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
