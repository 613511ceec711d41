/**
 * End-to-end cryptography, pure (no I/O, no `node:` imports), built only on
 * @noble/ciphers, @noble/curves and @noble/hashes. See doc/SECURITY.md.
 */
export { newRoomSecret, roomIdFromSecret, ROOM_ID_BYTES, ROOM_SECRET_LEN } from './room.js';
export { messageKey, roomKeys } from './keys.js';
export type { RoomKeys } from './keys.js';
export {
  equalBytes,
  ENVELOPE_VERSION,
  HEADER_LEN,
  MAX_TEXT,
  MessageType,
  NO_PREVIOUS,
  openEnvelope,
  PAD_BUCKET,
  sealEnvelope,
  envelopeHash,
  SUITE_V1,
  base64url,
} from './envelope.js';
export type { Message, MessageTypeValue, OpenedMessage } from './envelope.js';
export {
  displayableFingerprint,
  fingerprint,
  groupDigits,
  identityFromSecret,
  newIdentity,
  PUBLIC_KEY_LEN,
  safetyNumber,
  shortFingerprint,
  signJoinProof,
  SIGNATURE_LEN,
  verifySignature,
} from './identity.js';
export type { Identity } from './identity.js';
export { EnvelopeError, RejectReason } from './errors.js';
export type { RejectReasonValue } from './errors.js';
export { secureRandom } from './random.js';
export type { Rng } from './random.js';
