import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { equalBytes, newIdentity, secureRandom, signJoinProof } from '../crypto/index.js';
import type { Identity, Rng } from '../crypto/index.js';
import {
  encodeFrame,
  FrameDecoder,
  FrameType,
  joinProofMessage,
  DEFAULT_BACKLOG,
  LeaveReason,
  MAX_BACKLOG,
  MAX_FETCH,
  MAX_HEARTBEAT_MS,
  MAX_ROOM_MEMBERS,
  MIN_HEARTBEAT_MS,
  MSG_ID_LEN,
  parseServerFrame,
  PROTOCOL_VERSION,
  ProtocolError,
  systemClock,
  TokenBucket,
} from '../protocol/index.js';
import type {
  Clock,
  DeliverFrame,
  FetchedFrame,
  HistoryFrame,
  MemberInfo,
  ServerFrame,
  WelcomeFrame,
} from '../protocol/index.js';
import { backoffDelay, longestDelay } from './backoff.js';
import type { BackoffOptions } from './backoff.js';
import { Emitter } from './emitter.js';
import { ClientError, ReportOnce } from './errors.js';
import { isValidNick } from './nick.js';

/** Software name the client announces in HELLO. */
export const CLIENT_AGENT = 'confab/0.1.0';

/**
 * Bytes written to the server and not yet taken by it, past which the client
 * stops answering PINGs: a server that pings without reading the PONGs would
 * otherwise grow them in the client's memory without end. What else the client
 * writes is bounded by its own pacing and `maxPending`.
 */
export const SEND_QUEUE_BYTES = 4 * 65_536;

/** Options of `connect`. */
export interface ConnectOptions {
  host: string;
  port: number;
  /** The Ed25519 identity this client joins rooms with; a fresh one if omitted. */
  identity?: Identity;
  /** Reconnect after a lost connection (default true), with jittered exponential backoff. */
  reconnect?: boolean;
  backoff?: BackoffOptions;
  /** Give up on one connection attempt after this long, ms. Default 10,000. */
  connectTimeoutMs?: number;
  /** Most messages waiting for their acknowledgement (OUTBOX_FULL beyond). Default 1,000. */
  maxPending?: number;
  clock?: Clock;
  /** Source of message ids. */
  rng?: Rng;
  /** Uniform [0,1) for backoff jitter. */
  random?: () => number;
}

/** Options of `join`. */
export interface JoinOptions {
  /**
   * The last sequence number of this room already seen (kept from an earlier
   * run): everything after it is fetched. Omit on a first visit.
   */
  cursor?: number;
  /**
   * The numbering `cursor` was read in (`JoinResult.numbering`, kept with it).
   * A JOINED naming another means the server numbers the room from the start
   * again: the cursor is void, and everything the server now keeps is fetched.
   * Without it, only a cursor past the room's latest number tells.
   */
  numbering?: Uint8Array;
  /** On a first visit, how many past messages to fetch (default 100, at most 1,000). */
  backlog?: number;
}

/** Result of a join: who is there and where the room's numbering stands. */
export interface JoinResult {
  room: Uint8Array;
  nick: string;
  /** The other members, in join order, with their identity keys. */
  members: MemberInfo[];
  /** The room's latest sequence number when we joined. */
  seq: number;
  /** The numbering `seq` counts in: keep it with the cursor, for the next `join` (`JoinOptions.numbering`). */
  numbering: Uint8Array;
}

/** A message from another member. `body` is opaque bytes (an envelope). */
export interface MessageEvent {
  room: Uint8Array;
  nick: string;
  seq: number;
  ts: number;
  body: Uint8Array;
  /** Fetched from the server's history (backlog, or caught up after being away), not relayed live. */
  history: boolean;
}

/** Messages that can't be had: pruned by the server's retention, or never kept. */
export interface MissedEvent {
  room: Uint8Array;
  /** How many (0 when unknown: the server's numbering restarted). */
  count: number;
  /** The room's sequence numbers that were skipped, `after` < seq < `before` (none for a count of 0). */
  after: number;
  before: number;
}

/** How far this client has seen a room: persist it and pass it to the next `join`. */
export interface CursorEvent {
  room: Uint8Array;
  seq: number;
}

export interface JoinEvent {
  room: Uint8Array;
  nick: string;
  key: Uint8Array;
}

export interface LeaveEvent {
  room: Uint8Array;
  nick: string;
  reason: 'left' | 'disconnected';
}

export interface DisconnectEvent {
  /** Why, when known (a fatal error from the server, or a local one). */
  error: ClientError | undefined;
  /** Whether the client will try again by itself. */
  willReconnect: boolean;
  /**
   * How many retries in a row came before this one: since the last connection
   * that lasted the backoff's longest delay (0 on a first drop).
   */
  attempt: number;
}

export interface ReconnectEvent {
  /** One result per room, rejoined with the same nick. */
  rooms: JoinResult[];
}

/** Every event a client emits. */
export interface ClientEvents extends Record<string, unknown> {
  message: MessageEvent;
  /**
   * Our JOIN of a room, or its rejoin after a reconnect, was answered: the
   * members then. Emitted as the answer is read, before any frame after it,
   * so that `join` and `leave` events that follow apply to this list (the
   * promise of `join()` settles later, and `reconnect` after every room).
   */
  joined: JoinResult;
  join: JoinEvent;
  leave: LeaveEvent;
  error: ClientError;
  disconnect: DisconnectEvent;
  reconnect: ReconnectEvent;
  missed: MissedEvent;
  cursor: CursorEvent;
}

interface PendingSend {
  rid: number;
  frame: Uint8Array;
  roomKey: string;
  /** Written on the current connection (and not refused since). */
  written: boolean;
  /** Written on the current connection, refused since or not: the server answers it before a later LEFT. */
  answerDue: boolean;
  /** Its room was left: it only waits for its answer (ACK or the LEFT), and is never written again. */
  leaving?: boolean;
  /** When it was last written, for the answer deadline. */
  writtenAt: number;
  resolve: (ack: { seq: number; ts: number }) => void;
  reject: (err: ClientError) => void;
}

interface PendingRequest {
  resolve: (frame: ServerFrame) => void;
  reject: (err: ClientError) => void;
  /** When it was written, for the answer deadline. */
  since: number;
  /** Members from MEMBER_LIST frames that precede this request's JOINED. */
  members?: MemberInfo[];
}

interface RoomState {
  id: Uint8Array;
  nick: string;
  /** True once JOINED arrived on the current connection. */
  joined: boolean;
  /** The rid of the JOIN under way. */
  joinRid: number;
  /** Last sequence number seen (or skipped knowingly); null before the first JOINED. */
  cursor: number | null;
  /** The numbering `cursor` counts in: the last JOINED's, or the caller's; null if unknown. */
  numbering: Uint8Array | null;
  backlog: number;
  /** The FETCH under way (0: one is waiting to be retried), if any. */
  fetchRid: number | null;
  /** When the FETCH under way was written, for the answer deadline. */
  fetchSince: number;
  /** The FETCH under way's `after`, and the HISTORY frames its answer has brought so far. */
  fetchAfter: number;
  fetchCount: number;
  /** FETCHes refused in a row, for the retry delay. */
  fetchFailures: number;
  /** Live messages that arrived ahead of the cursor, waiting for the gap before them to be fetched. */
  held: DeliverFrame[];
  /** Their bodies' bytes, against MAX_HELD_BYTES. */
  heldBytes: number;
  /** Our own messages' sequence numbers past the cursor (we get no DELIVER for them). */
  own: Set<number>;
  /** Told once nothing more is being fetched (see `caughtUp`). */
  catchUp: (() => void)[];
}

/**
 * Heartbeats an answer may be owed while the server answers nothing (see `answers`).
 * Longer than an honest server with default limits takes to read what we
 * wrote and answer it once a stalled uplink moves again: it drops us itself
 * after 3 heartbeats of read silence, then gives a frame that has started
 * arriving 30 s more (`frameTimeoutMs`). An uplink that passes a few bytes a
 * minute can take longer; that one is treated as broken.
 */
const ANSWER_HEARTBEATS = 6;

/** `fetchRid` while a refused FETCH waits to be asked again (request ids start at 1). */
const WAITING_TO_FETCH = 0;

/** A rejoin refused with one of these would be refused again: give the room up. */
const JOIN_FINAL_CODES = new Set<string>(['NICK_OWNED', 'BAD_NICK', 'BAD_JOIN_PROOF']);

/** Frame types that answer a request; a partial one arriving is progress (see `answers`). */
const ANSWER_TYPES = new Set<number>([
  FrameType.ACK,
  FrameType.ERROR,
  FrameType.JOINED,
  FrameType.LEFT,
  FrameType.MEMBER_LIST,
  FrameType.HISTORY,
  FrameType.FETCHED,
  FrameType.PONG,
]);

/**
 * Bytes of live messages held while catching up: 10,000 of 64 KB each pinned
 * 700 MB for a server that delivered them and never answered the FETCH. Past
 * it, as past MAX_HELD, they are dropped and fetched later.
 */
const MAX_HELD_BYTES = 16 * 1024 * 1024;

/** Live messages held while catching up; past it they are dropped and fetched later. */
const MAX_HELD = 10_000;

// Errors after which the same request would only fail again: don't reconnect.
const FINAL_CODES = new Set<string>([
  'UNSUPPORTED_VERSION',
  'BAD_FRAME',
  'FRAME_TOO_LARGE',
  'UNKNOWN_FRAME_TYPE',
  'HANDSHAKE_REQUIRED',
  'PROTOCOL',
]);

/**
 * A connection to a confab server that survives drops: it reconnects with
 * backoff, rejoins its rooms and resends what was not acknowledged. Create one
 * with `connect`.
 */
export class ConfabClient extends Emitter<ClientEvents> {
  private readonly opts: Required<Omit<ConnectOptions, 'backoff' | 'identity'>> & { backoff: BackoffOptions };
  /** The identity this client proves at every join. */
  readonly identity: Identity;
  private socket: Socket | null = null;
  private welcome: WelcomeFrame | null = null;
  /** The last server's `maxBody`, kept while disconnected: what is sent meanwhile meets it on the next connection. */
  private lastMaxBody: number | undefined;
  private readonly rooms = new Map<string, RoomState>();
  private readonly sends = new Map<number, PendingSend>();
  private readonly requests = new Map<number, PendingRequest>();
  private nextRid = 1;
  private attempt = 0;
  /** When the current connection's WELCOME came: the retry count starts over once a connection has lasted. */
  private welcomedAt: number | null = null;
  private closed = false;
  /** Set when the connection is gone for good: sends fail at once instead of waiting. */
  private dead: ClientError | null = null;
  private lastHeard = 0;
  /**
   * When something other than a PING last came (a frame, or part of one): an
   * answer still arriving on a slow link is progress, a server that only pings
   * while a request waits is not.
   */
  private lastProgress = 0;
  private cancelHeartbeat: (() => void) | null = null;
  private cancelRetry: (() => void) | null = null;
  private corked = false;
  private idleWaiters: (() => void)[] = [];
  /** Sends not yet written on this connection, in order. */
  private unsent: PendingSend[] = [];
  /** Our copy of the server's rate limit, so we pace ourselves instead of being refused. */
  private bucket: TokenBucket | null = null;
  private cancelPump: (() => void) | null = null;
  /** Token of the PING that ends a rate-limit resync, while one is under way. */
  private resync: number | null = null;
  /** When that PING was written (null until it is), for the answer deadline. */
  private resyncSince: number | null = null;
  /** STORE_FAILED refusals in a row, for the retry backoff. */
  private storeFailures = 0;
  /** A member announced under an impossible nick; live messages numbered past a FETCHED's `latest`. */
  private readonly once = new ReportOnce((err) => this.emit('error', err));

  /** @internal use `connect` */
  constructor(options: ConnectOptions) {
    super();
    this.opts = {
      reconnect: true,
      backoff: {},
      connectTimeoutMs: 10_000,
      maxPending: 1000,
      clock: systemClock,
      rng: secureRandom,
      random: Math.random,
      ...options,
    };
    this.identity = options.identity ?? newIdentity(this.opts.rng);
  }

  /** True while a connection is up and past its handshake. */
  get connected(): boolean {
    return this.welcome !== null;
  }

  /** True once the client has stopped for good: closed, or no longer reconnecting (a `disconnect` said so). */
  get gone(): boolean {
    return this.dead !== null;
  }

  /** Messages sent and not yet acknowledged. */
  get pending(): number {
    return this.sends.size;
  }

  /** The server's announced limits, once connected. */
  get server(): WelcomeFrame | null {
    return this.welcome;
  }

  /** BODY_TOO_LARGE if the server, as it last said (kept while disconnected), takes no body of `bytes`. */
  tooLarge(bytes: number): ClientError | undefined {
    const max = this.lastMaxBody;
    return max !== undefined && bytes > max
      ? new ClientError('BODY_TOO_LARGE', `message over ${max} bytes`)
      : undefined;
  }

  /**
   * Joins a room under `nick` and catches up on its history: the backlog on a
   * first visit, or everything after `options.cursor`. Rejects with the
   * server's error (NICK_TAKEN, NICK_OWNED, BAD_NICK, ...), or NOT_IN_ROOM if
   * the room is left before the server answers.
   */
  async join(room: Uint8Array, nick: string, options: JoinOptions = {}): Promise<JoinResult> {
    const key = roomKey(room);
    if (this.rooms.has(key)) throw new ClientError('ALREADY_JOINED', 'already in that room');
    const backlog = options.backlog ?? DEFAULT_BACKLOG;
    if (!Number.isInteger(backlog) || backlog < 0 || backlog > MAX_BACKLOG) {
      throw new ClientError('BAD_ARGUMENT', `backlog must be 0 to ${MAX_BACKLOG}, got ${backlog}`);
    }
    const state: RoomState = {
      id: new Uint8Array(room),
      nick,
      joined: false,
      joinRid: 0,
      cursor: options.cursor ?? null,
      numbering: options.numbering ?? null,
      backlog,
      fetchRid: null,
      fetchSince: 0,
      fetchAfter: 0,
      fetchCount: 0,
      fetchFailures: 0,
      held: [],
      heldBytes: 0,
      own: new Set(),
      catchUp: [],
    };
    this.rooms.set(key, state);
    try {
      const result = await this.requestJoin(state);
      // Left (and maybe joined again) before the answer: the leave undid it.
      if (!this.holds(state)) throw new ClientError('NOT_IN_ROOM', 'left the room before the join was answered');
      return result;
    } catch (err) {
      // Messages sent to it while it was joining fail with it, or they would wait forever.
      this.abandon(state, err instanceof ClientError ? err : new ClientError('DISCONNECTED', 'the join failed'));
      throw err;
    }
  }

  /**
   * Leaves a room. Its messages already written are answered first (the
   * server answers a connection's frames in order, ACKs before LEFT); the
   * rest fail with DISCONNECTED.
   */
  async leave(room: Uint8Array): Promise<void> {
    const key = roomKey(room);
    const state = this.rooms.get(key);
    if (state === undefined) return;
    const held = state.joined || this.requests.has(state.joinRid);
    this.forget(state);
    const left = new ClientError('DISCONNECTED', 'left the room before the message was acknowledged');
    this.failSends(key, left, (s) => !s.answerDue);
    // The rest only wait for their answer (ACK, or the LEFT): never written
    // again, nor put back in line by a resync, into a join of the room made
    // meanwhile (whose sends are its own).
    for (const s of this.sends.values()) if (s.roomKey === key) s.leaving = true;
    this.unsent = this.unsent.filter((s) => s.leaving !== true);
    // A JOIN still on its way (a rejoin being retried) that the server takes
    // would leave it holding the room, under the old nick, for good. The server
    // answers a connection's frames in order: a LEAVE written now follows that
    // JOIN (and is refused with NOT_IN_ROOM if the JOIN was), and goes out
    // before anything the caller sends next, a join of the room included.
    if (this.connected && held) {
      const rid = this.rid();
      await this.request(rid, encodeFrame({ type: 'leave', rid, room: state.id })).catch(() => undefined);
    }
    this.failSends(key, left, (s) => s.leaving === true);
    this.pump(); // its messages in flight no longer hold back other rooms'
  }

  /**
   * Sends an opaque body to every other member; resolves with the server's
   * sequence number once acknowledged. Survives reconnects: it is resent on the
   * new connection until acknowledged or the client is closed.
   */
  send(room: Uint8Array, body: Uint8Array, mid?: Uint8Array): Promise<{ seq: number; ts: number }> {
    const key = roomKey(room);
    const state = this.rooms.get(key);
    const refused = this.refusal(room) ?? this.tooLarge(body.length);
    if (refused !== undefined || state === undefined) {
      return Promise.reject(refused ?? new ClientError('NOT_IN_ROOM', 'join the room first'));
    }
    if (mid !== undefined && mid.length !== MSG_ID_LEN) {
      return Promise.reject(new ClientError('BAD_ARGUMENT', `a message id is ${MSG_ID_LEN} bytes`));
    }
    const rid = this.rid();
    const frame = encodeFrame({ type: 'send', rid, room: state.id, mid: mid ?? this.opts.rng(MSG_ID_LEN), body });
    return new Promise((resolve, reject) => {
      const pending: PendingSend = {
        rid,
        frame,
        roomKey: key,
        written: false,
        answerDue: false,
        writtenAt: 0,
        resolve,
        reject,
      };
      this.sends.set(rid, pending);
      this.unsent.push(pending);
      this.pump();
    });
  }

  /**
   * The error a `send` to `room` would fail with at once, whatever its body
   * (closed, not in the room, too many waiting), or undefined: so a caller can
   * find out before it spends anything on the message.
   */
  refusal(room: Uint8Array): ClientError | undefined {
    if (this.dead !== null) return this.dead;
    if (!this.rooms.has(roomKey(room))) return new ClientError('NOT_IN_ROOM', 'join the room first');
    if (this.sends.size >= this.opts.maxPending) {
      return new ClientError('OUTBOX_FULL', `${this.sends.size} messages are waiting for acknowledgement`);
    }
    return undefined;
  }

  /**
   * True while this client is in `room`: joined, or joining again after a
   * drop. False once it left, or gave the room up because the server refused
   * it back (NICK_OWNED, BAD_NICK, BAD_JOIN_PROOF: an `error` event says which).
   */
  isMember(room: Uint8Array): boolean {
    return this.stateOf(room) !== undefined;
  }

  /**
   * Resolves once the room has caught up: what was fetched after its join (the
   * backlog, or what was said while we were away) has all been reported as
   * `message` events. At once when joined and nothing is being fetched. A
   * connection lost meanwhile is waited out: the catch-up goes on after the
   * rejoin. Also resolves when the room is left or given up, when the client
   * stops reconnecting or is closed, and when a FETCH is refused (an `error`
   * event; it is asked again after a while, and what it brings is reported then).
   */
  caughtUp(room: Uint8Array): Promise<void> {
    const state = this.rooms.get(roomKey(room));
    if (state === undefined || this.dead !== null || (state.joined && state.fetchRid === null))
      return Promise.resolve();
    return new Promise((resolve) => state.catchUp.push(resolve));
  }

  /**
   * Tells whoever waits for the room's catch-up (see `caughtUp`) that it is
   * over: if the room is joined with nothing being fetched, or `over` anyway
   * (refused, left, or no more connections).
   */
  private caughtUpNow(state: RoomState, over = false): void {
    if (!over && !(state.joined && state.fetchRid === null)) return;
    for (const tell of state.catchUp.splice(0)) tell();
  }

  /** Resolves once no message is waiting for its acknowledgement. */
  settled(): Promise<void> {
    if (this.sends.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Leaves every room and closes. Pending sends fail with CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    const socket = this.socket;
    if (this.connected && socket !== null) {
      for (const state of this.rooms.values()) {
        if (state.joined) this.write(encodeFrame({ type: 'leave', rid: this.rid(), room: state.id }));
      }
    }
    this.closed = true;
    this.dead = new ClientError('CLOSED', 'client closed');
    this.cancelRetry?.();
    this.cancelPump?.();
    this.stopHeartbeat();
    this.failAll(new ClientError('CLOSED', 'client closed'));
    for (const state of this.rooms.values()) this.forget(state);
    if (socket !== null && !socket.destroyed) {
      this.uncork();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => socket.destroy(), 1000);
        socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.end();
      });
    }
    this.socket = null;
    this.welcome = null;
  }

  /** Opens the first connection; rejects if it cannot be made. */
  async open(): Promise<void> {
    await this.dial();
  }

  /** A room's state, found without making a key: this runs for every frame received. */
  private stateOf(room: Uint8Array): RoomState | undefined {
    for (const state of this.rooms.values()) if (equalBytes(state.id, room)) return state;
    return undefined;
  }

  private rid(): number {
    const rid = this.nextRid;
    this.nextRid = this.nextRid >= 0xffff_fffe ? 1 : this.nextRid + 1;
    return rid;
  }

  private requestJoin(state: RoomState): Promise<JoinResult> {
    const rid = this.rid();
    const challenge = this.welcome?.challenge;
    if (challenge === undefined) return Promise.reject(new ClientError('DISCONNECTED', 'not connected'));
    const proof = signJoinProof(this.identity, joinProofMessage(challenge, state.id, state.nick));
    state.joinRid = rid;
    const frame = encodeFrame({
      type: 'join',
      rid,
      room: state.id,
      nick: state.nick,
      key: this.identity.publicKey,
      proof,
    });
    return this.request(rid, frame).then((reply) => {
      if (reply.type !== 'joined') throw new ClientError('PROTOCOL', `expected JOINED, got ${reply.type}`);
      this.pump();
      return { room: state.id, nick: reply.nick, members: reply.members, seq: reply.seq, numbering: reply.numbering };
    });
  }

  private request(rid: number, frame: Uint8Array): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
      if (!this.connected) {
        reject(new ClientError('DISCONNECTED', 'not connected'));
        return;
      }
      this.requests.set(rid, { resolve, reject, since: this.opts.clock.now() });
      this.write(frame);
    });
  }

  /**
   * Writes waiting messages of joined rooms, in order, as fast as the server's
   * rate limit allows; when out of tokens, comes back when the next is due.
   */
  private pump(): void {
    if (this.cancelPump !== null || this.bucket === null || this.resync !== null) return;
    const now = this.opts.clock.now();
    for (let i = 0; i < this.unsent.length;) {
      const s = this.unsent[i] as PendingSend;
      if (!this.rooms.get(s.roomKey)?.joined) {
        i++;
        continue;
      }
      // No more unacknowledged than the bucket's burst: paced sends that reach
      // the server late (a stall on its side or the network's) arrive together,
      // and the server, counting when it reads them, would refuse all past its burst.
      if (this.sends.size - this.unsent.length >= this.bucket.burst) return;
      if (!this.bucket.take(now)) {
        this.cancelPump = this.opts.clock.setTimer(() => {
          this.cancelPump = null;
          this.pump();
        }, this.bucket.wait(now));
        return;
      }
      this.unsent.splice(i, 1);
      s.written = true;
      s.answerDue = true;
      s.writtenAt = now;
      this.write(s.frame);
    }
  }

  /**
   * The server refused a send (too fast, or it could not store it); it now
   * refuses every later one until our PING. Everything written and
   * unacknowledged goes back in line, in order, and waits for the PONG
   * (refusals that arrive before it are for those old writes and are ignored).
   * After a store failure the PING waits `delayMs`, growing while it lasts.
   */
  private resend(delayMs: number): void {
    if (this.resync !== null) return;
    const token = (this.nextRid * 2654435761) >>> 0;
    this.resync = token;
    this.bucket?.drain(this.opts.clock.now());
    this.unsent = this.toResend();
    for (const s of this.unsent) s.written = false;
    this.cancelPump?.();
    this.cancelPump = null;
    const socket = this.socket;
    const ping = (): void => {
      this.resyncSince = this.opts.clock.now();
      this.write(encodeFrame({ type: 'ping', token }));
    };
    this.resyncSince = null;
    if (delayMs === 0) ping();
    else
      this.opts.clock.setTimer(() => {
        if (this.socket === socket && this.resync === token) ping();
      }, delayMs);
  }

  /** After a JOINED: where to read from, and the fetch that catches up. */
  private joined(state: RoomState, latest: number, numbering: Uint8Array): void {
    state.joined = true;
    state.held = [];
    state.heldBytes = 0;
    state.fetchRid = null;
    state.own.clear();
    const known = state.numbering;
    state.numbering = numbering;
    if (state.cursor === null) {
      this.moveCursor(state, Math.max(0, latest - state.backlog));
    } else if (state.cursor > 0 && ((known !== null && !equalBytes(known, numbering)) || state.cursor > latest)) {
      // The server's numbering started again: it lost its history (a restart
      // without --data), or its store was replaced; our cursor counts in the
      // old one and says nothing of the new (a room of 30 read, restarted and
      // 40 more sent: resuming "after 30" showed 10 of the 40, silently). Or,
      // in the same numbering, it went back: a store restored from an older
      // copy, or its last commits lost to a power cut, and the numbers past
      // `latest` are given again. (Without the numbering, saved by an older
      // version, a cursor past `latest` is the only sign of either.) Which
      // messages are new can't be told: the last MAX_BACKLOG are read again,
      // and SecureRoom drops the ones it had without a word. A cursor of 0 read
      // nothing in the old numbering, and reads the new one from its start.
      this.emit('missed', { room: state.id, count: 0, after: state.cursor, before: state.cursor + 1 });
      this.moveCursor(state, Math.max(0, latest - MAX_BACKLOG));
    }
    if (state.joined && (state.cursor ?? 0) < latest) this.fetch(state);
    this.caughtUpNow(state);
  }

  /** Asks for what follows the cursor, up to the first live message held (that one is shown live). */
  private fetch(state: RoomState): void {
    const after = state.cursor ?? 0;
    let limit = MAX_FETCH;
    for (const h of state.held) limit = Math.min(limit, h.seq - 1 - after);
    const rid = this.rid();
    state.fetchRid = rid;
    state.fetchSince = this.opts.clock.now();
    state.fetchAfter = after;
    state.fetchCount = 0;
    this.write(encodeFrame({ type: 'fetch', rid, room: state.id, after, limit: Math.max(1, limit) }));
  }

  /** A live message: shown now if it is next, else held while the gap before it is fetched. */
  private live(frame: DeliverFrame): void {
    const state = this.stateOf(frame.room);
    if (state === undefined || !state.joined || state.cursor === null) return;
    if (frame.seq <= state.cursor) return;
    if (state.fetchRid === null && frame.seq === state.cursor + 1) {
      this.advance(state, frame, false);
      return;
    }
    if (state.held.length < MAX_HELD && state.heldBytes + frame.body.length <= MAX_HELD_BYTES) {
      state.held.push(frame);
      state.heldBytes += frame.body.length;
    }
    if (state.fetchRid === null) this.fetch(state);
  }

  private historyMessage(frame: HistoryFrame): void {
    const state = this.stateOf(frame.room);
    if (state === undefined || state.fetchRid !== frame.rid || state.cursor === null) return;
    state.fetchCount++;
    if (frame.seq <= state.cursor) return;
    if (frame.seq > state.cursor + 1) this.missed(state, frame.seq);
    if (state.own.delete(frame.seq)) this.moveCursor(state, frame.seq);
    else this.advance(state, frame, true);
  }

  private fetched(frame: FetchedFrame): void {
    const state = this.stateOf(frame.room);
    if (state === undefined || state.fetchRid !== frame.rid || state.cursor === null) return;
    // A count the HISTORY frames don't bear out, or an answer that moves
    // nothing forward, is a server lying about its history: asked again at
    // once, it would be asked for ever (tens of thousands of FETCHes a second).
    if (frame.count !== state.fetchCount) {
      throw new ProtocolError('BAD_FRAME', `FETCHED counts ${frame.count} messages where ${state.fetchCount} came`);
    }
    const after = state.fetchAfter;
    state.fetchRid = null;
    state.fetchFailures = 0;
    if (frame.count === 0) {
      // Nothing stored after the cursor (the answer holds at least one message
      // when anything is): what lies between it and the next message we know
      // of is gone.
      const next = Math.min(frame.latest + 1, ...state.held.map((h) => h.seq));
      if (next > state.cursor + 1) this.missed(state, next);
    }
    // §4.9: what came before FETCHED is numbered at or below its `latest`. A held
    // message above it is one the server cannot back up (forged, or a broken
    // relay); waiting for it would mean asking again, and again, at once.
    const beyond = state.held.filter((h) => h.seq > frame.latest).length;
    if (beyond > 0) {
      // Dropped, but not without a word: the gap they would have shown is the server's doing.
      this.once.protocol(
        'beyond-latest',
        `the server delivered ${beyond} message${beyond === 1 ? '' : 's'} numbered past the latest it then reported, and did not back ${beyond === 1 ? 'it' : 'them'} up: dropped (and any more like ${beyond === 1 ? 'it' : 'them'})`,
      );
    }
    state.held = state.held
      .filter((h) => h.seq > (state.cursor ?? 0) && h.seq <= frame.latest)
      .sort((a, b) => a.seq - b.seq);
    state.heldBytes = 0;
    for (const h of state.held) state.heldBytes += h.body.length;
    while (state.joined && state.held.length > 0 && (state.held[0] as DeliverFrame).seq === state.cursor + 1) {
      const next = state.held.shift() as DeliverFrame;
      state.heldBytes -= next.body.length;
      this.advance(state, next, false);
    }
    // Not if a listener left the room meanwhile.
    if (state.joined && (state.cursor < frame.latest || state.held.length > 0)) {
      if (state.cursor === after) throw new ProtocolError('BAD_FRAME', 'an answer to FETCH that brought nothing new');
      this.fetch(state);
    }
    this.caughtUpNow(state);
  }

  /**
   * A FETCH was refused (the server could not read its store, or its last page
   * to us is still on its way): report it, unless it is only that, and ask again
   * after a while; live messages wait meanwhile (up to MAX_HELD).
   */
  private fetchFailed(rid: number, err: ClientError): boolean {
    // Rid 0 is the connection's own (a fatal error), never a FETCH's, though a room waiting to fetch again holds it.
    if (rid === WAITING_TO_FETCH) return false;
    for (const state of this.rooms.values()) {
      if (state.fetchRid !== rid) continue;
      state.fetchRid = WAITING_TO_FETCH; // live messages that arrive meanwhile wait, and don't ask again
      // Refused (reported as an error): whoever waits for the catch-up is not kept waiting on retries.
      this.caughtUpNow(state, true);
      // RATE_LIMITED here is flow control (several rooms catching up at once), not a fault.
      if (state.fetchFailures === 0 && err.code !== 'RATE_LIMITED') this.emit('error', err);
      const socket = this.socket;
      this.opts.clock.setTimer(
        () => {
          if (this.socket === socket && state.joined && state.fetchRid === WAITING_TO_FETCH) this.fetch(state);
        },
        backoffDelay(1 + state.fetchFailures++, this.opts.random(), this.opts.backoff),
      );
      return true;
    }
    return false;
  }

  /** Reports the messages before `next` that can't be had, and moves past them. */
  private missed(state: RoomState, next: number): void {
    const after = state.cursor ?? 0;
    this.emit('missed', { room: state.id, count: next - after - 1, after, before: next });
    this.moveCursor(state, next - 1);
  }

  /** Shows a message, then moves the cursor past it (so a crash in between repeats it rather than losing it). */
  private advance(state: RoomState, frame: DeliverFrame | HistoryFrame, history: boolean): void {
    state.cursor = frame.seq; // before the handlers run: one of them may send, or leave
    this.emit('message', {
      room: frame.room,
      nick: frame.nick,
      seq: frame.seq,
      ts: frame.ts,
      body: frame.body,
      history,
    });
    this.moveCursor(state, frame.seq);
  }

  private moveCursor(state: RoomState, seq: number): void {
    let cursor = seq;
    while (state.own.delete(cursor + 1)) cursor++;
    state.cursor = cursor;
    this.emit('cursor', { room: state.id, seq: cursor });
  }

  /** Our own message was stored as `seq`: the cursor passes over it. */
  private ownAck(roomId: Uint8Array, seq: number): void {
    const state = this.stateOf(roomId);
    if (state === undefined || state.cursor === null || seq <= state.cursor) return;
    if (seq === state.cursor + 1) this.moveCursor(state, seq);
    else state.own.add(seq);
  }

  private write(frame: Uint8Array): void {
    const socket = this.socket;
    if (socket === null || socket.destroyed) return;
    // Cork for the rest of this tick: a burst of sends leaves in one writev.
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(() => this.uncork());
    }
    socket.write(frame);
  }

  private uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket?.uncork();
  }

  private dial(): Promise<void> {
    return new Promise((resolve, reject) => {
      const { host, port, clock } = this.opts;
      const socket = netConnect({ host, port, noDelay: true });
      const decoder = new FrameDecoder();
      this.socket = socket;
      this.corked = false;
      let settled = false;
      const settle = (err?: ClientError): void => {
        if (settled) return;
        settled = true;
        cancelTimeout();
        if (err === undefined) resolve();
        else reject(err);
      };
      const cancelTimeout = clock.setTimer(() => {
        settle(
          new ClientError('CONNECT_FAILED', `no answer from ${host}:${port} within ${this.opts.connectTimeoutMs} ms`),
        );
        socket.destroy();
      }, this.opts.connectTimeoutMs);

      socket.on('connect', () => {
        this.lastHeard = clock.now();
        socket.write(encodeFrame({ type: 'hello', version: PROTOCOL_VERSION, agent: CLIENT_AGENT }));
      });
      socket.on('data', (chunk: Buffer) => {
        if (this.socket !== socket) return;
        this.lastHeard = clock.now();
        let frames: Uint8Array[];
        try {
          frames = decoder.push(chunk);
          // Part of a frame that may be an answer: one arriving on a slow link.
          const partial = decoder.partialType;
          if (partial !== null && ANSWER_TYPES.has(partial)) this.lastProgress = this.lastHeard;
          for (const raw of frames) {
            // Nothing after a fatal ERROR (or anything else that ended this connection) counts.
            if (this.socket !== socket) return;
            const frame = parseServerFrame(raw);
            if (this.answers(frame)) this.lastProgress = this.lastHeard;
            if (frame.type === 'welcome') {
              this.welcome = frame;
              this.lastMaxBody = frame.maxBody;
              // Pace under the server's limit, with a margin: half its burst and
              // a quarter slower, so its bucket keeps spare tokens for network
              // jitter. A refusal would put that message out of order.
              this.bucket = new TokenBucket(
                Math.max(1, Math.floor(frame.rateBurst / 2)),
                Math.ceil(Math.max(1, frame.rateIntervalMs) * 1.25),
                clock.now(),
              );
              this.welcomedAt = clock.now();
              this.startHeartbeat(frame.heartbeatMs);
              settle();
              continue;
            }
            if (frame.type === 'error' && frame.fatal && !this.connected) {
              const err = ClientError.fromWire(frame.code, frame.message, true);
              settle(err);
              this.lost(socket, err);
              return;
            }
            this.handle(socket, frame);
          }
          // A bad length prefix after whole frames: those were handled first.
          if (decoder.error !== null) throw decoder.error;
        } catch (err) {
          const e =
            err instanceof ProtocolError
              ? new ClientError('PROTOCOL', `bad frame from server: ${err.message}`, true, { cause: err })
              : new ClientError('PROTOCOL', 'failed to handle a frame', true, { cause: err });
          settle(e);
          this.lost(socket, e);
        }
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        const e = new ClientError(
          this.connected ? 'DISCONNECTED' : 'CONNECT_FAILED',
          `${host.includes(':') ? `[${host}]` : host}:${port}: ${socketErrorText(err)}`,
          false,
          { cause: err },
        );
        settle(e);
        this.lost(socket, e);
      });
      socket.on('close', () => {
        const e = new ClientError('DISCONNECTED', `connection to ${host}:${port} closed`);
        settle(e);
        this.lost(socket, undefined);
      });
    });
  }

  private handle(socket: Socket, frame: ServerFrame): void {
    switch (frame.type) {
      case 'deliver':
        this.live(frame);
        return;
      case 'history':
        this.historyMessage(frame);
        return;
      case 'fetched':
        this.fetched(frame);
        return;
      case 'ack': {
        const s = this.takeSend(frame.rid);
        if (s === undefined) return;
        this.storeFailures = 0;
        this.ownAck(frame.room, frame.seq);
        s.resolve({ seq: frame.seq, ts: frame.ts });
        this.pump();
        return;
      }
      case 'member-joined':
        if (!this.validNick(frame.nick)) return;
        this.emit('join', { room: frame.room, nick: frame.nick, key: frame.key });
        return;
      case 'member-list': {
        const r = this.requests.get(frame.rid);
        if (r !== undefined) {
          const members = (r.members ??= []);
          // A room holds at most MAX_ROOM_MEMBERS: a longer list is a server filling our memory.
          if (members.length + frame.members.length > MAX_ROOM_MEMBERS) {
            throw new ProtocolError('BAD_FRAME', `member lists longer than a room holds (${MAX_ROOM_MEMBERS})`);
          }
          members.push(...frame.members.filter((m) => this.validNick(m.nick)));
        }
        return;
      }
      case 'member-left':
        if (!this.validNick(frame.nick)) return;
        this.emit('leave', {
          room: frame.room,
          nick: frame.nick,
          reason: frame.reason === LeaveReason.LEFT ? 'left' : 'disconnected',
        });
        return;
      case 'joined': {
        // An answer naming another room than its JOIN's: taken as a join, it left
        // the room "joined" in the caller's eyes and unjoined in ours, and every
        // message waited unsent for ever.
        for (const s of this.rooms.values()) {
          if (s.joinRid !== frame.rid || !this.requests.has(frame.rid)) continue;
          if (!equalBytes(s.id, frame.room)) {
            throw new ProtocolError('BAD_FRAME', 'JOINED names another room than the JOIN it answers');
          }
          // The nick we asked for, which the server echoes: we sign as that one, whatever it says.
          if (frame.nick.toLowerCase() !== s.nick.toLowerCase()) {
            throw new ProtocolError('BAD_FRAME', 'JOINED names another nick than the JOIN it answers');
          }
        }
        const r = this.requests.get(frame.rid);
        this.requests.delete(frame.rid);
        const state = this.stateOf(frame.room);
        const members = frame.members.filter((m) => this.validNick(m.nick));
        frame.members = r?.members !== undefined ? [...r.members, ...members] : members;
        try {
          // Now, not when the promise settles: messages may follow in this very chunk.
          if (state !== undefined && state.joinRid === frame.rid) {
            this.joined(state, frame.seq, frame.numbering);
            this.emit('joined', {
              room: frame.room,
              nick: frame.nick,
              members: frame.members,
              seq: frame.seq,
              numbering: frame.numbering,
            });
          }
        } finally {
          // Out of `requests` already: a listener that throws must not leave join() pending for ever.
          r?.resolve(frame);
        }
        return;
      }
      case 'left': {
        const r = this.requests.get(frame.rid);
        this.requests.delete(frame.rid);
        r?.resolve(frame);
        return;
      }
      case 'ping':
        // A server that pings without reading the PONGs would grow them here
        // without end; one that has this much unread does not need one.
        if ((this.socket?.writableLength ?? 0) <= SEND_QUEUE_BYTES) {
          this.write(encodeFrame({ type: 'pong', token: frame.token }));
        }
        return;
      case 'pong':
        if (frame.token === this.resync) {
          this.resync = null;
          this.pump();
        }
        return;
      case 'welcome':
        return;
      case 'error': {
        const err = ClientError.fromWire(frame.code, frame.message, frame.fatal);
        if (err.code === 'RATE_LIMITED' && this.sends.has(frame.rid)) {
          // Too fast: not a failure, just later; after the flood's fatal one, on the next connection.
          if (frame.fatal) this.lost(socket, err);
          else this.resend(0);
          return;
        }
        if (err.code === 'STORE_FAILED' && !frame.fatal && this.sends.has(frame.rid)) {
          // The server can't store right now (disk full): keep the message and retry, slower and slower.
          if (this.resync === null) {
            if (this.storeFailures === 0) this.emit('error', err);
            this.resend(backoffDelay(this.storeFailures++, this.opts.random(), this.opts.backoff));
          }
          return;
        }
        if (!frame.fatal && this.fetchFailed(frame.rid, err)) return;
        const s = this.takeSend(frame.rid);
        const r = this.requests.get(frame.rid);
        if (s !== undefined) {
          s.reject(err);
          if (!frame.fatal) this.pump(); // one fewer in flight
        } else if (r !== undefined) {
          this.requests.delete(frame.rid);
          r.reject(err);
        } else {
          this.emit('error', err);
        }
        if (frame.fatal) this.lost(socket, err);
        return;
      }
    }
  }

  /**
   * Whether a member's nick, as the server announced it, is one a server
   * accepts at JOIN. Only the byte length and UTF-8 are checked as the frame
   * is read: a hostile server could otherwise name a member with terminal
   * escapes, which a program (Tab completion) would then write out raw. Such
   * a member is left out, and reported once.
   */
  private validNick(nick: string): boolean {
    if (isValidNick(nick)) return true;
    this.once.protocol(
      'bad-nick',
      `the server announced a member as ${JSON.stringify(nick)}, which is not a nick anyone can join with: ignored (and any more like it)`,
    );
    return false;
  }

  /** The connection is gone (or must go): fail what can't survive, maybe retry. */
  private lost(socket: Socket, error: ClientError | undefined): void {
    if (this.socket !== socket) return;
    const wasConnected = this.connected;
    // Not at WELCOME: a server that ends every connection soon after it (a fatal
    // error answering each SEND) would otherwise be redialled at the first
    // retry's delay for ever. A connection that lasted the longest delay has
    // earned a fresh start.
    if (this.welcomedAt !== null && this.opts.clock.now() - this.welcomedAt >= longestDelay(this.opts.backoff)) {
      this.attempt = 0;
    }
    this.welcomedAt = null;
    this.socket = null;
    this.welcome = null;
    this.stopHeartbeat();
    socket.destroy();
    for (const state of this.rooms.values()) {
      state.joined = false;
      state.fetchRid = null;
      state.held = [];
      state.heldBytes = 0;
    }
    // Everything unacknowledged goes out again, in order, on the next connection.
    this.cancelPump?.();
    this.cancelPump = null;
    this.bucket = null;
    this.resync = null;
    this.unsent = this.toResend();
    for (const s of this.unsent) {
      s.written = false;
      s.answerDue = false;
    }
    for (const r of this.requests.values()) r.reject(connectionLost(error));
    this.requests.clear();
    if (this.closed || !wasConnected) return;
    const willReconnect = this.opts.reconnect && (error === undefined || !FINAL_CODES.has(error.code));
    this.emit('disconnect', { error, willReconnect, attempt: this.attempt });
    if (willReconnect) this.scheduleRetry();
    else this.giveUp(error);
  }

  private scheduleRetry(): void {
    const delay = backoffDelay(this.attempt, this.opts.random(), this.opts.backoff);
    this.attempt++;
    this.cancelRetry = this.opts.clock.setTimer(() => {
      this.cancelRetry = null;
      void this.retry();
    }, delay);
  }

  private async retry(): Promise<void> {
    if (this.closed) return;
    try {
      await this.dial();
    } catch (err) {
      if (this.closed) return;
      if (err instanceof ClientError && FINAL_CODES.has(err.code)) {
        this.emit('disconnect', { error: err, willReconnect: false, attempt: this.attempt });
        this.giveUp(err);
        return;
      }
      this.scheduleRetry();
      return;
    }
    const socket = this.socket;
    const results: JoinResult[] = [];
    for (const state of [...this.rooms.values()]) {
      // Not a room left (or left and joined again) while an earlier one was rejoined.
      if (!this.holds(state)) continue;
      try {
        const result = await this.requestJoin(state);
        if (this.holds(state)) results.push(result); // not if left meanwhile
      } catch (err) {
        if (!(err instanceof ClientError)) throw err;
        if (err.code === 'DISCONNECTED') return; // dropped again; lost() has scheduled the next try
        if (!this.holds(state)) continue; // left meanwhile: nothing to report or retry
        if (JOIN_FINAL_CODES.has(err.code)) {
          // Given up before it is reported: whoever hears of it finds us out of the room.
          this.abandon(state, err);
          this.emit('error', err);
          continue;
        }
        this.emit('error', err);
        // Most likely NICK_TAKEN: the server still holds our old connection
        // until it notices the drop (up to its heartbeat deadline). Keep
        // trying that room with backoff.
        this.retryJoin(state, 1);
      }
    }
    if (this.closed || this.socket !== socket) return; // closed, or lost again, meanwhile
    this.emit('reconnect', { rooms: results });
  }

  private retryJoin(state: RoomState, attempt: number): void {
    const socket = this.socket;
    this.opts.clock.setTimer(
      () => {
        // Not if the room was left (or left and joined again: another state) meanwhile.
        // Not from a connection since lost (the new one's rejoin has its own chain), nor over a JOIN on its way.
        if (this.closed || this.socket !== socket || state.joined || !this.holds(state)) return;
        if (this.requests.has(state.joinRid)) return;
        this.requestJoin(state).then(
          (r) => {
            if (this.holds(state)) this.emit('reconnect', { rooms: [r] });
          },
          (e: unknown) => {
            if (!(e instanceof ClientError) || e.code === 'DISCONNECTED') return;
            if (!this.holds(state)) return; // left meanwhile
            if (JOIN_FINAL_CODES.has(e.code)) {
              this.abandon(state, e);
              this.emit('error', e);
              return;
            }
            this.retryJoin(state, attempt + 1);
          },
        );
      },
      backoffDelay(attempt, this.opts.random(), this.opts.backoff),
    );
  }

  /**
   * A join that failed, or a rejoin refused for good (the nick now belongs to
   * another key): out of the room, its sends failed.
   */
  private abandon(state: RoomState, err: ClientError): void {
    if (!this.holds(state)) return;
    const key = roomKey(state.id);
    this.forget(state);
    this.failSends(key, err);
  }

  /** Every send to write again, in order: all waiting, but those of a room being left (they only wait for their answer). */
  private toResend(): PendingSend[] {
    return [...this.sends.values()].filter((s) => s.leaving !== true);
  }

  /** Whether `state` is still the room's: not left, nor left and joined again (another state). */
  private holds(state: RoomState): boolean {
    return this.rooms.get(roomKey(state.id)) === state;
  }

  /** Out of the room: nothing more of it is fetched or reported (a FETCH retry, held messages). */
  private forget(state: RoomState): void {
    this.rooms.delete(roomKey(state.id));
    state.joined = false;
    state.fetchRid = null;
    state.held = [];
    state.heldBytes = 0;
    this.caughtUpNow(state, true);
  }

  /** Fails the room's messages waiting for their acknowledgement (those `which` picks). */
  private failSends(key: string, err: ClientError, which: (s: PendingSend) => boolean = () => true): void {
    for (const s of [...this.sends.values()]) {
      if (s.roomKey === key && which(s)) {
        this.takeSend(s.rid);
        s.reject(err);
      }
    }
  }

  /** Removes a send from the outbox, waking `settled()` waiters when it empties. */
  private takeSend(rid: number): PendingSend | undefined {
    const s = this.sends.get(rid);
    if (s === undefined) return undefined;
    this.sends.delete(rid);
    if (!s.written) {
      const i = this.unsent.indexOf(s);
      if (i >= 0) this.unsent.splice(i, 1);
    }
    if (this.sends.size === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      // After the send's own promise settles, so its handlers run first.
      queueMicrotask(() => {
        for (const w of waiters) w();
      });
    }
    return s;
  }

  /** No more reconnects (`cause`: why, when known): what is waiting fails now, and so will later sends. */
  private giveUp(cause: ClientError | undefined): void {
    const lost = connectionLost(cause);
    this.dead = cause ?? lost;
    // Whether the server took them is not known: DISCONNECTED, which SecureRoom
    // keeps in its outbox for the next join, whatever ended the connection.
    this.failAll(lost);
    for (const state of this.rooms.values()) this.caughtUpNow(state, true);
  }

  private failAll(err: ClientError): void {
    for (const s of [...this.sends.values()]) {
      this.takeSend(s.rid);
      s.reject(err);
    }
    for (const r of this.requests.values()) r.reject(err);
    this.requests.clear();
  }

  private startHeartbeat(announced: number): void {
    this.stopHeartbeat();
    // The server's figure, within bounds: 0 would check (and give up) at once,
    // and past 2^31 - 1 ms Node fires a timer after 1 ms, so either way a
    // hostile server could keep the client spinning.
    const heartbeatMs = Math.min(Math.max(announced, MIN_HEARTBEAT_MS), MAX_HEARTBEAT_MS);
    const { clock } = this.opts;
    // The server pings after heartbeatMs of silence, so three periods without a
    // byte means the path is dead even if TCP has not noticed.
    const check = (): void => {
      const socket = this.socket;
      if (socket === null) return;
      const now = clock.now();
      if (now - this.lastHeard > heartbeatMs * 3) {
        this.lost(socket, new ClientError('HEARTBEAT_TIMEOUT', 'server silent for too long'));
        return;
      }
      // Alive (it pings) but sending nothing else while an answer is owed: a
      // request would wait for ever. An answer that is arriving, however slowly
      // (a long member list, a page of history on a slow link), is not this.
      const owed = this.oldestOwed();
      const idle = owed === null ? 0 : now - Math.max(owed.since, this.lastProgress);
      if (owed !== null && idle > heartbeatMs * ANSWER_HEARTBEATS) {
        const waited = (idle / 1000).toFixed(idle < 10_000 ? 1 : 0);
        const message = `the server answered nothing for ${waited} s while a ${owed.what} waited for its answer`;
        this.lost(socket, new ClientError('ANSWER_TIMEOUT', message));
        return;
      }
      this.cancelHeartbeat = clock.setTimer(check, heartbeatMs);
    };
    this.cancelHeartbeat = clock.setTimer(check, heartbeatMs);
  }

  /**
   * Whether `frame` answers something this connection is owed: only that is
   * progress for the answer deadline. Frames nobody asked for (a room's
   * messages, an unasked PONG) would otherwise keep a server that never
   * answers alive for ever.
   */
  private answers(frame: ServerFrame): boolean {
    switch (frame.type) {
      case 'ack':
      case 'error':
      case 'joined':
      case 'left':
      case 'member-list':
      case 'history':
      case 'fetched':
        return this.sends.has(frame.rid) || this.requests.has(frame.rid) || this.fetching(frame.rid);
      case 'pong':
        return frame.token === this.resync;
      default:
        return false;
    }
  }

  /** Whether `rid` is a room's FETCH under way. */
  private fetching(rid: number): boolean {
    for (const state of this.rooms.values()) if (state.fetchRid === rid && rid !== WAITING_TO_FETCH) return true;
    return false;
  }

  /** The answer the server has owed longest on this connection, if any. */
  private oldestOwed(): { since: number; what: string } | null {
    let oldest: { since: number; what: string } | null = null;
    const owe = (since: number, what: string): void => {
      if (oldest === null || since < oldest.since) oldest = { since, what };
    };
    for (const r of this.requests.values()) owe(r.since, 'JOIN or LEAVE');
    for (const state of this.rooms.values()) {
      if (state.fetchRid !== null && state.fetchRid !== WAITING_TO_FETCH) owe(state.fetchSince, 'FETCH');
    }
    for (const s of this.sends.values()) if (s.written) owe(s.writtenAt, 'message');
    if (this.resync !== null && this.resyncSince !== null) owe(this.resyncSince, 'PING');
    return oldest;
  }

  private stopHeartbeat(): void {
    this.cancelHeartbeat?.();
    this.cancelHeartbeat = null;
  }
}

/**
 * Connects to a confab server and completes the handshake.
 * @example
 * const client = await connect({ host: 'localhost', port: 5050 });
 * await client.join(roomId, 'alice');
 * client.on('message', (m) => console.log(m.nick, m.body));
 */
export async function connect(options: ConnectOptions): Promise<ConfabClient> {
  const client = new ConfabClient(options);
  await client.open();
  return client;
}

/** What a request or a message in flight fails with when the connection goes: DISCONNECTED, naming the cause. */
function connectionLost(cause: ClientError | undefined): ClientError {
  return new ClientError('DISCONNECTED', cause === undefined ? 'connection lost' : `connection lost: ${cause.message}`);
}

function roomKey(room: Uint8Array): string {
  return Buffer.from(room).toString('hex');
}

/** What went wrong with a socket, in words, with the system's code after them (`ECONNREFUSED`). */
export function socketErrorText(err: NodeJS.ErrnoException): string {
  const code = err.code ?? '';
  const words = SOCKET_ERRORS[code];
  return words === undefined ? code || err.message : `${words} (${code})`;
}

const SOCKET_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'nothing listens there (is the server running, on that port?)',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'the host name could not be looked up now (no DNS?)',
  ETIMEDOUT: 'no answer',
  EHOSTUNREACH: 'the host is unreachable',
  ENETUNREACH: 'the network is unreachable',
  ECONNRESET: 'the connection was reset',
  EPIPE: 'the connection was closed',
};
