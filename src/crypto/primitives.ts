/**
 * The primitives confab uses, in one place, each configured the one way we use
 * it. Everything else in `crypto/` goes through these; the vector tests
 * (RFC 8439, draft-irtf-cfrg-xchacha, RFC 8032, RFC 5869, Wycheproof) check them.
 */
import { chacha20poly1305, xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { ed25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';

/** XChaCha20-Poly1305 seal: ciphertext ‖ 16-byte tag. AAD goes to the constructor (noble's API). */
export function xchachaSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
}

/** XChaCha20-Poly1305 open. @throws Error when the tag does not verify. */
export function xchachaOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array {
  return xchacha20poly1305(key, nonce, aad).decrypt(sealed);
}

/** ChaCha20-Poly1305 (RFC 8439), the construction XChaCha extends; kept for its vectors. */
export function chachaSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  return chacha20poly1305(key, nonce, aad).encrypt(plaintext);
}

export function chachaOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array {
  return chacha20poly1305(key, nonce, aad).decrypt(sealed);
}

/** HKDF-SHA256 (RFC 5869): extract then expand. */
export function hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  return hkdf(sha256, ikm, salt, info, length);
}

export { sha256, sha512 };

/** Ed25519 public key of a 32-byte secret seed. */
export function ed25519PublicKey(secretKey: Uint8Array): Uint8Array {
  return ed25519.getPublicKey(secretKey);
}

/** Ed25519 signature (RFC 8032). Only the secret is taken: the public key is derived, never passed in. */
export function ed25519Sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return ed25519.sign(message, secretKey);
}

/**
 * Ed25519 verification in strict RFC 8032 mode (`zip215: false`): it rejects
 * non-canonical encodings, so every client, Node or browser, agrees on which
 * signatures are valid. Malformed input returns false, never throws.
 */
export function ed25519Verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}
