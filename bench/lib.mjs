// Shared pieces of the benchmarks: a server in its own process, its CPU and
// memory from procfs, and a minimal raw client on the real codec.
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { newIdentity, signJoinProof } from '../dist/crypto/index.js';
import { encodeFrame, errorCodeName, FrameType, joinProofMessage, parseServerFrame } from '../dist/protocol/index.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const TICKS_PER_SECOND = 100; // USER_HZ on Linux

const servers = new Set();

/** CPUs the servers are started on (`--pin`), or null to leave them to the scheduler. */
let serverCpus = null;

/**
 * What must run however the benchmark ends: on exit, and on Ctrl-C or SIGTERM
 * (which exit). First, the servers it started are killed.
 */
const atExit = [
  () => {
    for (const c of servers) c.kill('SIGKILL');
  },
];
let atExitInstalled = false;

/** Adds `fn` to what runs at the end; with no `fn`, makes sure the servers are killed then. */
function onExit(fn) {
  if (fn !== undefined) atExit.push(fn);
  if (atExitInstalled) return;
  atExitInstalled = true;
  const runAll = () => {
    for (const f of atExit.splice(0)) f();
  };
  process.once('exit', runAll);
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      runAll();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
}

/**
 * Spawns a server (confab's, or a Redis started here) in a session of its
 * own, as a system service runs and as the Redis on 6379 does: where the
 * kernel groups CPU time by session (autogroup), a server in the load
 * generator's session would share the load generator's share of the machine
 * while Redis had one to itself. Being detached, it would outlive the
 * benchmark if killed by the terminal's Ctrl-C, so the benchmark kills what is
 * left when it exits or is interrupted.
 */
export function spawnServer(command, args, options) {
  const [file, argv] = serverCpus === null ? [command, args] : ['taskset', ['-c', serverCpus, command, ...args]];
  const child = spawn(file, argv, { ...options, detached: true });
  servers.add(child);
  child.once('exit', () => servers.delete(child));
  onExit();
  return child;
}

/**
 * `--pin`: the servers on `cpus`, this process (the load generator, and the
 * threads it starts later) on `loadGenerator`, and a server already running
 * (the Redis on 6379) moved to `cpus` until the benchmark ends, however it
 * ends. On a small machine the load generator needs a core of its own, and a
 * server otherwise spends a tenth to a quarter of each second at (b) runnable
 * but waiting for a CPU (doc/PERFORMANCE.md, "the eighth host again"). Needs
 * taskset (util-linux).
 */
export function pinCpus(cpus, loadGenerator, runningServers = []) {
  serverCpus = cpus;
  execFileSync('taskset', ['-a', '-p', '-c', loadGenerator, String(process.pid)], { stdio: 'ignore' });
  for (const pid of runningServers) {
    const mask = /:\s*([0-9a-f]+)\s*$/.exec(execFileSync('taskset', ['-p', String(pid)], { encoding: 'utf8' }))?.[1];
    execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
    if (mask !== undefined)
      onExit(() => {
        try {
          execFileSync('taskset', ['-a', '-p', mask, String(pid)], { stdio: 'ignore' });
        } catch {
          // it has gone
        }
      });
  }
}

/**
 * Starts `confab serve` on a free loopback port; resolves with its pid and port.
 * `nodeArgs` go to node itself (e.g. "--cpu-prof"); `cli` is another build's
 * dist/cli/main.js, for an A/B test of two versions; with
 * CONFAB_BENCH_SERVER_STDOUT set, the server's stdout (where --trace-gc and the
 * like write) is appended to that file.
 */
export function startServerProcess(extraArgs = [], nodeArgs = [], cli = CLI) {
  return new Promise((resolve, reject) => {
    const copy = process.env.CONFAB_BENCH_SERVER_STDOUT;
    const child = spawnServer(
      process.execPath,
      [...nodeArgs, cli, 'serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'warn', ...extraArgs],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let buf = '';
    child.stdout.setEncoding('utf8').on('data', (c) => {
      if (copy) appendFileSync(copy, c);
      buf += c;
      const m = /listening on [^:]+:(\d+)/.exec(buf);
      if (m) resolve({ child, pid: child.pid, port: Number(m[1]) });
    });
    child.on('exit', (code) => reject(new Error(`server exited early with ${code}`)));
  });
}

/** CPU seconds (user + system) a process has used so far, in clock ticks (10 ms). */
export function cpuSeconds(pid) {
  return statCpuSeconds(`/proc/${pid}/stat`);
}

/**
 * A reading of a process's CPU for `cpuSince`: its ticks (/proc/PID/stat, all
 * its threads, ended ones included) and each live thread's run time in
 * nanoseconds (/proc/PID/task/TID/schedstat), both from the kernel's own
 * accounting. At 10 ms a tick, a run of (a) that costs the server 0.27 s is
 * 27 ticks, and a single tick moved its ratio to Redis by 4%.
 */
export function cpuReading(pid) {
  const threads = new Map();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      threads.set(tid, Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]));
    } catch {
      // the thread ended meanwhile: the ticks count it
    }
  }
  return { ticks: cpuSeconds(pid), threads };
}

/**
 * CPU seconds used since `before` (a `cpuReading`): the threads' nanoseconds,
 * unless a thread has ended in between, or came and went (the two measures then
 * disagree by more than two ticks' rounding), when only the ticks know.
 */
export function cpuSince(pid, before) {
  const now = cpuReading(pid);
  const coarse = now.ticks - before.ticks;
  let ns = 0;
  for (const [tid, t] of now.threads) ns += t - (before.threads.get(tid) ?? 0);
  const fine = ns / 1e9;
  const ended = [...before.threads.keys()].some((tid) => !now.threads.has(tid));
  return ended || Math.abs(fine - coarse) > 2 / TICKS_PER_SECOND ? coarse : fine;
}

/** User + system seconds from a procfs `stat` file (a process's or one thread's). */
function statCpuSeconds(path) {
  const stat = readFileSync(path, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** CPU seconds of a process's main thread and of all its other threads together (live threads, from `cpuReading`). */
export function threadCpuSeconds(pid) {
  let main = 0;
  let others = 0;
  for (const [tid, ns] of cpuReading(pid).threads) {
    if (Number(tid) === pid) main += ns / 1e9;
    else others += ns / 1e9;
  }
  return { main, others };
}

/** Seconds thread `tid` of `pid` has spent runnable but waiting for a CPU (schedstat's second field). */
export function waitingSeconds(pid, tid = pid) {
  return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
}

/** The whole machine's CPU time so far, busy and in all, in ticks (/proc/stat's first line). */
export function machineTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], total }; // idle and iowait are the 4th and 5th
}

/** Resident memory of a process, bytes. */
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) * 1024;
}

/**
 * One receive buffer for every socket of the load generator: Node reads each
 * socket into it in turn (`onread`) and the callback is done with it before
 * the next read, so 200,000 reads a second allocate nothing. With a fresh
 * buffer per read the load generator scavenged every 28 ms, and each
 * scavenge's worker threads took the server's core (doc/PERFORMANCE.md).
 */
export const sharedRead = { buffer: Buffer.alloc(256 * 1024) };

/**
 * Cuts reads into the shared buffer into records, in place, keeping a copy of
 * a record cut short until the rest comes (the buffer is reused by the next
 * read). `recordLength(buf, at)` is the length of the record at `at`, or -1
 * while too little of it has come to tell; `onRecord(buf, at, length)` gets
 * each whole one.
 */
export function recordReader(recordLength, onRecord) {
  let pending = null;
  return (read) => {
    const buf = pending === null ? read : Buffer.concat([pending, read]);
    let at = 0;
    for (let n; at < buf.length && (n = recordLength(buf, at)) >= 0 && buf.length - at >= n; at += n) {
      onRecord(buf, at, n);
    }
    pending = at === buf.length ? null : Buffer.from(buf.subarray(at));
  };
}

/** Length of the length-prefixed frame at `at`, prefix included, or -1 if its prefix is not all here. */
const frameLength = (buf, at) => (buf.length - at >= 4 ? 4 + buf.readUInt32BE(at) : -1);

/**
 * A raw protocol client: handshake, join, send, and a callback per frame.
 * No reconnects or bookkeeping, so the load generator costs little.
 */
export class RawClient {
  constructor(socket) {
    this.socket = socket;
    /** Called with each frame (from its type byte), a view of the shared read buffer: valid during the call only. */
    this.onFrame = () => {};
    this.handle = (buf, at, length) => this.onFrame(buf.subarray(at, at + length));
    this.onRead = recordReader(frameLength, (buf, at, length) => this.handle(buf, at + 4, length - 4));
    socket.on('error', () => {});
  }

  /** Connects and joins; `identity` keeps a nick's key across reconnects (the server binds nicks to keys). */
  static open(port, nick, room, identity = newIdentity()) {
    return new Promise((resolve, reject) => {
      let c = null;
      const socket = connect({
        host: '127.0.0.1',
        port,
        noDelay: true,
        onread: { ...sharedRead, callback: (n, buf) => void c?.onRead(buf.subarray(0, n)) },
      });
      c = new RawClient(socket);
      socket.once('error', reject);
      socket.once('connect', () => {
        c.onFrame = (f) => {
          if (f[0] === FrameType.WELCOME) {
            const { challenge } = parseServerFrame(f);
            const proof = signJoinProof(identity, joinProofMessage(challenge, room, nick));
            socket.write(encodeFrame({ type: 'join', rid: 1, room, nick, key: identity.publicKey, proof }));
          } else if (f[0] === FrameType.JOINED) {
            c.onFrame = () => {};
            resolve(c);
          } else if (f[0] === FrameType.ERROR) reject(new Error(`join failed for ${nick}`));
        };
        socket.write(encodeFrame({ type: 'hello', version: 1, agent: 'bench' }));
      });
    });
  }

  /**
   * From now on, parses the socket's bytes in place and calls
   * `onDeliver(buf, bodyAt)` for each DELIVER: no frame objects, the same
   * work per message as the Redis subscriber's parser (redis.mjs), so the
   * load generator costs the same for both servers.
   */
  rawDeliveries(onDeliver) {
    this.handle = (buf, at) => {
      if (buf[at] === FrameType.DELIVER) onDeliver(buf, at + deliverBodyOffset(buf, at));
    };
  }

  close() {
    this.socket.destroy();
  }
}

/** A payload of `size` bytes that starts with the time `at` (ms), which the receivers subtract from their clock. */
export function stamped(at, size) {
  const p = Buffer.alloc(size);
  p.writeDoubleBE(at, 0);
  return p;
}

/**
 * A confab sender on a raw client: `send(body)` sends a SEND, each with a
 * message id of its own (a repeated id is a resend, which the store drops),
 * and resolves when it is acknowledged, or rejects with the server's ERROR
 * for it (a refusal must not leave a sender waiting for ever).
 */
export async function confabSender(port, room, nick) {
  const c = await RawClient.open(port, nick, room);
  const waiting = new Map();
  let rid = 0;
  const mid = crypto.getRandomValues(new Uint8Array(16));
  const midView = new DataView(mid.buffer);
  const settle = (r, outcome) => {
    waiting.get(r)?.(outcome);
    waiting.delete(r);
  };
  c.onFrame = (f) => {
    if (f[0] === FrameType.ACK) settle(new DataView(f.buffer, f.byteOffset).getUint32(1), null);
    else if (f[0] === FrameType.ERROR) {
      const e = parseServerFrame(f);
      settle(e.rid, new Error(`SEND refused: ${errorCodeName(e.code)}: ${e.message}`));
    }
  };
  return {
    client: c,
    send(body) {
      rid++;
      midView.setUint32(12, rid);
      c.socket.write(encodeFrame({ type: 'send', rid, room, mid, body }));
      return new Promise((resolve, reject) => waiting.set(rid, (err) => (err === null ? resolve() : reject(err))));
    },
  };
}

/** Offset of the body in a DELIVER frame that starts (type byte) at `at` in `buf`, from that start. */
export function deliverBodyOffset(buf, at) {
  return 1 + 16 + 8 + 8 + 1 + buf[at + 1 + 16 + 8 + 8];
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function round(x, digits = 3) {
  return Number(x.toFixed(digits));
}
