import type { Socket } from 'node:net';
import { FrameDecoder } from '../protocol/index.js';
import type { TokenBucket } from '../protocol/index.js';
import type { Batcher, Flushable } from './batcher.js';
import type { Member } from './room.js';

export const ConnState = {
  HANDSHAKE: 0,
  OPEN: 1,
  /** To be closed once this turn's flush has written what it is owed; nothing more is read from it. */
  ENDING: 2,
  CLOSING: 3,
  CLOSED: 4,
} as const;
export type ConnStateValue = (typeof ConnState)[keyof typeof ConnState];

/** Buffers of one turn's output written as they are; more are copied into one. */
const MAX_PIECES = 64;
/**
 * How far past the send-queue cap a connection may be, for a moment, before it
 * is dropped at once: a reader is dropped when it stays past the cap (see
 * `behind`), or passes this many times it.
 */
export const SENDQ_BURST_FACTOR = 4;

/** A connection that was behind has read what was queued: its requests are read again. */
function resumeReading(this: Socket): void {
  if (!this.writableEnded) this.resume();
}

/**
 * One client connection: its socket, decoder, deadlines, rooms and output
 * queue. Kept small on purpose (no closures or timers of its own) because a
 * server holds tens of thousands of them; one sweep checks all deadlines.
 */
export class Connection implements Flushable {
  readonly id: number;
  readonly socket: Socket;
  readonly remote: string;
  readonly decoder: FrameDecoder;
  state: ConnStateValue = ConnState.HANDSHAKE;
  readonly connectedAt: number;
  lastReadAt: number;
  /** When the unfinished frame in the decoder started arriving, or 0. */
  frameStartedAt = 0;
  pingSentAt = 0;
  readonly memberships: Member[] = [];
  /** What this connection's JOINs must sign (sent in WELCOME). */
  readonly challenge: Uint8Array;
  /** Its message rate limit. */
  readonly bucket: TokenBucket;
  /** Its JOIN rate limit, made at its first JOIN. */
  joins: TokenBucket | null = null;
  /** Its budget of frames that carry nothing for a room (`noopBurst`), made at its first. */
  noops: TokenBucket | null = null;
  /** Bytes queued this turn in answer to its own frames (see `answer`). */
  answerBytes = 0;
  /** Sweeps in a row that found it past the send-queue cap (see `behind`). */
  behindSweeps = 0;
  /** Messages refused in a row for going too fast. */
  strikes = 0;
  /** FETCHes refused in a row for a page still on its way (counted apart, so neither resets the other). */
  fetchStrikes = 0;
  /** Refusing SENDs with this code until the client's next PING (see Relay.send), or null. */
  limited: 'RATE_LIMITED' | 'STORE_FAILED' | null = null;
  /** The socket's descriptor, for the native fan-out (-1: none, so its stream does the writing). */
  readonly fd: number;
  /** The peer's address as the per-address limits count it (`addressKey`: an IPv6 /64 is one). */
  readonly ip: string;
  /** Set when the send queue overflowed; the server drops it after this flush. */
  overflowed = false;
  private out: Uint8Array | Uint8Array[] | null = null;
  /** Bytes in `out`. */
  private outBytes = 0;
  /** Bytes it may hold past the cap while a JOIN's answer goes out (see `allowJoinAnswer`). */
  private allowance = 0;
  private readonly batcher: Batcher<Connection>;
  private readonly sendQueueBytes: number;
  private readonly onOverflow: (conn: Connection) => void;

  constructor(
    id: number,
    socket: Socket,
    now: number,
    maxFrame: number,
    sendQueueBytes: number,
    batcher: Batcher<Connection>,
    onOverflow: (conn: Connection) => void,
    challenge: Uint8Array,
    bucket: TokenBucket,
    fd: number,
    ip: string,
  ) {
    this.fd = fd;
    this.challenge = challenge;
    this.bucket = bucket;
    this.ip = ip;
    this.id = id;
    this.socket = socket;
    // An IPv6 address in brackets: `::1:39362` could be an address ending in :39362.
    const address = socket.remoteAddress ?? '?';
    this.remote = `${address.includes(':') ? `[${address}]` : address}:${socket.remotePort ?? 0}`;
    this.decoder = new FrameDecoder(maxFrame);
    this.connectedAt = now;
    this.lastReadAt = now;
    this.batcher = batcher;
    this.sendQueueBytes = sendQueueBytes;
    this.onOverflow = onOverflow;
  }

  /**
   * Queues bytes for the end of this turn. Returns false, and marks the
   * connection overflowed, when bytes from earlier turns that the kernel has not
   * taken yet already pass the send-queue cap: the peer is not reading.
   */
  enqueue(buf: Uint8Array): boolean {
    if (this.overflowed || this.state >= ConnState.CLOSING) return false;
    if (this.pastCap(SENDQ_BURST_FACTOR)) {
      this.markOverflowed();
      return false;
    }
    this.outBytes += buf.length;
    if (this.out === null) {
      this.out = buf;
      this.batcher.addConnection(this);
    } else if (Array.isArray(this.out)) {
      this.out.push(buf);
    } else {
      this.out = [this.out, buf];
    }
    return true;
  }

  /**
   * Queues an answer to one of its own frames (a PONG, a refusal, a page of
   * history), counted by `answersOverCap`. What its rooms send it (their
   * messages, joins and leaves, a member list) is queued with `enqueue` and not
   * counted: a LEAVE flushes the room's turn to the leaver, a burst of others'.
   */
  answer(buf: Uint8Array): void {
    if (this.enqueue(buf)) this.answerBytes += buf.length;
  }

  /** What this turn queued for the socket, now taken off the connection; null if nothing is to be written. */
  takeOutput(): Uint8Array | Uint8Array[] | null {
    const out = this.out;
    const bytes = this.outBytes;
    this.out = null;
    this.outBytes = 0;
    this.answerBytes = 0;
    if (out === null || this.overflowed || this.socket.destroyed) return null;
    // Many small frames (answers to a packet of requests) go as one buffer: each
    // would be an entry of its own in the stream's queue, ten times its size.
    if (Array.isArray(out) && out.length > MAX_PIECES) return Buffer.concat(out, bytes);
    return out;
  }

  /** Bytes on their way to the peer: queued this turn, and left in the stream from earlier turns. */
  queuedBytes(): number {
    return this.socket.writableLength + this.outBytes;
  }

  /**
   * Whether the answers to its own frames queued this turn pass the cap (and
   * any allowance), or with what the stream still holds pass four times it. A peer that sends
   * requests without reading the answers (a packet of PINGs, 7,000 to 64 KiB)
   * would otherwise have them all answered in one turn, before any check after
   * a write: 16 connections took the server to 2 GB. The room's messages to it
   * are not counted here: they are judged after the write, when the kernel has
   * taken what it can.
   */
  answersOverCap(): boolean {
    return (
      this.answerBytes > this.limit(1) || this.socket.writableLength + this.answerBytes > this.limit(SENDQ_BURST_FACTOR)
    );
  }

  /**
   * Whether the stream holds more than the cap (and any allowance) now. The
   * server's sweep drops a connection found so at two sweeps in a row: a reader
   * that falls that far behind and stays there. A burst the room sends at
   * once (ten messages of 60 KB from one member are 600 KB) can pass the cap
   * for a moment on a reader that reads, before its kernel has taken it;
   * dropping it then cut off every member on a slow link.
   */
  behind(): boolean {
    return this.pastCap(1);
  }

  /**
   * Reads its requests again if writing to it paused them (see `writeStream`)
   * and it is back within the cap: the stream's 'drain' comes only once it is
   * empty, which a busy room's reader that is a little behind may never be.
   */
  readAgain(): void {
    if (!this.socket.isPaused()) return;
    this.socket.off('drain', resumeReading);
    this.socket.resume();
  }

  flush(): void {
    const out = this.takeOutput();
    if (out !== null) this.writeStream(out);
  }

  /** Hands bytes to the socket's stream, which queues what the kernel won't take yet. */
  writeStream(out: Uint8Array | Uint8Array[]): void {
    if (!Array.isArray(out)) {
      this.socket.write(out);
    } else {
      // Several buffers this turn: cork so they leave in one writev.
      this.socket.cork();
      for (const buf of out) this.socket.write(buf);
      this.socket.uncork();
    }
    // What the kernel would not take stays in Node's buffer; past four times
    // the cap the peer is too far behind to catch up live.
    if (this.pastCap(SENDQ_BURST_FACTOR)) {
      this.markOverflowed();
    } else if (this.behind() && !this.socket.isPaused()) {
      // Past the cap: its requests wait in the kernel until it has read what is
      // queued, so what it asks adds nothing more here meanwhile (the sweep drops
      // it if it stays behind).
      this.socket.pause();
      this.socket.once('drain', resumeReading);
    }
  }

  /**
   * Lets the connection hold up to `bytes` past the send-queue cap until it
   * is back under the cap: a JOIN's answer (the member list of a big room,
   * up to 570 KB for 10,000 members) is queued at once, and a joiner whose
   * kernel buffer starts small would otherwise be cut off for it. Called once
   * the answer is queued. The larger of two allowances stands, not their sum,
   * so a client that joins big rooms and reads nothing holds at most the cap
   * plus one member list.
   */
  allowJoinAnswer(bytes: number): void {
    if (bytes > this.allowance) this.allowance = bytes;
  }

  /** `factor` times the cap, and any allowance. */
  private limit(factor: number): number {
    return this.sendQueueBytes * factor + this.allowance;
  }

  /** Whether what the stream holds is past `factor` times the cap, and any allowance. */
  private pastCap(factor: number): boolean {
    const held = this.socket.writableLength;
    if (held <= this.sendQueueBytes) {
      // Back under the cap with nothing of this turn's waiting (the answer is
      // written, not still queued): the allowance is spent.
      if (this.allowance !== 0 && this.out === null) this.allowance = 0;
      return false;
    }
    return held > this.limit(factor);
  }

  private markOverflowed(): void {
    this.overflowed = true;
    this.onOverflow(this);
  }

  /** Writes immediately, bypassing the batch (used for the last frame before close). */
  writeNow(buf: Uint8Array): void {
    this.flush();
    if (!this.socket.destroyed) this.socket.write(buf);
  }
}
