// (b)'s receivers read by a C program (reader.c) instead of the load
// generator's JavaScript, for confab and Redis alike: the sockets are joined
// here, then handed to it.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const SOURCE = new URL('./reader.c', import.meta.url);

/**
 * Compiles reader.c (once per version of it, into the temporary directory)
 * and returns the program's path, or null with the reason when there is no
 * C compiler.
 */
export function buildReader() {
  const source = readFileSync(SOURCE);
  const out = join(tmpdir(), `confab-bench-reader-${createHash('sha256').update(source).digest('hex').slice(0, 12)}`);
  if (existsSync(out)) return { path: out };
  const cc = process.env.CC || 'cc';
  const r = spawnSync(cc, ['-O2', '-o', out, SOURCE.pathname], { encoding: 'utf8' });
  if (r.status !== 0) return { path: null, why: (r.error?.message ?? r.stderr).trim().split('\n')[0] };
  return { path: out };
}

/**
 * CLOCK_MONOTONIC, in ns, at this thread's `performance.now()` 0: what the
 * reader subtracts to share the load generator's clock. The best of a few
 * readings: the first in a process came a millisecond apart from the next,
 * and taken alone it put every latency of the run's first round off by that.
 */
function clockOriginNs() {
  let best = 0n;
  let gap = Infinity;
  for (let i = 0; i < 5; i++) {
    const before = process.hrtime.bigint();
    const now = performance.now();
    const after = process.hrtime.bigint();
    if (Number(after - before) < gap) {
      gap = Number(after - before);
      best = (before + after) / 2n - BigInt(Math.round(now * 1e6));
    }
  }
  return best;
}

/**
 * Starts the reader on `sockets` (which this process stops reading: Node
 * does that for a socket it hands to a child). `layout` is
 * `{ confab: deliverType }` or `{ redis: [recordBytes, payloadAt] }`.
 */
export async function startReader(path, sockets, layout) {
  const args =
    'confab' in layout
      ? ['confab', String(sockets.length), String(layout.confab)]
      : ['redis', String(sockets.length), String(layout.redis[0]), String(layout.redis[1])];
  const child = spawn(path, [...args, String(clockOriginNs())], { stdio: ['pipe', 'pipe', 'inherit', ...sockets] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  let failed = null;
  const fail = (err) => {
    failed = err;
    for (const w of waiting.splice(0)) w.reject(err);
  };
  lines.on('line', (line) => {
    const i = waiting.findIndex((w) => line.startsWith(w.word));
    if (i >= 0) waiting.splice(i, 1)[0].resolve(line);
  });
  child.on('error', fail);
  child.on('exit', (code, signal) => fail(new Error(`reader exited (${code ?? signal})`)));
  const next = (word) =>
    failed !== null
      ? Promise.reject(failed)
      : new Promise((resolve, reject) => waiting.push({ word, resolve, reject }));
  await next('ready');
  const report = join(tmpdir(), `confab-bench-reader-report-${process.pid}`);
  return {
    /** Counts from zero, from when it resolves: `until` then waits for `expected` deliveries. */
    async meter(expected) {
      // A meter that never reached its count must not take the next one's "reached".
      for (let i = waiting.length - 1; i >= 0; i--) if (waiting[i].word === 'reached') waiting.splice(i, 1);
      const metering = next('metering');
      this.reached = next('reached');
      this.reached.catch(() => {});
      child.stdin.write(`meter ${expected}\n`);
      await metering;
    },
    /** True once the meter's deliveries have all come, false after `ms`. */
    until(ms) {
      let timer;
      const late = new Promise((resolve) => (timer = setTimeout(() => resolve(false), ms)));
      return Promise.race([this.reached.then(() => true), late]).finally(() => clearTimeout(timer));
    },
    /** What the meter counted: `{ counted, perReceiver, latencies, stamps }` (ms). */
    async report() {
      const done = next('reported');
      child.stdin.write(`report ${report}\n`);
      await done;
      const b = readFileSync(report);
      rmSync(report, { force: true });
      const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
      const counted = Number(v.getBigInt64(0, true));
      const kept = Number(v.getBigInt64(8, true));
      const n = v.getInt32(16, true);
      let at = 20;
      const perReceiver = new Int32Array(b.buffer.slice(b.byteOffset + at, b.byteOffset + at + 4 * n));
      at += 4 * n;
      const latencies = new Float64Array(b.buffer.slice(b.byteOffset + at, b.byteOffset + at + 8 * kept));
      at += 8 * kept;
      const stamps = new Float64Array(b.buffer.slice(b.byteOffset + at, b.byteOffset + at + 8 * kept));
      return { counted, perReceiver, latencies, stamps };
    },
    pid: child.pid,
    /** Ends the reader; its copies of the sockets close with it. */
    close() {
      const exited = child.exitCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', r));
      child.stdin.end();
      return exited;
    },
  };
}
