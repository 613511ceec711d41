import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { ConnectionWriter } from './batcher.js';

/**
 * Socket `fds[i]` gets `bufs[refs[k]]` for k from `ends[i-1]` (0 for the
 * first) up to `ends[i]`, in one send (sendmsg for several) that never
 * blocks; `results[i]` is the bytes the kernel took, or -errno. A buffer
 * shared by many sockets is listed once in `bufs`.
 */
export type WriteMany = (
  this: void,
  fds: Int32Array,
  count: number,
  bufs: Uint8Array[],
  refs: Int32Array,
  ends: Int32Array,
  results: Int32Array,
) => void;

/** The optional addon built from native/fanout.c at install time. */
export interface FanoutAddon {
  /** One `send` per socket. */
  writeMany: WriteMany;
  /**
   * The same through io_uring: one `io_uring_enter` per 256 sockets instead
   * of a `send` each. Falls back to `send` where `ringReady()` is false.
   */
  ringWriteMany: WriteMany;
  /** Whether this thread can use io_uring (it may be missing, disabled by sysctl, or blocked by seccomp). */
  ringReady(this: void): boolean;
}

function loadAddon(): FanoutAddon | null {
  try {
    // From src/server (tests) and dist/server alike, the package root is two up.
    const mod: unknown = createRequire(import.meta.url)('../../native/build/Release/confab_fanout.node');
    if (typeof mod === 'object' && mod !== null && 'writeMany' in mod && typeof mod.writeMany === 'function') {
      return mod as FanoutAddon;
    }
  } catch {
    // Not built (no compiler, Windows): Node's streams do the writing.
  }
  return null;
}

/** The native fan-out, or null when it wasn't built here. */
export const fanoutAddon: FanoutAddon | null = loadAddon();

/** The descriptor of a plain TCP socket, or -1 (not connected, closed, or a platform without one). */
export function socketFd(socket: Socket): number {
  // `_handle.fd` is libuv's descriptor; Node has no public accessor for it.
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

/** What the writer needs of a connection (Connection implements it). */
export interface DirectTarget {
  /** The socket's descriptor, or -1 to use the stream only. */
  readonly fd: number;
  readonly socket: Pick<Socket, 'writableLength' | 'writable'>;
  /** This turn's bytes, taken off the connection, or null. */
  takeOutput(): Uint8Array | Uint8Array[] | null;
  /** Hands bytes to the socket's stream. */
  writeStream(out: Uint8Array | Uint8Array[]): void;
}

/**
 * Writes a turn's output for many connections with one call into the addon.
 * A connection goes this way only while its Node stream holds nothing (so no
 * queued bytes can be overtaken); whatever the kernel does not take at once,
 * and every error, goes to the stream, which queues it, waits for the socket
 * to drain, and reports errors and closes as it always does.
 */
export class DirectWriter implements ConnectionWriter<DirectTarget> {
  private readonly addon: FanoutAddon;
  private readonly ring: boolean;
  private readonly write: WriteMany;
  private fds = new Int32Array(64);
  private ends = new Int32Array(64);
  private results = new Int32Array(64);
  private refs = new Int32Array(64);
  private refCount = 0;
  private readonly bufs: Uint8Array[] = [];
  // The buffer listed last: a room's members share one, so most lookups end here.
  private lastBuf: Uint8Array | null = null;
  // One entry per connection: these fill from 0 to `count` and are cleared,
  // never shrunk, after each call, so a turn's hundreds of writes allocate nothing here.
  private readonly batch: (DirectTarget | undefined)[] = [];
  private readonly outs: (Uint8Array | Uint8Array[] | undefined)[] = [];
  private count = 0;

  /** `ring`: write through io_uring (where the addon can; `send` otherwise). */
  constructor(addon: FanoutAddon, ring = false) {
    this.addon = addon;
    this.ring = ring;
    this.write = ring ? addon.ringWriteMany : addon.writeMany;
  }

  /** Whether the writes go through io_uring: asked for, and the ring works (false once it has failed). */
  get ioUring(): boolean {
    return this.ring && this.addon.ringReady();
  }

  /** Writes everything added since the last call. */
  finish(): void {
    const count = this.count;
    if (count === 0) return;
    let sent = true;
    try {
      this.write(this.fds, count, this.bufs, this.refs, this.ends, this.results);
    } catch {
      // It checks its arguments before sending anything: the streams take the whole turn.
      sent = false;
    }
    for (let i = 0; i < count; i++) {
      const conn = this.batch[i] as DirectTarget;
      const out = this.outs[i] as Uint8Array | Uint8Array[];
      const taken = sent ? (this.results[i] as number) : -1;
      // -errno (EAGAIN, or EPIPE and the like, which the stream then meets and reports).
      const rest = taken < 0 ? out : remainder(out, taken);
      if (rest !== null) conn.writeStream(rest);
    }
    this.batch.fill(undefined, 0, count);
    this.outs.fill(undefined, 0, count);
    this.bufs.length = 0;
    this.count = 0;
    this.refCount = 0;
    this.lastBuf = null;
  }

  /** Takes a connection's output for this turn's call, or writes it through its stream at once. */
  add(conn: DirectTarget): void {
    const out = conn.takeOutput();
    if (out === null) return;
    const socket = conn.socket;
    if (conn.fd < 0 || socket.writableLength > 0 || !socket.writable) {
      conn.writeStream(out);
      return;
    }
    const i = this.count++;
    if (i === this.fds.length) this.grow();
    this.batch[i] = conn;
    this.outs[i] = out;
    this.fds[i] = conn.fd;
    if (Array.isArray(out)) for (const b of out) this.ref(b);
    else this.ref(out);
    this.ends[i] = this.refCount;
  }

  private ref(buf: Uint8Array): void {
    if (buf !== this.lastBuf) {
      this.bufs.push(buf);
      this.lastBuf = buf;
    }
    if (this.refCount === this.refs.length) this.refs = grown(this.refs);
    this.refs[this.refCount++] = this.bufs.length - 1;
  }

  private grow(): void {
    this.fds = grown(this.fds);
    this.ends = grown(this.ends);
    this.results = grown(this.results);
  }
}

/** A copy of `a` with twice the room. */
function grown(a: Int32Array): Int32Array<ArrayBuffer> {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}

/** What is left of `out` after the kernel took `taken` bytes, or null if it took all. */
export function remainder(out: Uint8Array | Uint8Array[], taken: number): Uint8Array | Uint8Array[] | null {
  if (!Array.isArray(out)) return taken >= out.length ? null : out.subarray(taken);
  let skip = taken;
  for (let i = 0; i < out.length; i++) {
    const b = out[i] as Uint8Array;
    if (skip < b.length) {
      const rest = [b.subarray(skip), ...out.slice(i + 1)];
      return rest.length === 1 ? (rest[0] as Uint8Array) : rest;
    }
    skip -= b.length;
  }
  return null;
}
