import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import type { Logger } from 'pino';
import { encodeFrame, ErrorCode } from '../protocol/index.js';
import type { Connection } from './connection.js';
import { DirectWriter, fanoutAddon } from './direct-write.js';
import { addressKey } from './ip-limits.js';
import { LingerBudget, lingerThenDestroy } from './linger.js';
import { createLogger } from './log.js';
import { resolveOptions } from './options.js';
import type { ResolvedOptions, ServerLimits, ServerOptions } from './options.js';
import { StoreError } from './history.js';
import type { HistoryStore } from './history.js';
import { NoHistory } from './no-history.js';
import { Relay } from './relay.js';
import { PRUNE_ROOMS_PER_STEP, SqliteHistory } from './sqlite-history.js';
import type { Eviction } from './sqlite-history.js';
import type { RelayStats } from './relay.js';
import { lockDataDir } from './data-lock.js';
import { ThrottledLog } from './throttled-log.js';

/** A running relay server. */
export interface ConfabServer {
  /** The address it listens on (the real port when started with port 0). */
  readonly host: string;
  readonly port: number;
  readonly limits: Readonly<ServerLimits>;
  readonly stats: Readonly<RelayStats>;
  /** Whether writes go through the native fan-out (asked for, and built here). */
  readonly nativeWrites: boolean;
  /** Whether the native fan-out submits through io_uring (asked for, and allowed by the kernel). */
  readonly ioUring: boolean;
  /** Checks deadlines now (tests with a fake clock call this). */
  sweep(): void;
  /** Tells every client the server is going away, closes every socket, stops listening. */
  close(): Promise<void>;
}

const conns = new WeakMap<Socket, Connection>();

/**
 * Starts a relay server and resolves once it listens.
 * @example const server = await startServer({ port: 0 }); console.log(server.port);
 */
export async function startServer(options: ServerOptions = {}): Promise<ConfabServer> {
  const opts = resolveOptions(options);
  const log: Logger = options.logger ?? createLogger();
  // Not with --no-history, which says it does not use the directory.
  if (opts.dataDir !== undefined && !opts.noHistory) mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  // One server per store: taken before the store opens, given up after it closes.
  const lock =
    opts.dataDir !== undefined && opts.store === undefined && !opts.noHistory ? lockDataDir(opts.dataDir) : null;
  let store: HistoryStore;
  try {
    store = openStore(opts, (e) => {
      relay.stats.evicted += e.messages;
      log.warn(e, 'history store full: evicted the oldest messages of the rooms that hold the most');
    });
  } catch (err) {
    lock?.release();
    throw err;
  }
  const relay = new Relay(
    opts.limits,
    opts.clock,
    log,
    opts.randomBytes,
    store,
    opts.nativeWrites && fanoutAddon !== null ? new DirectWriter(fanoutAddon, opts.ioUring) : null,
  );

  // One set of handlers for every socket, looked up through the WeakMap, so a
  // connection costs no closures.
  function onData(this: Socket, chunk: Buffer): void {
    const conn = conns.get(this);
    if (conn !== undefined) relay.receive(conn, chunk);
  }
  function onEnd(this: Socket): void {
    const conn = conns.get(this);
    if (conn !== undefined) relay.peerEnded(conn);
  }
  function onClose(this: Socket): void {
    const conn = conns.get(this);
    if (conn !== undefined) {
      relay.closed(conn);
      ipLimits.release(conn.ip);
      conns.delete(this);
    }
  }
  function onError(this: Socket, err: Error): void {
    log.debug({ err: err.message }, 'socket error');
  }

  const ipLimits = relay.addresses;
  // Refused sockets are in no connection count: these bound the ones left to linger.
  const lingering = new LingerBudget(opts.limits.maxConnectionsPerIp, opts.limits.maxLingeringRefusals);
  // Refused at accept, before any connection exists: counted, and logged without flooding.
  const refusals = new ThrottledLog(log, () => opts.clock.now());
  function refuse(socket: Socket, ip: string, message: string, kind: string): void {
    relay.stats.dropped.TOO_MANY_CONNECTIONS = (relay.stats.dropped.TOO_MANY_CONNECTIONS ?? 0) + 1;
    refusals.warn(kind, { code: 'TOO_MANY_CONNECTIONS', remote: ip, why: message }, 'connection refused');
    socket.on('error', onError);
    // Handed to the kernel at once (nothing is queued ahead of it), so it still
    // goes out if the socket is destroyed straight after; a peer that had sent
    // bytes gets a reset instead.
    socket.end(encodeFrame({ type: 'error', rid: 0, code: ErrorCode.TOO_MANY_CONNECTIONS, fatal: true, message }));
    if (!lingering.take(ip)) {
      socket.destroy();
      return;
    }
    socket.once('close', () => lingering.release(ip));
    // Don't wait on a peer that won't read its refusal.
    lingerThenDestroy(socket, opts.clock, opts.limits.closeLingerMs);
  }

  const net: NetServer = createNetServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    const ip = addressKey(socket.remoteAddress ?? '?');
    if (relay.connections.size >= opts.limits.maxConnections) {
      refuse(socket, ip, 'server full', 'full');
      return;
    }
    const refusal = ipLimits.admit(ip, opts.clock.now());
    if (refusal !== null) {
      refuse(socket, ip, refusal, 'address');
      return;
    }
    const conn = relay.open(socket, ip);
    conns.set(socket, conn);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onClose);
    socket.on('error', onError);
  });

  try {
    await new Promise<void>((resolve, reject) => {
      net.once('error', reject);
      net.listen(opts.port, opts.host, () => {
        net.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    // The store opened above would keep the process alive (its checkpoint
    // thread) and its file open: `confab serve` on a port in use hung. Its
    // thread goes on its own once closed; waiting for it here would be waiting
    // on a thread that keeps nothing else alive.
    if (opts.store === undefined) store.close();
    afterClosed(store, () => lock?.release());
    throw err;
  }
  net.on('error', (err) => log.error({ err }, 'listener error'));
  const address = net.address() as AddressInfo;

  let lastPrune = opts.clock.now();
  // A prune pass goes through the rooms a step per sweep; null between passes.
  let pass: { removed: number } | null = null;
  let stopSweep = opts.clock.setTimer(function tick() {
    relay.sweep();
    ipLimits.sweep(opts.clock.now());
    if (pass === null && opts.clock.now() - lastPrune >= opts.limits.pruneIntervalMs) {
      lastPrune = opts.clock.now();
      pass = { removed: 0 };
    }
    if (pass !== null) {
      try {
        const step = store.pruneSome(lastPrune, PRUNE_ROOMS_PER_STEP);
        pass.removed += step.removed;
        if (step.done) {
          if (pass.removed > 0) log.debug({ removed: pass.removed }, 'history pruned');
          pass = null;
        }
      } catch (err) {
        log.warn({ code: err instanceof StoreError ? err.code : 'STORE' }, 'cannot prune history');
        pass = null; // the next interval starts a pass again
      }
    }
    stopSweep = opts.clock.setTimer(tick, opts.sweepMs);
  }, opts.sweepMs);

  let closing: Promise<void> | null = null;
  return {
    host: address.address,
    port: address.port,
    limits: opts.limits,
    stats: relay.stats,
    nativeWrites: relay.nativeWrites,
    get ioUring() {
      return relay.ioUring;
    },
    sweep: () => relay.sweep(),
    close() {
      closing ??= new Promise<void>((resolve) => {
        stopSweep();
        net.close(() => {
          store.close();
          // Resolved once the store has finished closing, its background thread included.
          afterClosed(store, () => {
            lock?.release();
            resolve();
          });
        });
        const bye = encodeFrame({
          type: 'error',
          rid: 0,
          code: ErrorCode.SERVER_SHUTDOWN,
          fatal: true,
          message: 'server shutting down',
        });
        relay.shutdown(bye);
        // Whoever has not closed within a second is cut.
        const timer = setTimeout(() => {
          for (const conn of relay.connections) conn.socket.destroy();
        }, 1000);
        timer.unref();
      });
      return closing;
    },
  };
}

/**
 * Runs `then` once `store` has closed for good, its background thread included
 * (the thread may hold the files until then): the data directory is free after.
 */
function afterClosed(store: HistoryStore, then: () => void): void {
  (store.closed?.() ?? Promise.resolve()).then(then, then);
}

/** The history store the options ask for: SQLite in the data directory, in memory, or none. */
function openStore(opts: ResolvedOptions, onEvict: (e: Eviction) => void): HistoryStore {
  if (opts.store !== undefined) return opts.store;
  if (opts.noHistory) return new NoHistory();
  const l = opts.limits;
  const dir = opts.dataDir;
  const inMemory = dir === undefined;
  return new SqliteHistory({
    path: inMemory ? ':memory:' : join(dir, HISTORY_FILE),
    retention: { messages: l.historyMessages, maxAgeMs: l.historyDays * 86_400_000 },
    sync: opts.sync,
    // Kept in RAM, the store gets a smaller cap than on disk.
    maxBytes: Math.min(l.storeMaxMiB, inMemory ? MEMORY_STORE_MAX_MIB : Infinity) * 1024 * 1024,
    // Off the event loop: an automatic checkpoint's copy and fsyncs stalled a turn by milliseconds.
    checkpointMs: CHECKPOINT_MS,
    onEvict,
    randomBytes: opts.randomBytes,
  });
}

/** Largest the history may grow when kept in memory (no `--data`), MiB. */
export const MEMORY_STORE_MAX_MIB = 256;

/**
 * How often the history's write-ahead log is checkpointed, from a background
 * thread. Under steady commits the writer's own backstop checkpoint still runs
 * (see sqlite-history.ts), and it stalls the event loop for whatever the thread
 * has not yet copied and synced: at 1 s that was up to a second of commits
 * (20-30 ms at 1,000 commits a second), at 100 ms it is 7-10 ms.
 */
export const CHECKPOINT_MS = 100;

/** The history database's name inside `--data`. */
export const HISTORY_FILE = 'history.db';
