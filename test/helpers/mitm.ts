import { connect, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { FrameDecoder, FrameType } from '../../src/protocol/index.js';

/**
 * A man in the middle between clients and a real server, playing the
 * malicious relay or network: it sees every byte both ways, and a hook decides
 * what becomes of each server → client frame (pass, alter, drop, hold, add).
 */
export class Mitm {
  readonly server: Server;
  /** Every byte that crossed, both directions. */
  readonly captured: Buffer[] = [];
  /** Frames (type byte + payload) to forward in place of `frame`; default: itself. */
  onServerFrame: (frame: Uint8Array, toClient: Socket) => Uint8Array[] = (f) => [f];
  /** The client-facing side of each relayed connection. */
  readonly clients = new Set<Socket>();
  /**
   * Play a consistent liar: number the DELIVERs each client gets 1, 2, 3...
   * after its JOINED, whatever was dropped, added or repeated, so the
   * client's transport sees no gap and only the end-to-end checks can tell.
   * (Only for clients that don't send: their own messages would count too.)
   */
  renumber = false;
  /** While set, client → server bytes wait here: a server or network that stalls, then catches up at once. */
  private held: { chunk: Buffer; upstream: Socket }[] | null = null;
  private readonly numbering = new WeakMap<Socket, { seq: number }>();
  private readonly sockets = new Set<Socket>();

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(upstreamPort: number): Promise<Mitm> {
    const mitm = new Mitm(createServer());
    mitm.server.on('connection', (client) => mitm.relay(client, upstreamPort));
    await new Promise<void>((resolve) => mitm.server.listen(0, '127.0.0.1', resolve));
    return mitm;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Sends a frame to a client as if the server had. */
  inject(toClient: Socket, frame: Uint8Array): void {
    toClient.write(withLength(this.number(toClient, frame)));
  }

  private number(client: Socket, frame: Uint8Array): Uint8Array {
    if (!this.renumber) return frame;
    const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const n = this.numbering.get(client) ?? { seq: 0 };
    this.numbering.set(client, n);
    if (frame[0] === FrameType.JOINED) {
      const seqAt = 1 + 4 + 16 + 1 + (frame[1 + 4 + 16] as number);
      n.seq = Number(view.getBigUint64(seqAt));
    } else if (frame[0] === FrameType.DELIVER) {
      view.setBigUint64(1 + 16, BigInt(++n.seq));
    }
    return frame;
  }

  /** Holds what clients send from now until `release`. */
  hold(): void {
    this.held ??= [];
  }

  /** Passes on everything held, in order, at once. */
  release(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const { chunk, upstream } of held) upstream.write(chunk);
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private relay(client: Socket, upstreamPort: number): void {
    const upstream = connect({ host: '127.0.0.1', port: upstreamPort, noDelay: true });
    this.sockets.add(client).add(upstream);
    this.clients.add(client);
    const decoder = new FrameDecoder();
    client.on('data', (chunk: Buffer) => {
      this.captured.push(Buffer.from(chunk));
      if (this.held !== null) this.held.push({ chunk, upstream });
      else upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      this.captured.push(Buffer.from(chunk));
      for (const frame of decoder.push(chunk)) {
        for (const out of this.onServerFrame(frame.slice(), client)) {
          client.write(withLength(this.number(client, out.slice())));
        }
      }
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  }
}

function withLength(frame: Uint8Array): Buffer {
  const out = Buffer.alloc(4 + frame.length);
  out.writeUInt32BE(frame.length, 0);
  out.set(frame, 4);
  return out;
}
