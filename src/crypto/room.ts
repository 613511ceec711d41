import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { secureRandom } from './random.js';
import type { Rng } from './random.js';

/** Bytes in a room secret (the part of an invite link after `#`). */
export const ROOM_SECRET_LEN = 32;
/** Bytes in a room id, all the server learns about a room. */
export const ROOM_ID_BYTES = 16;

// One HKDF label per purpose, never reused (DESIGN.md, "End-to-end encryption").
const SALT_V1 = utf8ToBytes('confab/v1');
const INFO_ROOM_ID = utf8ToBytes('room-id');

/** A new random room secret. */
export function newRoomSecret(rng: Rng = secureRandom): Uint8Array {
  const secret = rng(ROOM_SECRET_LEN);
  if (secret.length !== ROOM_SECRET_LEN) {
    throw new RangeError(`"rng" expected to return ${ROOM_SECRET_LEN} bytes, got ${secret.length}`);
  }
  return secret;
}

/**
 * The room id the server sees: HKDF-SHA256(secret, salt="confab/v1",
 * info="room-id"), first 16 bytes. One-way: it does not reveal the secret.
 */
export function roomIdFromSecret(secret: Uint8Array): Uint8Array {
  if (secret.length !== ROOM_SECRET_LEN) {
    throw new RangeError(`"secret" expected ${ROOM_SECRET_LEN} bytes, got ${secret.length}`);
  }
  return hkdf(sha256, secret, SALT_V1, INFO_ROOM_ID, ROOM_ID_BYTES);
}
