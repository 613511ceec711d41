import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { pino } from 'pino';
import { newIdentity, signJoinProof } from '../../src/crypto/index.js';
import {
  encodeFrame,
  FrameDecoder,
  joinProofMessage,
  parseServerFrame,
  PROTOCOL_VERSION,
} from '../../src/protocol/index.js';
import type { MemberInfo, ServerFrame, WelcomeFrame } from '../../src/protocol/index.js';
import { startServer } from '../../src/server/index.js';
import type { ConfabServer, ServerOptions } from '../../src/server/index.js';

/** The numbering a fake server's JOINEDs name: one, kept for ever, as a server's with its data. */
export const NUMBERING = new Uint8Array(8).fill(7);

/** A fake server's JOINED answering `join` (its rid and nick), in the one `NUMBERING`. */
export function joinedFor(
  join: { rid: number; nick: string; room?: Uint8Array },
  seq = 0,
  members: MemberInfo[] = [],
  room = join.room,
): Uint8Array {
  if (room === undefined) throw new Error('joinedFor: which room?');
  return encodeFrame({ type: 'joined', rid: join.rid, room, nick: join.nick, seq, numbering: NUMBERING, members });
}

/**
 * Limits for tests that are not about limits: every test client comes from
 * 127.0.0.1 and many send in bursts. The tests of the limits set their own.
 */
export const ROOMY_LIMITS = {
  maxConnectionsPerIp: 100_000,
  connectionsPerIpPerMinute: 1_000_000,
  newRowsPerIp: 1_000_000,
  messageBurst: 1_000_000,
  messageIntervalMs: 1,
};

/** A real server on a free port, with logs silenced unless CONFAB_TEST_LOG is set. */
export function testServer(options: ServerOptions = {}): Promise<ConfabServer> {
  return startServer({
    host: '127.0.0.1',
    port: 0,
    logger: pino({ level: process.env['CONFAB_TEST_LOG'] ?? 'silent' }),
    ...options,
    limits: { ...ROOMY_LIMITS, ...options.limits },
  });
}

/** Polls `check` until it returns true, or fails after `ms`. */
export async function until(check: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A raw TCP peer for tests that need to send exact bytes: it writes whatever it
 * is given and records every frame the server sends back, and whether the
 * server closed the connection.
 */
export class RawPeer {
  readonly socket: Socket;
  readonly frames: ServerFrame[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder();
  private waiters: (() => void)[] = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      for (const raw of this.decoder.push(chunk)) this.frames.push(parseServerFrame(raw));
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static open(port: number, host = '127.0.0.1'): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host, port, noDelay: true });
      socket.once('connect', () => resolve(new RawPeer(socket)));
      socket.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /**
   * The first frame from index `from` on that matches, waiting for it without
   * polling; undefined if the connection closes first.
   */
  async next(match: (f: ServerFrame) => boolean, from = 0, ms = 5000): Promise<ServerFrame | undefined> {
    const end = Date.now() + ms;
    for (;;) {
      const found = this.frames.slice(from).find(match);
      if (found !== undefined || this.closed) return found;
      if (Date.now() > end) throw new Error('timed out waiting for a frame');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  write(bytes: Uint8Array | string): void {
    this.socket.write(bytes);
  }

  hello(version = PROTOCOL_VERSION): void {
    this.write(encodeFrame({ type: 'hello', version, agent: 'raw-test' }));
  }

  /** Waits for the server to close the connection; returns the frames seen. */
  async closedByServer(ms = 5000): Promise<ServerFrame[]> {
    await until(() => this.closed, ms, 'server to close the connection');
    return this.frames;
  }

  /** The first ERROR frame received, if any. */
  error(): Extract<ServerFrame, { type: 'error' }> | undefined {
    return this.frames.find((f): f is Extract<ServerFrame, { type: 'error' }> => f.type === 'error');
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * Completes a real handshake and JOIN on a raw peer, signing the server's
 * challenge with a fresh identity, and waits for JOINED.
 */
export async function rawJoin(peer: RawPeer, room: Uint8Array, nick: string, identity = newIdentity()): Promise<void> {
  const proof = await joinProof(peer, identity, room, nick);
  peer.write(encodeFrame({ type: 'join', rid: 1, room, nick, key: identity.publicKey, proof }));
  await until(() => peer.frames.some((f) => f.type === 'joined' || f.type === 'error'));
}

/**
 * Says HELLO on a raw peer if it has not yet, waits for WELCOME, and returns
 * `signer`'s proof for joining `room` as `nick` over the server's challenge.
 */
export async function joinProof(
  peer: RawPeer,
  signer: ReturnType<typeof newIdentity>,
  room: Uint8Array,
  nick: string,
): Promise<Uint8Array> {
  if (!peer.frames.some((f) => f.type === 'welcome')) peer.hello();
  await until(() => peer.frames.some((f) => f.type === 'welcome'));
  const welcome = peer.frames.find((f) => f.type === 'welcome');
  if (welcome?.type !== 'welcome') throw new Error('no WELCOME');
  return signJoinProof(signer, joinProofMessage(welcome.challenge, room, nick));
}

/** The WELCOME a fake server sends: a default server's limits, a zero challenge, and `overrides`. */
export function welcomeFrame(overrides: Partial<Omit<WelcomeFrame, 'type'>> = {}): Uint8Array {
  return encodeFrame({
    type: 'welcome',
    version: PROTOCOL_VERSION,
    agent: 'fake',
    maxFrame: 65_536,
    maxBody: 64_000,
    heartbeatMs: 15_000,
    challenge: new Uint8Array(32),
    rateBurst: 10,
    rateIntervalMs: 200,
    ...overrides,
  });
}
