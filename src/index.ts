/**
 * confab as a library: the client core (`connect`) and the relay server
 * (`startServer`). The `confab` command is built on these.
 */
export * from './client/index.js';
export { startServer, DEFAULT_LIMITS } from './server/index.js';
export type { ConfabServer, ServerLimits, ServerOptions, RelayStats } from './server/index.js';
