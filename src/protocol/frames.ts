/**
 * The frames of protocol v1 and their layouts (doc/PROTOCOL.md §3). Integers are
 * big-endian. `str8`/`str16` are bytes behind a 1- or 2-byte length.
 */

/** The protocol version this code speaks. */
export const PROTOCOL_VERSION = 1;

/** The TCP port servers listen on unless told otherwise. */
export const DEFAULT_PORT = 5050;

/** First bytes of every HELLO payload, so a stray client of another protocol is spotted at once. */
export const HELLO_MAGIC: Uint8Array = new Uint8Array([0x43, 0x4f, 0x4e, 0x46, 0x41, 0x42]); // "CONFAB"

/**
 * Frame type bytes. HELLO (0x01) and ERROR (0xff) keep their layouts in every
 * future version, so that peers of different versions can always say so.
 */
export const FrameType = {
  HELLO: 0x01,
  JOIN: 0x02,
  LEAVE: 0x03,
  SEND: 0x04,
  FETCH: 0x05,
  PING: 0x10,
  PONG: 0x11,
  WELCOME: 0x81,
  JOINED: 0x82,
  LEFT: 0x83,
  MEMBER_JOINED: 0x84,
  MEMBER_LEFT: 0x85,
  DELIVER: 0x86,
  ACK: 0x87,
  MEMBER_LIST: 0x88,
  HISTORY: 0x89,
  FETCHED: 0x8a,
  ERROR: 0xff,
} as const;

/** Why a member left a room, as told to the others. */
export const LeaveReason = {
  /** It sent LEAVE or closed its connection cleanly. */
  LEFT: 0,
  /** Its connection dropped, timed out, or was closed by the server. */
  DISCONNECTED: 1,
} as const;
export type LeaveReasonValue = (typeof LeaveReason)[keyof typeof LeaveReason];

/** Client → server: opens the connection and names the protocol version. */
export interface HelloFrame {
  type: 'hello';
  version: number;
  /** Client software, for logs (e.g. `confab/0.1.0`). */
  agent: string;
}

/** Client → server: join a room under a nick, proving it holds its identity key. */
export interface JoinFrame {
  type: 'join';
  /** Request id, echoed by JOINED or ERROR. */
  rid: number;
  room: Uint8Array;
  nick: string;
  /** Ed25519 public key (32 bytes). */
  key: Uint8Array;
  /** Ed25519 signature (64 bytes) of "confab/join/v1" ‖ challenge ‖ room ‖ nick. */
  proof: Uint8Array;
}

/** A member as the server knows it: nick and identity key. */
export interface MemberInfo {
  nick: string;
  key: Uint8Array;
}

/** Client → server: leave a room. */
export interface LeaveFrame {
  type: 'leave';
  rid: number;
  room: Uint8Array;
}

/** Client → server: a message for every other member of the room. */
export interface SendFrame {
  type: 'send';
  rid: number;
  room: Uint8Array;
  /** Client message id: 16 random bytes naming this message across resends. */
  mid: Uint8Array;
  /** Opaque to the server (an encrypted envelope). */
  body: Uint8Array;
}

/**
 * Client → server: the room's stored messages after `after`, oldest first, at
 * most `limit` of them (the server may send fewer). Answered by HISTORY frames
 * and one FETCHED.
 */
export interface FetchFrame {
  type: 'fetch';
  rid: number;
  room: Uint8Array;
  /** Messages with a sequence number above this one. */
  after: number;
  limit: number;
}

/** Either direction: liveness probe. */
export interface PingFrame {
  type: 'ping';
  token: number;
}

/** Either direction: answer to PING with the same token. */
export interface PongFrame {
  type: 'pong';
  token: number;
}

/** Server → client: handshake accepted; the server's limits. */
export interface WelcomeFrame {
  type: 'welcome';
  version: number;
  agent: string;
  maxFrame: number;
  maxBody: number;
  /** The server pings after this much silence and drops after three times it. */
  heartbeatMs: number;
  /** 32 random bytes the client signs in each JOIN on this connection. */
  challenge: Uint8Array;
  /** Message rate limit: this many SENDs at once... */
  rateBurst: number;
  /** ...then one more every this many ms. Faster SENDs get RATE_LIMITED. */
  rateIntervalMs: number;
}

/** Server → client: join accepted. */
export interface JoinedFrame {
  type: 'joined';
  rid: number;
  room: Uint8Array;
  nick: string;
  /** The room's latest sequence number (0 before its first message). */
  seq: number;
  /**
   * Names the numbering `seq` belongs to (`NUMBERING_LEN` random bytes): the
   * same for as long as the server counts the room on from the same start, new
   * when it starts again (it lost its history). A cursor is only good in the
   * numbering it was read in.
   */
  numbering: Uint8Array;
  /** The other members, in join order: the last part of the list (MEMBER_LIST frames carry the rest). */
  members: MemberInfo[];
}

/** Server → client: part of a long member list, sent before the JOINED that ends it. */
export interface MemberListFrame {
  type: 'member-list';
  rid: number;
  room: Uint8Array;
  members: MemberInfo[];
}

/** Server → client: leave done. */
export interface LeftFrame {
  type: 'left';
  rid: number;
  room: Uint8Array;
}

/** Server → client: someone joined a room you are in. */
export interface MemberJoinedFrame {
  type: 'member-joined';
  room: Uint8Array;
  nick: string;
  key: Uint8Array;
}

/** Server → client: someone left a room you are in. */
export interface MemberLeftFrame {
  type: 'member-left';
  room: Uint8Array;
  nick: string;
  reason: number;
}

/** Server → client: another member's message. */
export interface DeliverFrame {
  type: 'deliver';
  room: Uint8Array;
  /** The room's sequence number for this message, strictly rising. */
  seq: number;
  /** Server receive time, ms since the epoch. */
  ts: number;
  nick: string;
  body: Uint8Array;
}

/** Server → client: one stored message, in answer to FETCH `rid`. Same fields as DELIVER. */
export interface HistoryFrame {
  type: 'history';
  rid: number;
  room: Uint8Array;
  seq: number;
  ts: number;
  nick: string;
  body: Uint8Array;
}

/** Server → client: the end of a FETCH's answer, and where the room's history stands. */
export interface FetchedFrame {
  type: 'fetched';
  rid: number;
  room: Uint8Array;
  /** Lowest sequence number still stored (latest + 1 when nothing is). */
  oldest: number;
  /** The room's latest sequence number. */
  latest: number;
  /** HISTORY frames sent for this FETCH. */
  count: number;
}

/** Server → client: your SEND was accepted as `seq`. */
export interface AckFrame {
  type: 'ack';
  rid: number;
  room: Uint8Array;
  seq: number;
  ts: number;
}

/** Either direction: a typed error. `fatal` means the sender closes the connection next. */
export interface ErrorFrame {
  type: 'error';
  /** The request it answers, or 0. */
  rid: number;
  code: number;
  fatal: boolean;
  message: string;
}

export type ClientFrame =
  HelloFrame | JoinFrame | LeaveFrame | SendFrame | FetchFrame | PingFrame | PongFrame | ErrorFrame;
export type ServerFrame =
  | WelcomeFrame
  | JoinedFrame
  | MemberListFrame
  | LeftFrame
  | MemberJoinedFrame
  | MemberLeftFrame
  | DeliverFrame
  | HistoryFrame
  | FetchedFrame
  | AckFrame
  | PingFrame
  | PongFrame
  | ErrorFrame;
export type Frame = ClientFrame | ServerFrame;
