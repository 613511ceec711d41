import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { FrameDecoder, parseClientFrame } from '../../src/protocol/index.js';
import { joinedFor, welcomeFrame } from './net.js';

/** A frame of a type no server sends: a client that reads it stops reconnecting (PROTOCOL). */
export const UNREADABLE_FRAME = new Uint8Array([0, 0, 0, 1, 0x7f]);

/**
 * Listens on a free port as a scripted relay: WELCOME to each HELLO, every JOIN
 * taken (JOINED, seq 0, nobody else), and each SEND answered with `answer(rid)`.
 */
export async function sendAnswering(answer: (rid: number) => Uint8Array): Promise<{ port: number; close(): void }> {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    const decoder = new FrameDecoder();
    socket.on('data', (chunk: Buffer) => {
      for (const raw of decoder.push(chunk)) {
        const f = parseClientFrame(raw);
        if (f.type === 'hello') socket.write(welcomeFrame({ agent: 'scripted' }));
        else if (f.type === 'join') {
          socket.write(joinedFor(f));
        } else if (f.type === 'send') socket.write(answer(f.rid));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}
