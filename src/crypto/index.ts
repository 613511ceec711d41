/**
 * End-to-end cryptography, pure (no I/O, no `node:` imports), built only on
 * @noble/ciphers, @noble/curves and @noble/hashes.
 */
export { newRoomSecret, roomIdFromSecret, ROOM_ID_BYTES, ROOM_SECRET_LEN } from './room.js';
export { secureRandom } from './random.js';
export type { Rng } from './random.js';
