import { errorCodeName } from '../protocol/index.js';
import type { ErrorCodeName } from '../protocol/index.js';

/** Errors that arise in the client itself rather than arriving from the server. */
export const ClientErrorCode = {
  /** The connection could not be made (refused, unreachable, timed out). */
  CONNECT_FAILED: 'CONNECT_FAILED',
  /** The connection dropped and the request could not be completed. */
  DISCONNECTED: 'DISCONNECTED',
  /**
   * A request or a message waits for its answer and the server, alive, has
   * answered nothing owed for 6 × its heartbeat: the connection is dropped
   * and made again.
   */
  ANSWER_TIMEOUT: 'ANSWER_TIMEOUT',
  /** The client was closed by its owner. */
  CLOSED: 'CLOSED',
  /** Too many unacknowledged messages are waiting. */
  OUTBOX_FULL: 'OUTBOX_FULL',
  /** The server sent something this client cannot parse. */
  PROTOCOL: 'PROTOCOL',
  /** A member's key changed and the change is not accepted yet: sending is blocked. */
  KEY_CHANGED: 'KEY_CHANGED',
  /** A call got an argument out of its range (a backlog, a message id). */
  BAD_ARGUMENT: 'BAD_ARGUMENT',
  /** The client could not write its state in its home (a full disk, no permission): kept in memory meanwhile. */
  SAVE_FAILED: 'SAVE_FAILED',
} as const;
export type ClientErrorCodeName = keyof typeof ClientErrorCode;

/** What went wrong, with a stable `code` to branch on. */
export class ClientError extends Error {
  override readonly name = 'ClientError';
  readonly code: ErrorCodeName | ClientErrorCodeName | `UNKNOWN_${number}`;
  /** The server closes the connection after a fatal error. */
  readonly fatal: boolean;

  constructor(code: ClientError['code'], message: string, fatal = false, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.fatal = fatal;
  }

  /** From an ERROR frame's numeric code. */
  static fromWire(code: number, message: string, fatal: boolean): ClientError {
    return new ClientError(errorCodeName(code) as ClientError['code'], message, fatal);
  }
}

/**
 * Reports each kind of a server's misbehaviour once, as a `PROTOCOL` error
 * event: a server sending thousands of such frames gets one line, not
 * thousands. The rest of each kind is handled (ignored, dropped) in silence.
 */
export class ReportOnce {
  private readonly reported = new Set<string>();
  private readonly report: (err: ClientError) => void;

  constructor(report: (err: ClientError) => void) {
    this.report = report;
  }

  protocol(kind: string, message: string): void {
    if (this.reported.has(kind)) return;
    this.reported.add(kind);
    this.report(new ClientError('PROTOCOL', message));
  }
}
