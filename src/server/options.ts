import { randomFillSync } from 'node:crypto';
import type { Logger } from 'pino';
import {
  DEFAULT_PORT,
  MAX_BODY,
  MAX_FRAME,
  MAX_HEARTBEAT_MS,
  MAX_ROOM_MEMBERS,
  MAX_ROOMS_PER_CONNECTION,
  MIN_HEARTBEAT_MS,
  systemClock,
} from '../protocol/index.js';
import type { Clock } from '../protocol/index.js';
import type { HistoryStore } from './history.js';

/** Every bound the server enforces. doc/LIMITS.md lists each with its error code. */
export interface ServerLimits {
  /** Largest frame a client may announce (FRAME_TOO_LARGE). */
  maxFrame: number;
  /** Largest message body (BODY_TOO_LARGE). */
  maxBody: number;
  /** Time from connect to a completed HELLO (HANDSHAKE_TIMEOUT). */
  handshakeTimeoutMs: number;
  /** Time from a frame's first byte to its last (READ_TIMEOUT). */
  frameTimeoutMs: number;
  /** Silence after which the server sends PING. */
  heartbeatMs: number;
  /** Silence after which the connection is dropped (HEARTBEAT_TIMEOUT). */
  deadAfterMs: number;
  /** Bytes queued for one connection before it is dropped (SENDQ_EXCEEDED). */
  sendQueueBytes: number;
  /** Time a closing connection gets to read its last bytes (an ERROR, say) before it is destroyed. */
  closeLingerMs: number;
  /**
   * Refused connections given closeLingerMs to read their refusal, in all (and
   * at most maxConnectionsPerIp from one address); past it one is closed at once.
   */
  maxLingeringRefusals: number;
  /** Rooms one connection may be in (TOO_MANY_ROOMS). */
  maxRoomsPerConnection: number;
  /** Members in one room (ROOM_FULL). */
  maxRoomMembers: number;
  /** Open connections on the whole server (TOO_MANY_CONNECTIONS). */
  maxConnections: number;
  /** Open connections from one IP address (TOO_MANY_CONNECTIONS). */
  maxConnectionsPerIp: number;
  /** New connections from one IP address per minute, with that many at once (TOO_MANY_CONNECTIONS). */
  connectionsPerIpPerMinute: number;
  /**
   * Rows one IP address may add at once to what the history store keeps for
   * good, a nick's claim or a room's row (RATE_LIMITED on the JOIN beyond)...
   */
  newRowsPerIp: number;
  /** ...and then one every this many ms. */
  newRowIntervalMs: number;
  /** Messages a connection may send at once (RATE_LIMITED beyond)... */
  messageBurst: number;
  /** ...and then one every this many ms (200: 5 per second). */
  messageIntervalMs: number;
  /** Refused messages in a row after which a flooding connection is dropped (RATE_LIMITED, fatal). */
  floodStrikes: number;
  /** JOINs a connection may make at once (RATE_LIMITED beyond): each one is announced to the whole room... */
  joinBurst: number;
  /** ...and then one every this many ms. */
  joinIntervalMs: number;
  /**
   * Frames a connection may send at once that carry nothing for a room: PING,
   * PONG, ERROR, and requests refused for what they ask (NOT_IN_ROOM, a second
   * HELLO, ...). Past them, and one every noopIntervalMs, it is dropped
   * (RATE_LIMITED, fatal): each costs the server a read and most an answer...
   */
  noopBurst: number;
  /** ...and then one every this many ms. */
  noopIntervalMs: number;
  /** Most messages in one answer to FETCH (the client asks again for more). */
  fetchMessages: number;
  /** Most bytes of messages in one answer to FETCH (at least one message is always sent). */
  fetchBytes: number;
  /** Messages kept per room; older ones are pruned. */
  historyMessages: number;
  /** Days a message is kept. */
  historyDays: number;
  /** Largest the history database may grow, in MiB; near it, the oldest messages of the rooms that take the most are evicted. */
  storeMaxMiB: number;
  /** How often retention is applied, ms. */
  pruneIntervalMs: number;
}

export const DEFAULT_LIMITS: Readonly<ServerLimits> = Object.freeze({
  maxFrame: MAX_FRAME,
  maxBody: MAX_BODY,
  handshakeTimeoutMs: 10_000,
  frameTimeoutMs: 30_000,
  heartbeatMs: 15_000,
  deadAfterMs: 45_000,
  sendQueueBytes: 256 * 1024,
  closeLingerMs: 2000,
  maxLingeringRefusals: 1024,
  maxRoomsPerConnection: MAX_ROOMS_PER_CONNECTION,
  maxRoomMembers: MAX_ROOM_MEMBERS,
  maxConnections: 20_000,
  maxConnectionsPerIp: 16,
  connectionsPerIpPerMinute: 30,
  newRowsPerIp: 32,
  newRowIntervalMs: 60_000,
  messageBurst: 10,
  messageIntervalMs: 200,
  floodStrikes: 100,
  joinBurst: 20,
  joinIntervalMs: 3000,
  noopBurst: 60,
  noopIntervalMs: 1000,
  fetchMessages: 500,
  fetchBytes: 128 * 1024,
  historyMessages: 10_000,
  historyDays: 30,
  storeMaxMiB: 10_240,
  pruneIntervalMs: 60_000,
});

/** Options of `startServer`. */
export interface ServerOptions {
  /** Interface to listen on; default `0.0.0.0`. */
  host?: string;
  /** TCP port; default 5050; 0 picks a free one. */
  port?: number;
  /** Where the server keeps its state (history.db); created if missing. Without it, history is kept in memory. */
  dataDir?: string;
  /** Keep no history at all: no backlog, resume, resend detection or nick ownership. */
  noHistory?: boolean;
  /** A store of your own (it is closed with the server); overrides `dataDir` and `noHistory`. */
  store?: HistoryStore;
  /**
   * Write each turn's output with the native fan-out (native/fanout.c) where it
   * was built at install; default true. False writes through Node's streams.
   */
  nativeWrites?: boolean;
  /**
   * Let the native fan-out hand a turn's sends to the kernel through io_uring
   * (Linux), where the kernel allows it; default true. False: one `send` each.
   */
  ioUring?: boolean;
  /** `full`: sync every commit to disk (survives power loss); default `normal` (survives a crash of the process). */
  sync?: 'normal' | 'full';
  /** Overrides of DEFAULT_LIMITS. */
  limits?: Partial<ServerLimits>;
  clock?: Clock;
  /** Random bytes for join challenges; default node:crypto. */
  randomBytes?: (length: number) => Uint8Array;
  /** How often deadlines are checked, in ms; default 1,000. */
  sweepMs?: number;
  logger?: Logger;
}

export const DEFAULT_HOST = '0.0.0.0';

// A SEND frame around its body: type, rid, room id, message id.
const SEND_OVERHEAD = 1 + 4 + 16 + 16;

export interface ResolvedOptions {
  host: string;
  port: number;
  dataDir: string | undefined;
  noHistory: boolean;
  nativeWrites: boolean;
  ioUring: boolean;
  store: HistoryStore | undefined;
  sync: 'normal' | 'full';
  limits: ServerLimits;
  clock: Clock;
  randomBytes: (length: number) => Uint8Array;
  sweepMs: number;
}

/** The largest value any limit may take: 2^31 - 1, the longest a Node timer waits. */
export const MAX_LIMIT = 2_147_483_647;

export function resolveOptions(options: ServerOptions): ResolvedOptions {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value <= 0) {
      throw new RangeError(`limit "${key}" expected a positive integer, got ${String(value)}`);
    }
    // A Node timer waits at most this long (longer fires after 1 ms), and
    // WELCOME carries some limits as u32: larger would reach clients cut short.
    if (value > MAX_LIMIT) {
      throw new RangeError(`limit "${key}" may not exceed ${MAX_LIMIT}, got ${String(value)}`);
    }
  }
  if (limits.heartbeatMs < MIN_HEARTBEAT_MS || limits.heartbeatMs > MAX_HEARTBEAT_MS) {
    throw new RangeError(
      `limit "heartbeatMs" must be from ${MIN_HEARTBEAT_MS} to ${MAX_HEARTBEAT_MS}: clients give up after three of them without a byte, got ${limits.heartbeatMs}`,
    );
  }
  // The server pings and checks deadlines once a sweep: a ping can leave up to a
  // sweep after heartbeatMs of silence, and the client gives up after three
  // heartbeats without a byte; its PONG then needs a sweep more to be seen.
  // Under these, healthy idle clients were dropped again and again.
  const sweepMs = options.sweepMs ?? 1000;
  if (limits.heartbeatMs < sweepMs) {
    throw new RangeError(
      `limit "heartbeatMs" must be at least ${sweepMs} (the server pings once a sweep, and clients give up after three heartbeats without a byte), got ${limits.heartbeatMs}`,
    );
  }
  if (limits.deadAfterMs < limits.heartbeatMs + 2 * sweepMs) {
    throw new RangeError(
      `limit "deadAfterMs" must be at least heartbeatMs + ${2 * sweepMs} (${limits.heartbeatMs + 2 * sweepMs}): a PING leaves up to a sweep after heartbeatMs and its PONG is seen at the next one; shorter drops healthy idle connections, got ${limits.deadAfterMs}`,
    );
  }
  if (limits.maxFrame > MAX_FRAME) {
    throw new RangeError(`limit "maxFrame" may not exceed the protocol's ${MAX_FRAME}, got ${limits.maxFrame}`);
  }
  if (limits.maxBody > MAX_BODY) {
    throw new RangeError(`limit "maxBody" may not exceed the protocol's ${MAX_BODY}, got ${limits.maxBody}`);
  }
  if (limits.maxFrame < limits.maxBody + SEND_OVERHEAD) {
    throw new RangeError(
      `limit "maxFrame" must leave room for a maxBody message: at least ${limits.maxBody + SEND_OVERHEAD}, got ${limits.maxFrame}`,
    );
  }
  if (limits.fetchBytes > limits.sendQueueBytes / 2) {
    throw new RangeError(
      `limit "fetchBytes" must be at most half of sendQueueBytes (${limits.sendQueueBytes / 2}), got ${limits.fetchBytes}`,
    );
  }
  if (limits.newRowsPerIp < 2) {
    throw new RangeError(
      `limit "newRowsPerIp" must be at least 2: one JOIN may add a nick and a room, got ${limits.newRowsPerIp}`,
    );
  }
  if (limits.maxRoomMembers > MAX_ROOM_MEMBERS) {
    throw new RangeError(
      `limit "maxRoomMembers" may not exceed the protocol's ${MAX_ROOM_MEMBERS}, got ${limits.maxRoomMembers}`,
    );
  }
  return {
    host: options.host ?? DEFAULT_HOST,
    port: options.port ?? DEFAULT_PORT,
    dataDir: options.dataDir,
    noHistory: options.noHistory ?? false,
    nativeWrites: options.nativeWrites ?? true,
    ioUring: options.ioUring ?? true,
    store: options.store,
    sync: options.sync ?? 'normal',
    limits,
    clock: options.clock ?? systemClock,
    // allocUnsafe draws small buffers from Node's shared pool: no allocation of
    // its own per connection. Every byte is then overwritten with random data.
    randomBytes: options.randomBytes ?? ((n) => randomFillSync(Buffer.allocUnsafe(n))),
    sweepMs,
  };
}
