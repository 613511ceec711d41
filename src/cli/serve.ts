import { readdirSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import type { Logger } from 'pino';
import { capYoungGeneration, createLogger, semiSpaceGiven, startServer, v8Heap } from '../server/index.js';
import type { ConfabServer } from '../server/index.js';

export interface ServeOptions {
  host: string;
  port: number;
  data?: string;
  /** False with `--no-history`. */
  history: boolean;
  /** False with `--no-native-writes`. */
  nativeWrites: boolean;
  /** False with `--no-io-uring`. */
  ioUring: boolean;
  sync: 'normal' | 'full';
  logLevel: string;
  /** Overrides of the default limits (`--limit name=value`). */
  limit?: Record<string, number>;
  /** Log a stats line every this many seconds (0: never). */
  stats?: number;
  /** Cap of V8's young generation per semi-space, MiB (0: V8's own); see capYoungGeneration. */
  semiSpace?: number;
}

/**
 * The young generation's cap per semi-space, MiB. Half V8's default: an idle
 * connection right after a burst of joins costs 7 KB instead of 10, and the
 * server's CPU at workload (a) about 2% more (doc/PERFORMANCE.md).
 */
export const DEFAULT_SEMI_SPACE_MIB = 8;

/** Longest `--stats` interval: past 2^31 - 1 ms a Node timer fires after 1 ms. */
export const MAX_STATS_SECONDS = 2_147_483;

/** Descriptors this process has open (Linux), or a guess where they can't be counted. */
function openFiles(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 32;
  }
}

/**
 * The process's soft limit on open files, from /proc/self/limits (Linux), or
 * null where it can't be read. Node has no getrlimit.
 */
export function openFilesLimit(text?: string): number | null {
  try {
    const limits = text ?? readFileSync('/proc/self/limits', 'utf8');
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits);
    if (m === null) return null;
    return m[1] === 'unlimited' ? Infinity : Number(m[1]);
  } catch {
    return null;
  }
}

/**
 * `confab serve`: starts the relay, prints `listening on HOST:PORT` on stdout
 * once it accepts connections, and shuts down cleanly on SIGINT or SIGTERM.
 */
export async function serve(options: ServeOptions): Promise<number> {
  const logger = createLogger(options.logLevel);
  const semiSpace = options.semiSpace ?? DEFAULT_SEMI_SPACE_MIB;
  // The process is the server's own here; a program that embeds startServer keeps its heap as it is.
  const uncap =
    semiSpace > 0 && !semiSpaceGiven(process.execArgv, process.env['NODE_OPTIONS'])
      ? capYoungGeneration(semiSpace)
      : () => {};
  const server = await startServer({
    host: options.host,
    port: options.port,
    logger,
    noHistory: !options.history,
    nativeWrites: options.nativeWrites,
    ioUring: options.ioUring,
    sync: options.sync,
    ...(options.data !== undefined ? { dataDir: options.data } : {}),
    ...(options.limit !== undefined ? { limits: options.limit } : {}),
  });
  process.stdout.write(`listening on ${formatHost(server.host)}:${server.port}\n`);
  logger.info(
    { host: server.host, port: server.port, nativeWrites: server.nativeWrites, ioUring: server.ioUring },
    'listening',
  );
  if (!options.history) {
    logger.warn('no history: clients get no backlog and miss what is sent while they are away');
    if (options.data !== undefined) logger.warn({ data: options.data }, '--data is not used with --no-history');
  } else if (options.data === undefined)
    logger.warn('history is kept in memory only; use --data DIR to keep it across restarts');
  // Past the descriptor limit, libuv accepts each new connection and closes it at once,
  // without a word to anyone: a full server looks like a broken one. Said once, up front.
  const files = openFilesLimit();
  const open = openFiles();
  // Not for a few short (a limit set to maxConnections itself): for one that turns many away.
  if (files !== null && files - open < server.limits.maxConnections * 0.95) {
    const room = Math.max(0, files - open);
    logger.warn(
      { openFilesLimit: files, openFiles: open, maxConnections: server.limits.maxConnections },
      `this process may open at most ${files} files, ${open} open already: connections past about ${room} are closed as soon as they are accepted, without a log line. Raise the limit (ulimit -n, LimitNOFILE=) or lower maxConnections`,
    );
  }
  if (options.stats && !logger.isLevelEnabled('info')) {
    logger.warn({ logLevel: options.logLevel }, '--stats lines are logged at info, which this --log-level leaves out');
  }
  const stopStats = options.stats ? reportStats(logger, server, options.stats) : () => {};
  return new Promise((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'shutting down');
      stopStats();
      uncap();
      void server.close().then(() => resolve(0));
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

/**
 * Logs the server's counters, memory and event-loop delay periodically: what
 * an operator (or the soak script) watches. Never anything about content.
 */
function reportStats(logger: Logger, server: ConfabServer, seconds: number): () => void {
  const delay = monitorEventLoopDelay({ resolution: SAMPLE_MS });
  delay.enable();
  const timer = setInterval(() => {
    // Reading the RSS opens /proc/self/stat: out of descriptors (EMFILE) it
    // throws, and that crashed the server, every client cut off, at the next tick.
    let rss: number | null = null;
    try {
      rss = process.memoryUsage.rss();
    } catch {
      // left null in this line
    }
    logger.info(
      {
        ...server.stats,
        rssBytes: rss,
        heapUsedBytes: getHeapStatistics().used_heap_size,
        youngGenerationBytes: v8Heap.size(),
        // The histogram records whole sampling intervals; the delay is what exceeds one.
        eventLoopDelayMs: {
          p50: lag(delay.percentile(50)),
          p99: lag(delay.percentile(99)),
          max: lag(delay.max),
        },
      },
      'stats',
    );
    delay.reset();
  }, seconds * 1000);
  timer.unref();
  return () => {
    clearInterval(timer);
    delay.disable();
  };
}

const SAMPLE_MS = 10;
const lag = (ns: number): number => Math.max(0, Math.round((ns / 1e6 - SAMPLE_MS) * 100) / 100);

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
