import { ed25519PublicKey, ed25519Sign, ed25519Verify, sha512 } from './primitives.js';
import { secureRandom } from './random.js';
import type { Rng } from './random.js';

/** An Ed25519 identity: the secret seed and its public key. */
export interface Identity {
  readonly secretKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

export const PUBLIC_KEY_LEN = 32;
export const SIGNATURE_LEN = 64;

/** A new identity from 32 random bytes. */
export function newIdentity(rng: Rng = secureRandom): Identity {
  return identityFromSecret(rng(32));
}

/** The identity of a stored 32-byte secret seed. */
export function identityFromSecret(secretKey: Uint8Array): Identity {
  if (secretKey.length !== 32) throw new RangeError(`"secretKey" expected 32 bytes, got ${secretKey.length}`);
  return { secretKey, publicKey: ed25519PublicKey(secretKey) };
}

const JOIN_CONTEXT = new TextEncoder().encode('confab/join/v1');

/**
 * Signs a JOIN proof (its bytes are laid out by the protocol layer). Refuses
 * anything that does not start with the join context label, so this can never
 * be used to sign a message envelope or anything else.
 */
export function signJoinProof(identity: Identity, proof: Uint8Array): Uint8Array {
  if (proof.length < JOIN_CONTEXT.length || !JOIN_CONTEXT.every((b, i) => proof[i] === b)) {
    throw new RangeError('"proof" expected to start with the confab/join/v1 label');
  }
  return ed25519Sign(proof, identity.secretKey);
}

/** Strict Ed25519 verification (RFC 8032, `zip215: false`). */
export function verifySignature(publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array): boolean {
  return ed25519Verify(signature, message, publicKey);
}

// Signal's displayable fingerprint (libsignal `rust/protocol/src/fingerprint.rs`):
// H0 = SHA-512(0x0000 ‖ key ‖ id ‖ key), Hi = SHA-512(Hi-1 ‖ key), 5200 hashes in all;
// the first 30 bytes, in six 5-byte chunks, each read big-endian mod 100000.
const ITERATIONS = 5200;

/**
 * Signal's 30-digit displayable fingerprint of `key` with stable identifier
 * `id`. Exposed with both parameters so it can be checked against Signal's own
 * test vectors; confab calls it through `fingerprint`.
 */
export function displayableFingerprint(key: Uint8Array, id: Uint8Array, iterations = ITERATIONS): string {
  const first = new Uint8Array(2 + key.length + id.length + key.length);
  first.set(key, 2);
  first.set(id, 2 + key.length);
  first.set(key, 2 + key.length + id.length);
  let hash = sha512(first);
  const buf = new Uint8Array(64 + key.length);
  for (let i = 1; i < iterations; i++) {
    buf.set(hash, 0);
    buf.set(key, 64);
    hash = sha512(buf);
  }
  let digits = '';
  for (let chunk = 0; chunk < 6; chunk++) {
    let n = 0;
    for (let i = 0; i < 5; i++) n = n * 256 + (hash[chunk * 5 + i] ?? 0);
    digits += String(n % 100000).padStart(5, '0');
  }
  return digits;
}

const NO_ID = new Uint8Array(0);

/**
 * The 30-digit fingerprint of an Ed25519 public key: Signal's computation over
 * the 32-byte key, with an empty stable identifier (confab has no accounts; a
 * nick is not stable, the key is).
 */
export function fingerprint(publicKey: Uint8Array): string {
  return displayableFingerprint(publicKey, NO_ID);
}

/** Short form for display next to a nick: the first ten digits, `31415-92653`. */
export function shortFingerprint(publicKey: Uint8Array): string {
  const fp = fingerprint(publicKey);
  return `${fp.slice(0, 5)}-${fp.slice(5, 10)}`;
}

/**
 * The 60-digit safety number of two keys, as Signal shows it: both
 * fingerprints, the lower first, so both people see the same number.
 */
export function safetyNumber(a: Uint8Array, b: Uint8Array): string {
  const [x, y] = [fingerprint(a), fingerprint(b)].sort();
  return `${x}${y}`;
}

/** Groups of five digits for reading aloud. */
export function groupDigits(digits: string): string {
  return (digits.match(/.{1,5}/g) ?? []).join(' ');
}
