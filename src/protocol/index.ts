/**
 * confab wire protocol v1, sans-I/O: a pure encoder, an incremental decoder,
 * frame types, limits and error codes. No `node:` imports: the browser client
 * reuses this folder as it is.
 */
export * from './clock.js';
export * from './decode.js';
export * from './encode.js';
export * from './errors.js';
export * from './frames.js';
export * from './limits.js';
export { utf8 } from './bytes.js';
export { joinProofMessage } from './join-proof.js';
export { TokenBucket } from './token-bucket.js';
