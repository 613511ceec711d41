import { randomBytes } from '@noble/hashes/utils.js';

/** A source of random bytes. Injected wherever randomness is used, so tests can fix it. */
export type Rng = (length: number) => Uint8Array;

/** The platform's CSPRNG (`crypto.getRandomValues`). */
export const secureRandom: Rng = (length) => randomBytes(length);
