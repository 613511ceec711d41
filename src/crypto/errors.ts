/**
 * Why an envelope was refused. Every rejection reaches the user with one of
 * these reasons; nothing is dropped silently.
 */
export const RejectReason = {
  /** The envelope's version byte is not one this client speaks. */
  BAD_VERSION: 'bad-version',
  /** The cipher suite byte is unknown. There is no fallback, and never plaintext. */
  BAD_SUITE: 'bad-suite',
  /** The envelope is too short or its inner layout is inconsistent. */
  MALFORMED: 'malformed',
  /** The header names another room. */
  WRONG_ROOM: 'wrong-room',
  /** The header names a key epoch this client does not hold. */
  WRONG_EPOCH: 'wrong-epoch',
  /** The AEAD tag did not verify: altered in transit, or sealed with another key. */
  DECRYPT_FAILED: 'decrypt-failed',
  /** The Ed25519 signature did not verify (strict RFC 8032). */
  BAD_SIGNATURE: 'bad-signature',
  /** Signed by one nick, relayed under another: a member posing as someone else. */
  NICK_MISMATCH: 'nick-mismatch',
  /** A sequence number already seen from this sender: a replay or a reordering. */
  REPLAY: 'replay',
  /** The sender's key differs from the one pinned for that nick. */
  KEY_CHANGED: 'key-changed',
} as const;
export type RejectReasonValue = (typeof RejectReason)[keyof typeof RejectReason];

/** Thrown by `openEnvelope`; `reason` is the stable part, `message` the human one. */
export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';
  readonly reason: RejectReasonValue;

  constructor(reason: RejectReasonValue, message: string) {
    super(message);
    this.reason = reason;
  }
}
