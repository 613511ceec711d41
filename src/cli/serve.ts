import { createLogger, startServer } from '../server/index.js';

export interface ServeOptions {
  host: string;
  port: number;
  data?: string;
  logLevel: string;
  /** Overrides of the default limits (`--limit name=value`). */
  limit?: Record<string, number>;
}

/**
 * `confab serve`: starts the relay, prints `listening on HOST:PORT` on stdout
 * once it accepts connections, and shuts down cleanly on SIGINT or SIGTERM.
 */
export async function serve(options: ServeOptions): Promise<number> {
  const logger = createLogger(options.logLevel);
  const server = await startServer({
    host: options.host,
    port: options.port,
    logger,
    ...(options.data !== undefined ? { dataDir: options.data } : {}),
    ...(options.limit !== undefined ? { limits: options.limit } : {}),
  });
  process.stdout.write(`listening on ${formatHost(server.host)}:${server.port}\n`);
  logger.info({ host: server.host, port: server.port }, 'listening');
  return new Promise((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'shutting down');
      void server.close().then(() => resolve(0));
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
