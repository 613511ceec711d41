/**
 * Protocol limits. Every size on the wire is bounded; see doc/LIMITS.md for the
 * table of limits, their defaults and the error code each one raises.
 */

/** Bytes in the frame length prefix. */
export const LENGTH_PREFIX = 4;

/**
 * Largest value the length prefix may announce (type byte + payload). The decoder
 * checks it before it allocates anything for the frame.
 */
export const MAX_FRAME = 64 * 1024;

/** Largest opaque message body a client may send (an encrypted envelope). */
export const MAX_BODY = 64_000;

/** Room ids are opaque 16-byte values that clients derive from the room secret. */
export const ROOM_ID_LEN = 16;

/** Client message ids are 16 random bytes: a resend with the same id is the same message. */
export const MSG_ID_LEN = 16;

/** Longest nick, in bytes (nicks are ASCII, see `NICK_PATTERN`). */
export const MAX_NICK = 24;

/**
 * Nicks are restricted to ASCII letters, digits and `_.-` so that look-alike
 * characters, control codes and bidi overrides can never be part of a name.
 */
export const NICK_PATTERN: RegExp = /^[A-Za-z0-9_.-]{1,24}$/;

/** Longest client or server software name in HELLO / WELCOME, in bytes. */
export const MAX_AGENT = 64;

/** Longest human-readable text in an ERROR frame, in bytes. */
export const MAX_ERROR_TEXT = 1024;

/** Most members in one room. */
export const MAX_ROOM_MEMBERS = 10_000;

/**
 * Most members listed in one JOINED or MEMBER_LIST frame: 1,000 × (1 + 24 + 32)
 * bytes stays under MAX_FRAME. Longer lists take several frames.
 */
export const MEMBERS_PER_FRAME = 1000;

/** Bytes in an identity public key (Ed25519). */
export const KEY_LEN = 32;

/** Bytes in a signature (Ed25519). */
export const SIG_LEN = 64;

/** Bytes in the per-connection challenge a JOIN signs. */
export const CHALLENGE_LEN = 32;

/** Bytes in the id a JOINED gives the room's numbering (PROTOCOL.md §4.9). */
export const NUMBERING_LEN = 8;

/** Most rooms one connection may be in at once. */
export const MAX_ROOMS_PER_CONNECTION = 16;

/** Largest sequence number; beyond 2^53 JavaScript numbers lose precision. */
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;

/** Most messages one FETCH may ask for; servers may answer with fewer (by bytes). */
export const MAX_FETCH = 1000;

/** Most messages of backlog a client may ask for when it joins (`--backlog`). */
export const MAX_BACKLOG = 1000;

/** Messages of backlog a client asks for unless told otherwise. */
export const DEFAULT_BACKLOG = 100;

/**
 * The range of WELCOME's heartbeatMs a client takes, and a server may
 * announce: a client checks for silence every heartbeatMs and gives up after
 * three, so a server pinging less often than this would see its idle clients
 * leave; 0 would have them give up at once, and past 2^31 - 1 ms a Node timer
 * fires after 1 ms.
 */
export const MIN_HEARTBEAT_MS = 100;
export const MAX_HEARTBEAT_MS = 3_600_000;
