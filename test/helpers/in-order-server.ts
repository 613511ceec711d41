import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { encodeFrame, ErrorCode, FrameDecoder, parseClientFrame } from '../../src/protocol/index.js';
import type { ClientFrame } from '../../src/protocol/index.js';
import { joinedFor, welcomeFrame } from './net.js';

type JoinFrame = ClientFrame & { type: 'join' };

/** What a JOIN gets: taken, refused (NICK_TAKEN, NICK_OWNED), or held unanswered until `release`. */
export type JoinAnswer = 'take' | 'taken' | 'owned' | 'hold';

interface Connection {
  socket: Socket;
  /** Room id (hex) → nick. */
  rooms: Map<string, string>;
  queue: ClientFrame[];
  held: JoinFrame | null;
}

/** A scripted relay that answers JOIN and LEAVE only, in order, and can hold a JOIN on its way. */
export interface InOrderServer {
  port: number;
  /** What it was sent and answered, in order: `JOIN alice -> JOINED`, `LEAVE -> LEFT`. */
  log: string[];
  /** Whether a JOIN is held: the frames behind it wait. */
  holding(): boolean;
  /** How many frames wait behind held JOINs. */
  waiting(): number;
  /** Answers the held JOIN, then the frames behind it. */
  release(answer: Exclude<JoinAnswer, 'hold'>): void;
  /** Drops the newest connection, as a lost link would. */
  drop(): void;
  /** The newest connection's rooms, as `room hex prefix:nick`. */
  rooms(): string[];
  close(): void;
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

/**
 * Listens on a free port. Like the relay, it answers each connection's frames
 * in order and keeps its rooms (ALREADY_JOINED, NOT_IN_ROOM); `decide` picks
 * the answer to each other JOIN (numbered from 1 across connections).
 */
export async function inOrderServer(decide: (join: JoinFrame, n: number) => JoinAnswer): Promise<InOrderServer> {
  const log: string[] = [];
  const connections: Connection[] = [];
  let joins = 0;

  const answer = (c: Connection, f: JoinFrame, how: Exclude<JoinAnswer, 'hold'>): void => {
    if (how === 'take') {
      c.rooms.set(hex(f.room), f.nick);
      log.push(`JOIN ${f.nick} -> JOINED`);
      c.socket.write(joinedFor(f));
      return;
    }
    const code = how === 'owned' ? ErrorCode.NICK_OWNED : ErrorCode.NICK_TAKEN;
    log.push(`JOIN ${f.nick} -> ${how === 'owned' ? 'NICK_OWNED' : 'NICK_TAKEN'}`);
    c.socket.write(encodeFrame({ type: 'error', rid: f.rid, code, fatal: false, message: 'refused' }));
  };

  const run = (c: Connection): void => {
    while (c.held === null && c.queue.length > 0) {
      const f = c.queue.shift() as ClientFrame;
      if (f.type === 'join') {
        if (c.rooms.has(hex(f.room))) {
          log.push(`JOIN ${f.nick} -> ALREADY_JOINED`);
          const error = {
            type: 'error',
            rid: f.rid,
            code: ErrorCode.ALREADY_JOINED,
            fatal: false,
            message: 'in',
          } as const;
          c.socket.write(encodeFrame(error));
          continue;
        }
        const how = decide(f, ++joins);
        if (how === 'hold') c.held = f;
        else answer(c, f, how);
      } else if (f.type === 'leave') {
        const was = c.rooms.delete(hex(f.room));
        log.push(`LEAVE -> ${was ? 'LEFT' : 'NOT_IN_ROOM'}`);
        c.socket.write(
          was
            ? encodeFrame({ type: 'left', rid: f.rid, room: f.room })
            : encodeFrame({ type: 'error', rid: f.rid, code: ErrorCode.NOT_IN_ROOM, fatal: false, message: 'not in' }),
        );
      }
    }
  };

  const server = createServer((socket) => {
    const decoder = new FrameDecoder();
    const c: Connection = { socket, rooms: new Map(), queue: [], held: null };
    connections.push(c);
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame[0] === 0x01) socket.write(welcomeFrame({ agent: 'in-order' }));
        else {
          const f = parseClientFrame(frame);
          if (f.type === 'join' || f.type === 'leave') c.queue.push(f);
        }
      }
      run(c);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const newest = (): Connection | undefined => connections[connections.length - 1];
  return {
    port: address.port,
    log,
    holding: () => connections.some((c) => c.held !== null),
    waiting: () => connections.reduce((n, c) => n + (c.held === null ? 0 : c.queue.length), 0),
    release(how) {
      for (const c of connections) {
        if (c.held === null) continue;
        const f = c.held;
        c.held = null;
        answer(c, f, how);
        run(c);
      }
    },
    drop: () => newest()?.socket.destroy(),
    rooms: () => [...(newest()?.rooms ?? [])].map(([room, nick]) => `${room.slice(0, 4)}:${nick}`),
    close() {
      for (const c of connections) c.socket.destroy();
      server.close();
      server.unref();
    },
  };
}
