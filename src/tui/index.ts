export { runJoin, ExitCode } from './join.js';
export { GIVE_UP_MS } from './session.js';
export type { JoinIO, JoinOptions } from './join.js';
export { inert } from './sanitize.js';
export type { ChatEvent } from './events.js';
export { runId, runTrust, runVerify } from './keys.js';
export { DEFAULT_BACKLOG, isValidNick, MAX_BACKLOG } from '../client/index.js';
