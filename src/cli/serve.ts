import { monitorEventLoopDelay } from 'node:perf_hooks';
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
    const mem = process.memoryUsage();
    logger.info(
      {
        ...server.stats,
        rssBytes: mem.rss,
        heapUsedBytes: mem.heapUsed,
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
