export { startServer } from './server.js';
export type { ConfabServer } from './server.js';
export { DEFAULT_HOST, DEFAULT_LIMITS } from './options.js';
export type { ServerLimits, ServerOptions } from './options.js';
export { createLogger } from './log.js';
export { SERVER_AGENT } from './relay.js';
export type { RelayStats } from './relay.js';
export { DEFAULT_PORT } from '../protocol/index.js';
