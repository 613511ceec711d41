/**
 * Error codes shared by the wire (ERROR frames), the server and the client.
 * Codes are stable: a number once given is never reused. doc/ERRORS.md lists them.
 */
export const ErrorCode = {
  /** A frame's payload does not match its type's layout. */
  BAD_FRAME: 1,
  /** The length prefix announces more than MAX_FRAME bytes (or zero). */
  FRAME_TOO_LARGE: 2,
  /** The frame type byte is not one this version defines. */
  UNKNOWN_FRAME_TYPE: 3,
  /** The peer speaks another protocol version. */
  UNSUPPORTED_VERSION: 4,
  /** A frame other than HELLO arrived before the handshake finished. */
  HANDSHAKE_REQUIRED: 5,
  /** The connection did not complete its handshake in time. */
  HANDSHAKE_TIMEOUT: 6,
  /** The stream ended in the middle of a frame. */
  TRUNCATED_FRAME: 7,
  /** A frame started but its remaining bytes did not arrive in time. */
  READ_TIMEOUT: 8,
  /** No traffic (not even a PONG) for longer than the heartbeat allows. */
  HEARTBEAT_TIMEOUT: 9,
  /** The nick is already used by another member of the room. */
  NICK_TAKEN: 10,
  /** The nick is empty, too long or has characters outside [A-Za-z0-9_.-]. */
  BAD_NICK: 11,
  /** The request names a room this connection has not joined. */
  NOT_IN_ROOM: 12,
  /** The connection is already in this room. */
  ALREADY_JOINED: 13,
  /** The connection is in as many rooms as it may be. */
  TOO_MANY_ROOMS: 14,
  /** The room has as many members as it may have. */
  ROOM_FULL: 15,
  /** The message body is larger than MAX_BODY. */
  BODY_TOO_LARGE: 16,
  /** The connection's send queue passed its cap: it was not reading. */
  SENDQ_EXCEEDED: 17,
  /** Too many messages too fast. Retry later. */
  RATE_LIMITED: 18,
  /** The server is shutting down. Reconnect later. */
  SERVER_SHUTDOWN: 19,
  /** Something failed inside the server. Retry. */
  INTERNAL: 20,
  /** The server holds as many connections as it may. Retry later. */
  TOO_MANY_CONNECTIONS: 21,
  /** The JOIN's signature does not prove possession of the announced key. */
  BAD_JOIN_PROOF: 22,
  /** The nick belongs to another key on this server (the first key to use it owns it). */
  NICK_OWNED: 23,
  /** The server could not store the message (disk full, read-only): not accepted. Retry later. */
  STORE_FAILED: 24,
} as const;

export type ErrorCodeName = keyof typeof ErrorCode;
export type ErrorCodeValue = (typeof ErrorCode)[ErrorCodeName];

const namesByValue = new Map<number, ErrorCodeName>(
  (Object.keys(ErrorCode) as ErrorCodeName[]).map((name) => [ErrorCode[name], name]),
);

/** The name of a numeric error code, or `UNKNOWN_<n>` for a code this version lacks. */
export function errorCodeName(code: number): string {
  return namesByValue.get(code) ?? `UNKNOWN_${code}`;
}

/**
 * Thrown by the codec for any input it can't accept. Callers branch on `code`,
 * never on the message text.
 */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  readonly code: ErrorCodeName;

  constructor(code: ErrorCodeName, message: string) {
    super(message);
    this.code = code;
  }
}
