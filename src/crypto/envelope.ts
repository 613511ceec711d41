/**
 * The message envelope, phase 1 (doc/PROTOCOL.md §7). The server relays it as
 * opaque bytes; only holders of the room secret can open it, and only the
 * holder of the sender's identity key can have made it.
 *
 *   header (46 bytes, all of it AEAD associated data)
 *     version u8 = 1 | suite u8 = 1 | room_id [16] | epoch u32 | nonce [24]
 *   sealed = XChaCha20-Poly1305(message key, nonce, aad = header, inner) = ct ‖ tag[16]
 *   inner, a multiple of 256 bytes:
 *     type u8 | sender key [32] | seq u64 | sent_at u64 | prev_hash [32]
 *     | nick_len u8 | nick | body_len u16 | body | zero padding | sig [64]
 *   sig = Ed25519(sender, "confab/msg/v1" ‖ header ‖ inner without sig)
 */
import { EnvelopeError, RejectReason } from './errors.js';
import type { Identity } from './identity.js';
import type { RoomKeys } from './keys.js';
import { ed25519Sign, ed25519Verify, sha256, xchachaOpen, xchachaSeal } from './primitives.js';
import { secureRandom } from './random.js';
import type { Rng } from './random.js';

export const ENVELOPE_VERSION = 1;
/** XChaCha20-Poly1305 + Ed25519 + HKDF-SHA256. */
export const SUITE_V1 = 1;
export const HEADER_LEN = 46;
export const NONCE_LEN = 24;
export const TAG_LEN = 16;
/** Inner plaintexts are padded to a multiple of this, so sizes leak only coarsely. */
export const PAD_BUCKET = 256;
/** Largest message text, in UTF-8 bytes; the envelope then fits MAX_BODY. */
export const MAX_TEXT = 60_000;

/** What a message is. */
export const MessageType = {
  TEXT: 1,
  /** `/me waves` */
  ACTION: 2,
} as const;
export type MessageTypeValue = (typeof MessageType)[keyof typeof MessageType];

const SIG_CONTEXT = new TextEncoder().encode('confab/msg/v1');
const FIXED_INNER = 1 + 32 + 8 + 8 + 32 + 1 + 2; // everything but nick, body, padding and sig
const SIG_LEN = 64;
const TWO_32 = 0x1_0000_0000;

/** The signed contents of a message. */
export interface Message {
  type: MessageTypeValue;
  /** The sender's nick, signed, so the relay can't put words in someone else's mouth. */
  nick: string;
  /** The sender's own counter in this room: 1, 2, 3, ... */
  seq: number;
  /** Sender's clock, ms since the epoch (display only: clocks disagree). */
  sentAt: number;
  /** SHA-256 of this sender's previous envelope in the room, or 32 zero bytes. */
  prevHash: Uint8Array;
  body: Uint8Array;
}

/** An envelope that opened and verified. */
export interface OpenedMessage extends Message {
  senderKey: Uint8Array;
  /** SHA-256 of the whole envelope: the next message's `prevHash`. */
  hash: Uint8Array;
}

/** Seals and signs a message for the room. A fresh random nonce every time. */
export function sealEnvelope(keys: RoomKeys, sender: Identity, msg: Message, rng: Rng = secureRandom): Uint8Array {
  const nick = new TextEncoder().encode(msg.nick);
  if (nick.length > 255) throw new RangeError(`"nick" expected at most 255 bytes, got ${nick.length}`);
  if (msg.body.length > MAX_TEXT)
    throw new RangeError(`"body" expected at most ${MAX_TEXT} bytes, got ${msg.body.length}`);
  if (msg.prevHash.length !== 32) throw new RangeError(`"prevHash" expected 32 bytes, got ${msg.prevHash.length}`);
  if (!Number.isSafeInteger(msg.seq) || msg.seq < 1) throw new RangeError(`"seq" expected a positive integer`);

  const header = new Uint8Array(HEADER_LEN);
  const hv = new DataView(header.buffer);
  header[0] = ENVELOPE_VERSION;
  header[1] = SUITE_V1;
  header.set(keys.roomId, 2);
  hv.setUint32(18, keys.epoch);
  const nonce = rng(NONCE_LEN);
  if (nonce.length !== NONCE_LEN) throw new RangeError(`"rng" expected to return ${NONCE_LEN} bytes`);
  header.set(nonce, 22);

  const unpadded = FIXED_INNER + nick.length + msg.body.length + SIG_LEN;
  const inner = new Uint8Array(Math.ceil(unpadded / PAD_BUCKET) * PAD_BUCKET);
  const v = new DataView(inner.buffer);
  let p = 0;
  inner[p++] = msg.type;
  inner.set(sender.publicKey, p);
  p += 32;
  v.setUint32(p, Math.floor(msg.seq / TWO_32));
  v.setUint32(p + 4, msg.seq >>> 0);
  p += 8;
  v.setUint32(p, Math.floor(msg.sentAt / TWO_32));
  v.setUint32(p + 4, msg.sentAt >>> 0);
  p += 8;
  inner.set(msg.prevHash, p);
  p += 32;
  inner[p++] = nick.length;
  inner.set(nick, p);
  p += nick.length;
  v.setUint16(p, msg.body.length);
  p += 2;
  inner.set(msg.body, p);
  const sigAt = inner.length - SIG_LEN;
  inner.set(ed25519Sign(signedBytes(header, inner.subarray(0, sigAt)), sender.secretKey), sigAt);

  const sealed = xchachaSeal(keys.messageKey, nonce, header, inner);
  const out = new Uint8Array(HEADER_LEN + sealed.length);
  out.set(header, 0);
  out.set(sealed, HEADER_LEN);
  return out;
}

/**
 * Opens and verifies an envelope, in the order of DESIGN.md: version and suite,
 * room and epoch, AEAD, layout, signature. Pinning, replay and gap checks need
 * the receiver's state and happen in the client.
 * @throws EnvelopeError with the reason it was refused
 */
export function openEnvelope(keys: RoomKeys, envelope: Uint8Array): OpenedMessage {
  if (envelope.length < 2) throw new EnvelopeError(RejectReason.MALFORMED, 'envelope shorter than its header');
  if (envelope[0] !== ENVELOPE_VERSION) {
    throw new EnvelopeError(RejectReason.BAD_VERSION, `envelope version ${envelope[0]} is not one this client reads`);
  }
  if (envelope[1] !== SUITE_V1) {
    throw new EnvelopeError(RejectReason.BAD_SUITE, `cipher suite ${envelope[1]} is unknown; no fallback`);
  }
  if (envelope.length < HEADER_LEN + TAG_LEN + PAD_BUCKET) {
    throw new EnvelopeError(RejectReason.MALFORMED, `envelope of ${envelope.length} bytes is too short`);
  }
  const header = envelope.subarray(0, HEADER_LEN);
  if (!equalBytes(header.subarray(2, 18), keys.roomId)) {
    throw new EnvelopeError(RejectReason.WRONG_ROOM, 'envelope is for another room');
  }
  const epoch = new DataView(header.buffer, header.byteOffset).getUint32(18);
  if (epoch !== keys.epoch) throw new EnvelopeError(RejectReason.WRONG_EPOCH, `key epoch ${epoch} is not held`);

  let inner: Uint8Array;
  try {
    inner = xchachaOpen(keys.messageKey, header.subarray(22, 46), header, envelope.subarray(HEADER_LEN));
  } catch {
    throw new EnvelopeError(RejectReason.DECRYPT_FAILED, 'decryption failed: altered, or sealed with another key');
  }
  if (inner.length % PAD_BUCKET !== 0) throw new EnvelopeError(RejectReason.MALFORMED, 'inner not padded');

  const v = new DataView(inner.buffer, inner.byteOffset, inner.byteLength);
  let p = 0;
  const type = inner[p++] as number;
  const senderKey = inner.slice(p, p + 32);
  p += 32;
  const seq = v.getUint32(p) * TWO_32 + v.getUint32(p + 4);
  p += 8;
  const sentAt = v.getUint32(p) * TWO_32 + v.getUint32(p + 4);
  p += 8;
  const prevHash = inner.slice(p, p + 32);
  p += 32;
  const nickLen = inner[p++] as number;
  const sigAt = inner.length - SIG_LEN;
  if (p + nickLen + 2 > sigAt) throw new EnvelopeError(RejectReason.MALFORMED, 'nick overruns the envelope');
  const nickBytes = inner.subarray(p, p + nickLen);
  p += nickLen;
  const bodyLen = v.getUint16(p);
  p += 2;
  if (p + bodyLen > sigAt) throw new EnvelopeError(RejectReason.MALFORMED, 'body overruns the envelope');
  const body = inner.slice(p, p + bodyLen);

  if (!ed25519Verify(inner.subarray(sigAt), signedBytes(header, inner.subarray(0, sigAt)), senderKey)) {
    throw new EnvelopeError(RejectReason.BAD_SIGNATURE, 'signature does not verify');
  }
  // Checked after the signature: a signed envelope with junk in it is the sender's doing.
  if (type !== MessageType.TEXT && type !== MessageType.ACTION) {
    throw new EnvelopeError(RejectReason.MALFORMED, `message type ${type} is unknown`);
  }
  if (!Number.isSafeInteger(seq) || seq < 1 || !Number.isSafeInteger(sentAt)) {
    throw new EnvelopeError(RejectReason.MALFORMED, 'sequence or time out of range');
  }
  let nick: string;
  try {
    // ignoreBOM: the nick is the bytes signed; a leading BOM dropped would make
    // "\u{FEFF}alice" read as "alice" (the server's frames keep it too).
    nick = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(nickBytes);
  } catch {
    throw new EnvelopeError(RejectReason.MALFORMED, 'nick is not UTF-8');
  }
  return { type, senderKey, seq, sentAt, prevHash, nick, body, hash: sha256(envelope) };
}

function signedBytes(header: Uint8Array, innerWithoutSig: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIG_CONTEXT.length + header.length + innerWithoutSig.length);
  out.set(SIG_CONTEXT, 0);
  out.set(header, SIG_CONTEXT.length);
  out.set(innerWithoutSig, SIG_CONTEXT.length + header.length);
  return out;
}

/** Byte equality. Not constant-time: only used on public values (ids, keys, hashes). */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** SHA-256 of an envelope, base64url: how a sender's next message names it. */
export function envelopeHash(envelope: Uint8Array): string {
  return base64url(sha256(envelope));
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** base64url without padding (pure; no Buffer here). */
export function base64url(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = ((bytes[i] ?? 0) << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((bytes.length - i) * 8) / 6));
    for (let c = 0; c < chars; c++) out += B64[(n >> (18 - 6 * c)) & 63];
  }
  return out;
}

/** The `prevHash` of a sender's first message. */
export const NO_PREVIOUS: Uint8Array = new Uint8Array(32);
