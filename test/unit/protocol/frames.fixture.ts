import type { ClientFrame, Frame, ServerFrame } from '../../../src/protocol/index.js';

const room = new Uint8Array(16).map((_, i) => i + 1);
const mid = new Uint8Array(16).fill(0xab);
const key = new Uint8Array(32).fill(0x11);
const proof = new Uint8Array(64).fill(0x22);
const challenge = new Uint8Array(32).fill(0x33);

/** One frame of every type, with small but non-trivial fields. */
export const clientFrames: ClientFrame[] = [
  { type: 'hello', version: 1, agent: 'confab/test' },
  { type: 'join', rid: 7, room, nick: 'alice', key, proof },
  { type: 'leave', rid: 8, room },
  { type: 'send', rid: 9, room, mid, body: new Uint8Array([1, 2, 3, 0, 255]) },
  { type: 'send', rid: 10, room, mid, body: new Uint8Array(0) },
  { type: 'fetch', rid: 11, room, after: 2 ** 40, limit: 1000 },
  { type: 'ping', token: 0xdeadbeef },
  { type: 'pong', token: 1 },
  { type: 'error', rid: 0, code: 1, fatal: false, message: 'oops ✓' },
];

export const serverFrames: ServerFrame[] = [
  {
    type: 'welcome',
    version: 1,
    agent: 'confab-server/test',
    maxFrame: 65536,
    maxBody: 64000,
    heartbeatMs: 15000,
    challenge,
    rateBurst: 10,
    rateIntervalMs: 200,
  },
  {
    type: 'joined',
    rid: 7,
    room,
    nick: 'alice',
    seq: 2 ** 40 + 5,
    numbering: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]),
    members: [
      { nick: 'bob', key },
      { nick: 'carol', key: proof.subarray(0, 32) },
    ],
  },
  { type: 'member-list', rid: 7, room, members: [{ nick: 'dave', key }] },
  { type: 'joined', rid: 7, room, nick: 'alice', seq: 0, numbering: new Uint8Array(8), members: [] },
  { type: 'left', rid: 8, room },
  { type: 'member-joined', room, nick: 'dave', key },
  { type: 'member-left', room, nick: 'dave', reason: 1 },
  {
    type: 'deliver',
    room,
    seq: Number.MAX_SAFE_INTEGER,
    ts: 1_800_000_000_000,
    nick: 'bob',
    body: new Uint8Array([9, 9]),
  },
  { type: 'ack', rid: 9, room, seq: 3, ts: 1_800_000_000_001 },
  { type: 'history', rid: 11, room, seq: 4, ts: 1_800_000_000_002, nick: 'bob', body: new Uint8Array([7]) },
  { type: 'history', rid: 11, room, seq: 5, ts: 1_800_000_000_003, nick: 'carol', body: new Uint8Array(0) },
  { type: 'fetched', rid: 11, room, oldest: 4, latest: Number.MAX_SAFE_INTEGER, count: 2 },
  { type: 'ping', token: 5 },
  { type: 'pong', token: 5 },
  { type: 'error', rid: 9, code: 10, fatal: true, message: 'nick taken' },
];

export const allFrames: Frame[] = [...clientFrames, ...serverFrames];
