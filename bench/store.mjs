// The history store's commit at workload (b)'s pace: one message per
// transaction, 1,000 a second, through SqliteHistory.append exactly as the
// relay calls it, with the checkpoint thread the server runs. Prints, per run,
// the process's CPU per message above an idle loop of the same pacing, and the
// commit's wall time (p50, p99, p99.9, max, and how many took over 1 ms).
//
//   node bench/store.mjs [--messages 5000] [--rounds 3]
//
// Modes: `file` (as deployed: WAL, synchronous=NORMAL, checkpoints from a
// thread), `full` (--sync full), `memory` (no file), and `idle` (the pacing
// loop alone, subtracted from the others).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SqliteHistory } from '../dist/server/sqlite-history.js';
import { CHECKPOINT_MS } from '../dist/server/server.js';
import { median, percentile, round } from './lib.mjs';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '5000' },
    rounds: { type: 'string', default: '3' },
  },
});
const MESSAGES = Number(values.messages);
const MODES = ['idle', 'file', 'full', 'memory'];
const PRELOAD = 2000;

/** One run: `count` commits, one per timer tick of 1 ms, as a message a millisecond arrives at (b). */
async function run(mode, count) {
  const dir = mkdtempSync(join(tmpdir(), 'confab-store-'));
  const store =
    mode === 'idle'
      ? null
      : new SqliteHistory({
          path: mode === 'memory' ? ':memory:' : join(dir, 'history.db'),
          retention: { messages: 1_000_000, maxAgeMs: 30 * 86_400_000 },
          sync: mode === 'full' ? 'full' : 'normal',
          checkpointMs: mode === 'memory' ? 0 : CHECKPOINT_MS,
        });
  const room = randomBytes(16);
  const nick = Buffer.from('pacer');
  const body = randomBytes(200);
  let seq = 0;
  // One message per append: a restart (after an eviction) gives the number back.
  const seqs = { next: () => ++seq, release: () => void seq--, restart: () => void seq-- };
  const one = () => [{ room, ts: Date.now(), nick, mid: randomBytes(16), body }];
  // A room with some history, so the b-trees have depth, as a live server's do.
  for (let i = 0; i < PRELOAD && store !== null; i++) store.append(one(), seqs);
  // Let the checkpoint thread start before anything is measured.
  await new Promise((r) => setTimeout(r, 300));
  const walls = [];
  const cpu0 = process.cpuUsage();
  await new Promise((resolve) => {
    let done = 0;
    const tick = () => {
      if (done++ === count) return resolve();
      const batch = one();
      if (store !== null) {
        const t = performance.now();
        store.append(batch, seqs);
        walls.push(performance.now() - t);
      }
      setTimeout(tick, 1);
    };
    tick();
  });
  const cpu = process.cpuUsage(cpu0);
  store?.close();
  rmSync(dir, { recursive: true, force: true });
  walls.sort((a, b) => a - b);
  const at = (p) => (walls.length === 0 ? 0 : round(percentile(walls, p) * 1000, 0));
  return {
    cpuMicrosecondsPerMessage: (cpu.user + cpu.system) / count,
    systemMicrosecondsPerMessage: cpu.system / count,
    commitWallMicroseconds: { p50: at(50), p99: at(99), p999: at(99.9), max: at(100) },
    commitsOver1ms: walls.filter((w) => w > 1).length,
  };
}

const cpu = Object.fromEntries(MODES.map((m) => [m, []]));
for (let r = 1; r <= Number(values.rounds); r++) {
  // Reverse the order every other round, so no mode always runs on a warmer machine.
  for (const mode of r % 2 === 1 ? MODES : [...MODES].reverse()) {
    const result = await run(mode, MESSAGES);
    cpu[mode].push(result.cpuMicrosecondsPerMessage);
    console.log(
      JSON.stringify({
        workload: 'store',
        mode,
        round: r,
        messages: MESSAGES,
        ...result,
        cpuMicrosecondsPerMessage: round(result.cpuMicrosecondsPerMessage, 1),
        systemMicrosecondsPerMessage: round(result.systemMicrosecondsPerMessage, 1),
      }),
    );
  }
}
const idle = median(cpu.idle);
console.log(
  JSON.stringify({
    workload: 'store',
    rounds: Number(values.rounds),
    // What a commit adds to the server's CPU per message at (b), checkpoints included.
    commitCpuMicrosecondsPerMessage: Object.fromEntries(
      MODES.filter((m) => m !== 'idle').map((m) => [m, round(median(cpu[m]) - idle, 1)]),
    ),
  }),
);
