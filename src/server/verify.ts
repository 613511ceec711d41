import { createPublicKey, verify } from 'node:crypto';
import { joinProofMessage } from '../protocol/index.js';
import type { JoinFrame } from '../protocol/index.js';

/**
 * Checks that a JOIN's proof is the announced key's Ed25519 signature over this
 * connection's challenge, the room and the nick. Node's verifier follows RFC
 * 8032 strictly, as the clients' `zip215: false` does. This authenticates who
 * joins; it decrypts nothing (the relay has no keys for that).
 */
export function verifyJoinProof(frame: JoinFrame, challenge: Uint8Array): boolean {
  try {
    const key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(frame.key).toString('base64url') },
      format: 'jwk',
    });
    return verify(null, joinProofMessage(challenge, frame.room, frame.nick), key, frame.proof);
  } catch {
    return false;
  }
}
