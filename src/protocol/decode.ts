import { Reader, readU32 } from './bytes.js';
import { ProtocolError } from './errors.js';
import { FrameType, HELLO_MAGIC, PROTOCOL_VERSION } from './frames.js';
import type { ClientFrame, DeliverFrame, ErrorFrame, MemberInfo, PingFrame, PongFrame, ServerFrame } from './frames.js';
import {
  CHALLENGE_LEN,
  KEY_LEN,
  LENGTH_PREFIX,
  MAX_AGENT,
  MAX_ERROR_TEXT,
  MAX_FRAME,
  MAX_NICK,
  MEMBERS_PER_FRAME,
  MSG_ID_LEN,
  NUMBERING_LEN,
  ROOM_ID_LEN,
  SIG_LEN,
} from './limits.js';

/**
 * Incremental frame splitter: feed it bytes in any split, get whole frames
 * (type byte + payload) back. It checks each announced length against `maxFrame`
 * before it allocates anything for that frame, and never holds more than one
 * partial frame.
 */
export class FrameDecoder {
  private readonly maxFrame: number;
  // The length prefix as it arrives, in a number rather than a 4-byte array:
  // one allocation fewer per connection, and servers hold tens of thousands.
  private headerValue = 0;
  private headerFilled = 0;
  private partial: Uint8Array | null = null;
  private partialFilled = 0;
  private failure: ProtocolError | null = null;

  constructor(maxFrame: number = MAX_FRAME) {
    this.maxFrame = maxFrame;
  }

  /** True while bytes of an unfinished frame are held. */
  get midFrame(): boolean {
    return this.headerFilled > 0 || this.partial !== null;
  }

  /** The type byte of the unfinished frame held, once it has arrived; else null. */
  get partialType(): number | null {
    return this.partial !== null && this.partialFilled > 0 ? (this.partial[0] ?? null) : null;
  }

  /**
   * The error a bad length prefix raised after the frames the last `push`
   * returned, or null. Those frames came first on the stream, so the reader
   * handles them before it acts on this; nothing after it can be read.
   */
  get error(): ProtocolError | null {
    return this.failure;
  }

  /**
   * Splits `chunk` into frames. Frames that lie whole inside `chunk` are views
   * into it (no copy): copy what must outlive the chunk. A bad length prefix
   * after whole frames returns those frames and sets `error`.
   * @throws ProtocolError `FRAME_TOO_LARGE` for a length of 0 or above `maxFrame` with no frame before it in `chunk`.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.failure !== null) throw new ProtocolError('BAD_FRAME', 'decoder used after an error');
    const frames: Uint8Array[] = [];
    let pos = 0;
    const end = chunk.length;
    while (pos < end) {
      if (this.partial !== null) {
        const take = Math.min(this.partial.length - this.partialFilled, end - pos);
        this.partial.set(chunk.subarray(pos, pos + take), this.partialFilled);
        this.partialFilled += take;
        pos += take;
        if (this.partialFilled === this.partial.length) {
          frames.push(this.partial);
          this.partial = null;
          this.partialFilled = 0;
        }
        continue;
      }
      let length: number;
      if (this.headerFilled === 0 && end - pos >= LENGTH_PREFIX) {
        length = readU32(chunk, pos);
        pos += LENGTH_PREFIX;
      } else {
        while (this.headerFilled < LENGTH_PREFIX && pos < end) {
          this.headerValue = this.headerValue * 256 + (chunk[pos++] ?? 0);
          this.headerFilled++;
        }
        if (this.headerFilled < LENGTH_PREFIX) break;
        length = this.headerValue;
        this.headerFilled = 0;
        this.headerValue = 0;
      }
      const bad = this.checkLength(length);
      if (bad !== null) {
        this.failure = bad;
        if (frames.length === 0) throw bad;
        return frames;
      }
      if (end - pos >= length) {
        frames.push(chunk.subarray(pos, pos + length));
        pos += length;
      } else {
        this.partial = new Uint8Array(length);
        this.partialFilled = end - pos;
        this.partial.set(chunk.subarray(pos, end));
        pos = end;
      }
    }
    return frames;
  }

  /**
   * Call at end of stream.
   * @throws ProtocolError `TRUNCATED_FRAME` if it ended inside a frame.
   */
  finish(): void {
    if (this.midFrame) {
      const have = this.partial !== null ? this.partialFilled : this.headerFilled;
      const want = this.partial !== null ? this.partial.length : LENGTH_PREFIX;
      throw new ProtocolError('TRUNCATED_FRAME', `stream ended inside a frame (${have} of ${want} bytes)`);
    }
  }

  private checkLength(length: number): ProtocolError | null {
    if (length !== 0 && length <= this.maxFrame) return null;
    return new ProtocolError(
      'FRAME_TOO_LARGE',
      length === 0
        ? 'frame length 0 (a frame holds at least its type byte)'
        : `frame of ${length} bytes announced; the limit is ${this.maxFrame}`,
    );
  }
}

/**
 * Parses a frame a client sent (as returned by `FrameDecoder.push`).
 * @throws ProtocolError `UNKNOWN_FRAME_TYPE`, `UNSUPPORTED_VERSION` or `BAD_FRAME`.
 */
export function parseClientFrame(frame: Uint8Array): ClientFrame {
  const type = frame[0];
  const r = new Reader(frame.subarray(1), frameName(type));
  let out: ClientFrame;
  switch (type) {
    case FrameType.HELLO: {
      const magic = r.raw(HELLO_MAGIC.length, 'magic');
      if (!magic.every((b, i) => b === HELLO_MAGIC[i])) {
        throw new ProtocolError('BAD_FRAME', 'HELLO: not a confab client (bad magic)');
      }
      const version = r.u16('version');
      if (version !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          'UNSUPPORTED_VERSION',
          `client speaks confab protocol v${version}; this server speaks v${PROTOCOL_VERSION}`,
        );
      }
      out = { type: 'hello', version, agent: r.text8('agent', MAX_AGENT) };
      break;
    }
    case FrameType.JOIN:
      out = {
        type: 'join',
        rid: r.u32('rid'),
        room: r.raw(ROOM_ID_LEN, 'room'),
        // Any length the field can hold: the server judges the nick (BAD_NICK),
        // so a bad one is a refused request, not a broken connection.
        nick: r.text8('nick', 255),
        key: r.raw(KEY_LEN, 'key'),
        proof: r.raw(SIG_LEN, 'proof'),
      };
      break;
    case FrameType.LEAVE:
      out = { type: 'leave', rid: r.u32('rid'), room: r.raw(ROOM_ID_LEN, 'room') };
      break;
    case FrameType.SEND:
      out = {
        type: 'send',
        rid: r.u32('rid'),
        room: r.raw(ROOM_ID_LEN, 'room'),
        mid: r.raw(MSG_ID_LEN, 'mid'),
        body: r.rest(),
      };
      break;
    case FrameType.FETCH:
      out = {
        type: 'fetch',
        rid: r.u32('rid'),
        room: r.raw(ROOM_ID_LEN, 'room'),
        after: r.u64('after'),
        limit: r.u16('limit'),
      };
      break;
    case FrameType.PING:
    case FrameType.PONG:
    case FrameType.ERROR:
      out = parseCommon(type, r);
      break;
    default:
      throw unknownType(type, 'client');
  }
  r.end();
  return out;
}

/**
 * Parses a frame a server sent.
 * @throws ProtocolError `UNKNOWN_FRAME_TYPE`, `UNSUPPORTED_VERSION` or `BAD_FRAME`.
 */
export function parseServerFrame(frame: Uint8Array): ServerFrame {
  const type = frame[0];
  const r = new Reader(frame.subarray(1), frameName(type));
  let out: ServerFrame;
  switch (type) {
    case FrameType.WELCOME: {
      const version = r.u16('version');
      if (version !== PROTOCOL_VERSION) {
        throw new ProtocolError(
          'UNSUPPORTED_VERSION',
          `server speaks confab protocol v${version}; this client speaks v${PROTOCOL_VERSION}`,
        );
      }
      out = {
        type: 'welcome',
        version,
        agent: r.text8('agent', MAX_AGENT),
        maxFrame: r.u32('maxFrame'),
        maxBody: r.u32('maxBody'),
        heartbeatMs: r.u32('heartbeatMs'),
        challenge: r.raw(CHALLENGE_LEN, 'challenge'),
        rateBurst: r.u32('rateBurst'),
        rateIntervalMs: r.u32('rateIntervalMs'),
      };
      break;
    }
    case FrameType.JOINED: {
      const rid = r.u32('rid');
      const room = r.raw(ROOM_ID_LEN, 'room');
      const nick = r.text8('nick', MAX_NICK);
      const seq = r.u64('seq');
      const numbering = r.raw(NUMBERING_LEN, 'numbering');
      out = { type: 'joined', rid, room, nick, seq, numbering, members: readMembers(r) };
      break;
    }
    case FrameType.MEMBER_LIST:
      out = { type: 'member-list', rid: r.u32('rid'), room: r.raw(ROOM_ID_LEN, 'room'), members: readMembers(r) };
      break;
    case FrameType.LEFT:
      out = { type: 'left', rid: r.u32('rid'), room: r.raw(ROOM_ID_LEN, 'room') };
      break;
    case FrameType.MEMBER_JOINED:
      out = {
        type: 'member-joined',
        room: r.raw(ROOM_ID_LEN, 'room'),
        nick: r.text8('nick', MAX_NICK),
        key: r.raw(KEY_LEN, 'key'),
      };
      break;
    case FrameType.MEMBER_LEFT:
      out = {
        type: 'member-left',
        room: r.raw(ROOM_ID_LEN, 'room'),
        nick: r.text8('nick', MAX_NICK),
        reason: r.u8('reason'),
      };
      break;
    case FrameType.DELIVER:
      out = { type: 'deliver', ...readMessage(r) };
      break;
    case FrameType.HISTORY: {
      const rid = r.u32('rid');
      out = { type: 'history', rid, ...readMessage(r) };
      break;
    }
    case FrameType.FETCHED:
      out = {
        type: 'fetched',
        rid: r.u32('rid'),
        room: r.raw(ROOM_ID_LEN, 'room'),
        oldest: r.u64('oldest'),
        latest: r.u64('latest'),
        count: r.u16('count'),
      };
      break;
    case FrameType.ACK:
      out = {
        type: 'ack',
        rid: r.u32('rid'),
        room: r.raw(ROOM_ID_LEN, 'room'),
        seq: r.u64('seq'),
        ts: r.u64('ts'),
      };
      break;
    case FrameType.PING:
    case FrameType.PONG:
    case FrameType.ERROR:
      out = parseCommon(type, r);
      break;
    default:
      throw unknownType(type, 'server');
  }
  r.end();
  return out;
}

/** The fields DELIVER and HISTORY share: room, seq, ts, nick, body. */
function readMessage(r: Reader): Omit<DeliverFrame, 'type'> {
  return {
    room: r.raw(ROOM_ID_LEN, 'room'),
    seq: r.u64('seq'),
    ts: r.u64('ts'),
    nick: r.text8('nick', MAX_NICK),
    body: r.rest(),
  };
}

function readMembers(r: Reader): MemberInfo[] {
  const count = r.u16('count');
  if (count > MEMBERS_PER_FRAME) {
    throw new ProtocolError('BAD_FRAME', `${count} members in one frame exceeds ${MEMBERS_PER_FRAME}`);
  }
  const members: MemberInfo[] = [];
  for (let i = 0; i < count; i++) members.push({ nick: r.text8('member', MAX_NICK), key: r.raw(KEY_LEN, 'key') });
  return members;
}

function parseCommon(type: number, r: Reader): PingFrame | PongFrame | ErrorFrame {
  if (type === FrameType.PING) return { type: 'ping', token: r.u32('token') };
  if (type === FrameType.PONG) return { type: 'pong', token: r.u32('token') };
  const rid = r.u32('rid');
  const code = r.u16('code');
  const flags = r.u8('flags');
  return { type: 'error', rid, code, fatal: (flags & 1) === 1, message: r.text16('message', MAX_ERROR_TEXT) };
}

function unknownType(type: number | undefined, from: string): ProtocolError {
  return new ProtocolError(
    'UNKNOWN_FRAME_TYPE',
    `frame type 0x${(type ?? 0).toString(16).padStart(2, '0')} is not one a ${from} sends in protocol v${PROTOCOL_VERSION}`,
  );
}

const typeNames = new Map<number, string>(Object.entries(FrameType).map(([k, v]) => [v, k]));

function frameName(type: number | undefined): string {
  return typeNames.get(type ?? -1) ?? 'frame';
}
