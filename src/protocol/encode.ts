import { utf8, Writer } from './bytes.js';
import { FrameType, HELLO_MAGIC } from './frames.js';
import type { Frame, MemberInfo } from './frames.js';
import { CHALLENGE_LEN, KEY_LEN, LENGTH_PREFIX, NUMBERING_LEN, ROOM_ID_LEN, SIG_LEN } from './limits.js';

/**
 * Encodes one frame, length prefix included. Pure: the same frame always gives
 * the same bytes. Field sizes are the caller's to respect; `validate*` helpers
 * and the decoder enforce them on the receiving side. A field too long for its
 * length prefix, or a frame that does not fill its planned size exactly, throws
 * a RangeError instead of going out malformed.
 */
export function encodeFrame(frame: Frame): Uint8Array {
  switch (frame.type) {
    case 'hello': {
      const agent = utf8(frame.agent);
      return start(FrameType.HELLO, HELLO_MAGIC.length + 2 + 1 + agent.length)
        .raw(HELLO_MAGIC)
        .u16(frame.version)
        .str8(agent)
        .end();
    }
    case 'join': {
      const nick = utf8(frame.nick);
      return start(FrameType.JOIN, 4 + ROOM_ID_LEN + 1 + nick.length + KEY_LEN + SIG_LEN)
        .u32(frame.rid)
        .raw(frame.room)
        .str8(nick)
        .raw(frame.key)
        .raw(frame.proof)
        .end();
    }
    case 'leave':
      return start(FrameType.LEAVE, 4 + ROOM_ID_LEN)
        .u32(frame.rid)
        .raw(frame.room)
        .end();
    case 'send':
      return start(FrameType.SEND, 4 + ROOM_ID_LEN + frame.mid.length + frame.body.length)
        .u32(frame.rid)
        .raw(frame.room)
        .raw(frame.mid)
        .raw(frame.body)
        .end();
    case 'fetch':
      return start(FrameType.FETCH, 4 + ROOM_ID_LEN + 8 + 2)
        .u32(frame.rid)
        .raw(frame.room)
        .u64(frame.after)
        .u16(frame.limit)
        .end();
    case 'ping':
      return start(FrameType.PING, 4).u32(frame.token).end();
    case 'pong':
      return start(FrameType.PONG, 4).u32(frame.token).end();
    case 'welcome': {
      const agent = utf8(frame.agent);
      return start(FrameType.WELCOME, 2 + 1 + agent.length + 4 + 4 + 4 + CHALLENGE_LEN + 4 + 4)
        .u16(frame.version)
        .str8(agent)
        .u32(frame.maxFrame)
        .u32(frame.maxBody)
        .u32(frame.heartbeatMs)
        .raw(frame.challenge)
        .u32(frame.rateBurst)
        .u32(frame.rateIntervalMs)
        .end();
    }
    case 'joined': {
      const nick = utf8(frame.nick);
      const members = encodeMembers(frame.members);
      return start(FrameType.JOINED, 4 + ROOM_ID_LEN + 1 + nick.length + 8 + NUMBERING_LEN + members.length)
        .u32(frame.rid)
        .raw(frame.room)
        .str8(nick)
        .u64(frame.seq)
        .raw(frame.numbering)
        .raw(members)
        .end();
    }
    case 'member-list': {
      const members = encodeMembers(frame.members);
      return start(FrameType.MEMBER_LIST, 4 + ROOM_ID_LEN + members.length)
        .u32(frame.rid)
        .raw(frame.room)
        .raw(members)
        .end();
    }
    case 'left':
      return start(FrameType.LEFT, 4 + ROOM_ID_LEN)
        .u32(frame.rid)
        .raw(frame.room)
        .end();
    case 'member-joined':
      return encodeMemberJoined(frame.room, utf8(frame.nick), frame.key);
    case 'member-left':
      return encodeMemberLeft(frame.room, utf8(frame.nick), frame.reason);
    case 'deliver':
      return encodeDeliver(frame.room, frame.seq, frame.ts, utf8(frame.nick), frame.body);
    case 'history':
      return encodeHistory(frame.rid, frame.room, frame.seq, frame.ts, utf8(frame.nick), frame.body);
    case 'fetched':
      return start(FrameType.FETCHED, 4 + ROOM_ID_LEN + 8 + 8 + 2)
        .u32(frame.rid)
        .raw(frame.room)
        .u64(frame.oldest)
        .u64(frame.latest)
        .u16(frame.count)
        .end();
    case 'ack':
      return start(FrameType.ACK, 4 + ROOM_ID_LEN + 8 + 8)
        .u32(frame.rid)
        .raw(frame.room)
        .u64(frame.seq)
        .u64(frame.ts)
        .end();
    case 'error': {
      const message = utf8(frame.message);
      return start(FrameType.ERROR, 4 + 2 + 1 + 2 + message.length)
        .u32(frame.rid)
        .u16(frame.code)
        .u8(frame.fatal ? 1 : 0)
        .str16(message)
        .end();
    }
  }
}

/**
 * DELIVER from pre-encoded parts. The relay keeps each member's nick as bytes,
 * so relaying a message is one allocation and two copies, whatever the fan-out.
 */
export function encodeDeliver(
  room: Uint8Array,
  seq: number,
  ts: number,
  nick: Uint8Array,
  body: Uint8Array,
): Uint8Array {
  return message(start(FrameType.DELIVER, MESSAGE_FIXED + nick.length + body.length), room, seq, ts, nick, body);
}

/** HISTORY from pre-encoded parts, as the store hands them over: DELIVER's fields behind a rid. */
export function encodeHistory(
  rid: number,
  room: Uint8Array,
  seq: number,
  ts: number,
  nick: Uint8Array,
  body: Uint8Array,
): Uint8Array {
  const w = start(FrameType.HISTORY, 4 + MESSAGE_FIXED + nick.length + body.length).u32(rid);
  return message(w, room, seq, ts, nick, body);
}

/** Room id, seq, ts and the nick's length byte: what DELIVER and HISTORY share besides nick and body. */
const MESSAGE_FIXED = ROOM_ID_LEN + 8 + 8 + 1;

function message(w: Writer, room: Uint8Array, seq: number, ts: number, nick: Uint8Array, body: Uint8Array): Uint8Array {
  return w.raw(room).u64(seq).u64(ts).str8(nick).raw(body).end();
}

/** MEMBER_JOINED from a pre-encoded nick. */
export function encodeMemberJoined(room: Uint8Array, nick: Uint8Array, key: Uint8Array): Uint8Array {
  return start(FrameType.MEMBER_JOINED, ROOM_ID_LEN + 1 + nick.length + KEY_LEN)
    .raw(room)
    .str8(nick)
    .raw(key)
    .end();
}

/** A member list: count u16, then (nick str8, key [32]) each. */
function encodeMembers(members: MemberInfo[]): Uint8Array {
  const nicks = members.map((m) => utf8(m.nick));
  let size = 2;
  for (const n of nicks) size += 1 + n.length + KEY_LEN;
  const w = new Writer(size).u16(members.length);
  members.forEach((m, i) => w.str8(nicks[i] as Uint8Array).raw(m.key));
  return w.end();
}

/** MEMBER_LEFT from a pre-encoded nick. */
export function encodeMemberLeft(room: Uint8Array, nick: Uint8Array, reason: number): Uint8Array {
  return start(FrameType.MEMBER_LEFT, ROOM_ID_LEN + 1 + nick.length + 1)
    .raw(room)
    .str8(nick)
    .u8(reason)
    .end();
}

function start(type: number, payloadLength: number): Writer {
  const length = 1 + payloadLength;
  return new Writer(LENGTH_PREFIX + length).u32(length).u8(type);
}
