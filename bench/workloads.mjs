// The relay's benchmark (issue 6): four workloads against `confab serve` in
// its own process, and (a) and (b) again against Redis pub/sub on the same
// machine, with the same payload. Prints one JSON object per line.
//
//   node bench/workloads.mjs [--only a,b,c,d,bi] [--rounds 5] [--receivers 200] [--warmup 4] [--no-redis] [--no-store-cost] [--detail] [--pin] [--reader c|js]
//
// confab runs as deployed, with its SQLite history in a fresh --data
// directory; in each round of (a) and (b) it runs once more with --no-history
// to price the store (--no-store-cost skips that). CONFAB_BENCH_STORE=none
// runs every workload with --no-history instead.
//
// (a) and (b) alternate confab and Redis for --rounds rounds (who goes first
// alternates too) and report the median ratio, each run measured after an
// unmeasured warm-up of the same traffic on the same connections (500
// messages for (a), --warmup S seconds for (b), 4 by default): a relay in
// service runs warm, and confab's JIT needs the first few hundred messages to
// compile its hot path, then goes on compiling on V8's own threads for 3-4 s
// of (b)'s traffic (doc/PERFORMANCE.md, "a fifteenth host").
// CONFAB_BENCH_SERVER_ARGS adds arguments
// to `confab serve`, e.g. "--no-native-writes" to price the native fan-out;
// CONFAB_BENCH_NODE_ARGS adds arguments to node, e.g. "--cpu-prof".
//
// (b)'s sender is a thread of its own (sender.mjs) that sends each message
// alone when it is due, so the messages reach every server the same way.
//
// (b)'s receivers, once joined, are read by reader.c (compiled on first use
// with the machine's cc), for both servers: at (b)'s 200,000 deliveries a
// second the load generator's JavaScript filled a core, and (b) measured
// mostly its queue. --reader js reads them in JavaScript, as (a), (c) and bi
// do; so does a machine without a C compiler (with a warning).
//
// --receivers N runs (b) (and bi) with N receivers instead of 200: with few,
// the cost of a message before its first recipient decides the ratios.
//
// `bi` (not run by default) is (b) with both servers connected at once and
// the sender switching between them every second (fanoutRateInterleaved),
// a closer comparison on a machine whose speed drifts between runs.
//
// --pin puts the servers on CPU 0 and the load generator on the others (a
// Redis already running is moved there for the run, and back after): the
// default leaves them to the scheduler.
//
// --detail adds, for (a) and (b), where the latency comes from (p90, p99.9,
// max; per message, when its first receiver heard it and how long until its
// last did; for (b), how late the sender let each message leave) and
// who used the CPU (the load generator, the reader, the server's main thread
// and its other threads, the whole machine) while it was measured, and how
// long the server's main thread and the reader waited for one.
//
// CONFAB_BENCH_AGAINST=sqlite|none compares confab with a second confab
// (`confab-b`, with that store and CONFAB_BENCH_B_SERVER_ARGS and
// CONFAB_BENCH_B_NODE_ARGS, and CONFAB_BENCH_B_CLI: another build's
// dist/cli/main.js) instead of Redis, in the same alternating rounds: an A/B
// test of one change, with the machine's drift shared out. Both get the same
// --limit options, so a build from before a limit's name existed (newRowsPerIp:
// before 2026-11-28) refuses to start ("server exited early with 2").
//
// The server's rate and per-address limits are raised for the benchmark's
// clients with explicit --limit options (all clients come from 127.0.0.1);
// the defaults are never changed.
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { FrameType } from '../dist/protocol/index.js';
import {
  confabSender,
  cpuReading,
  cpuSince,
  deliverBodyOffset,
  machineTicks,
  median,
  pinCpus,
  percentile,
  RawClient,
  round,
  rssBytes,
  stamped,
  startServerProcess,
  threadCpuSeconds,
  waitingSeconds,
} from './lib.mjs';
import { buildReader, startReader } from './reader.mjs';
import { findRedis, publisher, pushLayout, subscribe } from './redis.mjs';

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: 'a,b,c,d' },
    'no-redis': { type: 'boolean', default: false },
    'no-store-cost': { type: 'boolean', default: false },
    rounds: { type: 'string', default: '5' },
    receivers: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '4' },
    detail: { type: 'boolean', default: false },
    reader: { type: 'string', default: 'c' },
    pin: { type: 'boolean', default: false },
  },
});
const ONLY = new Set(values.only.split(','));
/** A count option's value; anything but a whole number of 1 or more stops the run. */
function count(name) {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} is a whole number, 1 or more`);
  return n;
}
const ROUNDS = count('rounds');
const B_RECEIVERS = count('receivers');
const WARMUP_SECONDS = count('warmup');
const DETAIL = values.detail;
if (values.reader !== 'c' && values.reader !== 'js') throw new Error('--reader is c or js');
// (b)'s receivers: read by reader.c where a C compiler is found, else by the load generator's JavaScript.
const READER = values.reader === 'c' ? buildReader() : { path: null, why: '--reader js' };
if (READER.path === null && values.reader === 'c') {
  console.error(`bench: (b)'s receivers read in JavaScript (${READER.why}); the load generator may then fill a core`);
}
const SIZE = 64;
const BENCH_LIMITS = [
  'maxConnectionsPerIp=1000000',
  'connectionsPerIpPerMinute=100000000',
  'newRowsPerIp=100000000',
  'messageBurst=1000000',
  'messageIntervalMs=1',
].flatMap((l) => ['--limit', l]);

const roomId = (n) => {
  const r = new Uint8Array(16);
  new DataView(r.buffer).setUint32(0, n + 1);
  return r;
};

const payload = (at) => stamped(at, SIZE);

/** Latency samples and delivery counts, shared by both systems' receivers. */
class Meter {
  /** `receivers`: how many receivers share `expected` equally, to count each one's deliveries. */
  constructor(expected, receivers = 0) {
    this.expected = expected;
    this.perReceiver = new Int32Array(receivers);
    this.latencies = new Float64Array(expected);
    // With --detail, which message each latency belongs to (its send stamp).
    this.stamps = DETAIL ? new Float64Array(expected) : null;
    this.count = 0;
    this.waiter = null;
  }
  deliver(buf, at, receiver = -1) {
    if (receiver >= 0 && receiver < this.perReceiver.length) this.perReceiver[receiver]++;
    const sent = buf.readDoubleBE(at);
    if (this.count < this.expected) {
      this.latencies[this.count] = performance.now() - sent;
      if (this.stamps !== null) this.stamps[this.count] = sent;
    }
    ++this.count;
    if (this.waiter !== null && this.count >= this.waiter.n) this.waiter.resolve();
  }
  /**
   * Deliveries missing and extra, receiver by receiver: each should have had
   * its share of `expected`. A total alone would let a duplicate hide a loss.
   */
  byReceiver() {
    const each = this.expected / this.perReceiver.length;
    let missing = 0;
    let extra = 0;
    for (const got of this.perReceiver) {
      if (got < each) missing += each - got;
      else extra += got - each;
    }
    return { missing, extra };
  }
  /** Takes what reader.c counted in place of this meter's own receivers (reader.mjs `report`). */
  fill({ counted, perReceiver, latencies, stamps }) {
    this.count = counted;
    this.perReceiver.set(perReceiver.subarray(0, this.perReceiver.length));
    this.latencies.set(latencies.subarray(0, this.expected));
    this.stamps?.set(stamps.subarray(0, this.expected));
  }
  /** Resolves true once `n` deliveries have come, or false after `ms`. */
  until(n, ms) {
    if (this.count >= n) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        resolve(false);
      }, ms);
      this.waiter = {
        n,
        resolve: () => {
          clearTimeout(timer);
          this.waiter = null;
          resolve(true);
        },
      };
    });
  }
  summary() {
    const n = Math.min(this.count, this.expected);
    const sorted = this.latencies.slice(0, n).sort();
    this.sorted = sorted;
    const out = { p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)) };
    if (this.stamps === null) return out;
    // Per message: its first delivery (how soon the server started on it) and
    // the time from its first to its last (how long its fan-out took to be heard).
    const byMessage = new Map();
    for (let i = 0; i < n; i++) {
      const at = this.stamps[i];
      const l = this.latencies[i];
      const m = byMessage.get(at);
      if (m === undefined) byMessage.set(at, { first: l, last: l });
      else if (l < m.first) m.first = l;
      else if (l > m.last) m.last = l;
    }
    const firsts = Float64Array.from(byMessage.values(), (m) => m.first).sort();
    const spreads = Float64Array.from(byMessage.values(), (m) => m.last - m.first).sort();
    const q = (a, p) => round(percentile(a, p));
    return {
      ...out,
      p90: q(sorted, 90),
      p999: q(sorted, 99.9),
      max: round(sorted[n - 1] ?? NaN),
      firstDelivery: { p50: q(firsts, 50), p99: q(firsts, 99) },
      spread: { p50: q(spreads, 50), p99: q(spreads, 99) },
    };
  }
}

/**
 * With --detail: who used the CPU from now until the returned function is
 * called, and how long the server's main thread and the reader waited for
 * one, in percent of one core (the whole machine's figure counts every core,
 * 100 each).
 */
function cpuProbe(pid, readerPid) {
  const me = process.cpuUsage();
  const reader0 = readerPid === undefined ? null : cpuReading(readerPid);
  const server = threadCpuSeconds(pid);
  const serverWait = waitingSeconds(pid);
  const readerWait = readerPid === undefined ? 0 : waitingSeconds(readerPid);
  const box = machineTicks();
  const t0 = performance.now();
  return () => {
    const seconds = (performance.now() - t0) / 1000;
    const used = process.cpuUsage(me);
    const s = threadCpuSeconds(pid);
    const b = machineTicks();
    const pct = (x) => round((x / seconds) * 100, 1);
    return {
      loadGeneratorCpuPercent: pct((used.user + used.system) / 1e6),
      ...(reader0 !== null && { readerCpuPercent: pct(cpuSince(readerPid, reader0)) }),
      serverMainThreadCpuPercent: pct(s.main - server.main),
      serverOtherThreadsCpuPercent: pct(s.others - server.others),
      // Runnable but waiting for a CPU: what the machine's other work costs each one's latency.
      serverMainThreadWaitingPercent: pct(waitingSeconds(pid) - serverWait),
      ...(reader0 !== null && { readerWaitingPercent: pct(waitingSeconds(readerPid) - readerWait) }),
      machineBusyPercent: round(((b.busy - box.busy) / (b.total - box.total)) * availableParallelism() * 100, 1),
    };
  };
}

/**
 * confab: raw protocol clients (no end-to-end layer: this measures the relay).
 * `store`: 'sqlite' (history.db in a fresh --data directory, as a real
 * deployment runs), or 'none' (--no-history), to price the store.
 */
const confabSystem = (store, env = 'CONFAB_BENCH', name = store === 'none' ? 'confab-no-history' : 'confab') => ({
  name,
  store,
  async start() {
    // ${env}_DATA_PARENT: where the fresh --data directory goes (e.g. /dev/shm, to price the disk).
    this.dir =
      store === 'sqlite' ? mkdtempSync(join(process.env[`${env}_DATA_PARENT`] ?? tmpdir(), 'confab-bench-')) : null;
    const args = store === 'sqlite' ? ['--data', this.dir] : ['--no-history'];
    const words = (v) => (process.env[v] ?? '').split(' ').filter(Boolean);
    this.server = await startServerProcess(
      [...BENCH_LIMITS, ...args, ...words(`${env}_SERVER_ARGS`)],
      words(`${env}_NODE_ARGS`),
      process.env[`${env}_CLI`] || undefined,
    );
    return this.server.pid;
  },
  /**
   * Resolves once the server has exited and its data directory is gone, so
   * that no run shares the machine with the last one's shutdown. Until
   * 2026-11-27 that shutdown took about 2 s (every closed connection had left
   * a linger timer behind), and it ran into the next run's warm-up and first
   * second; now it takes 10-50 ms.
   */
  stop() {
    const { child } = this.server;
    const dir = this.dir;
    const exited =
      child.exitCode !== null || child.signalCode !== null
        ? Promise.resolve()
        : new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    // A server that hangs in its shutdown must not hang the benchmark.
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    return exited.then(() => {
      clearTimeout(timer);
      if (dir) rmSync(dir, { recursive: true, force: true });
    });
  },
  async receivers(n, room, meter, nickBase) {
    const out = [];
    for (let i = 0; i < n; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(100, n - i) }, (_, j) =>
          RawClient.open(this.server.port, `${nickBase}${i + j}`, room),
        ),
      );
      batch.forEach((c, j) => c.rawDeliveries((buf, at) => meter.deliver(buf, at, i + j)));
      out.push(...batch);
    }
    return out;
  },
  sender(room, nick) {
    return confabSender(this.server.port, room, nick);
  },
  /** How reader.c finds each message's payload in what a receiver reads. */
  readerLayout: () => ({ confab: FrameType.DELIVER }),
  socketOf: (client) => client.socket,
  /** What the paced sender's thread needs to send to `room` (sender.mjs). */
  senderSpec(room, nick) {
    return { kind: 'confab', port: this.server.port, room, nick };
  },
  close(clients) {
    for (const c of clients) {
      if (typeof c.close === 'function') c.close();
      else c.client.close();
    }
  },
});
const confab = confabSystem(process.env.CONFAB_BENCH_STORE ?? 'sqlite');

const channelOf = (room) => `bench:${Buffer.from(room).toString('hex').slice(0, 8)}`;

/** Redis pub/sub with the same workload shape. */
function redisSystem(redis) {
  return {
    name: 'redis',
    async start() {
      return redis.pid;
    },
    async stop() {},
    async receivers(n, room, meter) {
      const channel = channelOf(room);
      const out = [];
      for (let i = 0; i < n; i += 100) {
        out.push(
          ...(await Promise.all(
            Array.from({ length: Math.min(100, n - i) }, (_, j) =>
              subscribe(redis.port, channel, SIZE, (b, at) => meter.deliver(b, at, i + j)),
            ),
          )),
        );
      }
      return out;
    },
    async sender(room) {
      const p = await publisher(redis.port, channelOf(room));
      return { client: p.socket, send: p.publish };
    },
    readerLayout(room) {
      const { record, payloadAt } = pushLayout(channelOf(room), SIZE);
      return { redis: [record, payloadAt] };
    },
    socketOf: (socket) => socket,
    senderSpec(room) {
      return { kind: 'redis', port: redis.port, channel: channelOf(room) };
    },
    close(clients) {
      for (const c of clients) (c.destroy ? c : c.client).destroy();
    },
  };
}

/**
 * The server's RSS once a first few connections have come and gone, as the
 * baseline of its memory per connection in every workload, for both systems:
 * a fresh process grows its heaps and caches with its first clients (a Redis
 * that has run for hours did long ago), and that is not per connection.
 */
async function warmBaseline(system, pid) {
  const warm = await system.receivers(50, roomId(98), new Meter(0), 'w');
  system.close(warm);
  await new Promise((r) => setTimeout(r, 500));
  return rssBytes(pid);
}

/** Sends `count` messages as fast as acknowledgements allow, `window` in flight. */
function burst(tx, count, window) {
  let sent = 0;
  return new Promise((resolve) => {
    const next = () => {
      if (sent >= count) return resolve();
      sent++;
      void tx.send(payload(performance.now())).then(next);
    };
    for (let i = 0; i < Math.min(window, count); i++) next();
  });
}

const WARMUP_MESSAGES = 500;

/** (a): one room, R receivers, one sender as fast as acknowledgements allow (W in flight), after an unmeasured warm-up. */
async function fanoutBurst(system, receivers, messages, window = 64) {
  const pid = await system.start();
  const room = roomId(0);
  const warm = new Meter(receivers * WARMUP_MESSAGES);
  const meter = new Meter(receivers * messages, receivers);
  const to = switchable(warm);
  const rssBefore = await warmBaseline(system, pid);
  const rx = await system.receivers(receivers, room, to, 'r');
  const tx = await system.sender(room, 'sender');
  await new Promise((r) => setTimeout(r, 300));
  const rssLoaded = rssBytes(pid);
  await burst(tx, WARMUP_MESSAGES, window);
  await warmedUp(warm, 10_000);
  to.current = meter;
  const probe = DETAIL ? cpuProbe(pid) : null;
  const cpu0 = cpuReading(pid);
  const t0 = performance.now();
  await burst(tx, messages, window);
  await meter.until(meter.expected, 30_000);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuSince(pid, cpu0);
  const detail = probe?.();
  system.close([...rx, tx]);
  await system.stop();
  return withSamples(meter, {
    workload: 'a',
    system: system.name,
    receivers,
    messages,
    payloadBytes: SIZE,
    deliveriesPerSecond: Math.round(meter.count / seconds),
    ...lostAndDuplicated(meter),
    latencyMs: meter.summary(),
    serverCpuSecondsPerMillionDeliveries: round(cpu / (meter.count / 1e6)),
    serverMemoryPerConnectionBytes: Math.round((rssLoaded - rssBefore) / (receivers + 1)),
    ...(detail && { cpuPercent: detail }),
  });
}

/**
 * Starts (b)'s sender in a thread of its own (sender.mjs), connected to
 * `system`'s `room`. `run(rate, count)` sends `count` messages `1000 / rate`
 * ms apart, each alone and stamped with when it was due, so a late sender
 * shows as latency, and resolves with how late each left (ms, sorted).
 */
async function pacer(system, room, nick) {
  const worker = new Worker(new URL('./sender.mjs', import.meta.url), {
    workerData: { ...system.senderSpec(room, nick), size: SIZE, mainOrigin: performance.timeOrigin },
  });
  // One answer awaited at a time; an error, or the thread ending, fails it.
  let waiting = null;
  const settle = (how, value) => {
    const w = waiting;
    waiting = null;
    w?.[how](value);
  };
  worker.on('message', (m) => settle('resolve', m));
  worker.on('error', (err) => settle('reject', err));
  worker.on('exit', (code) => settle('reject', new Error(`sender thread exited (${code})`)));
  const answer = () => new Promise((resolve, reject) => (waiting = { resolve, reject }));
  await answer();
  return {
    run(rate, count) {
      const done = answer();
      worker.postMessage({ rate, count });
      return done;
    },
    close: () => void worker.terminate(),
  };
}

/** Waits for every warm-up delivery; a straggler would count in the measured run, so none may be left. */
async function warmedUp(warm, ms) {
  const done = await warm.until(warm.expected, ms);
  if (!done) throw new Error(`warm-up: ${warm.count} of ${warm.expected} deliveries after ${ms} ms`);
}

/** A measured run's `lost` and `duplicated`, from its receivers' own counts. */
function lostAndDuplicated(meter) {
  const { missing, extra } = meter.byReceiver();
  return { lost: missing, duplicated: extra };
}

/** Receivers report to whichever meter is current: the warm-up's, then the measured run's. */
function switchable(first) {
  return {
    current: first,
    deliver(buf, at, receiver) {
      this.current.deliver(buf, at, receiver);
    },
  };
}

/**
 * (b): one room, R receivers, one sender at a fixed rate (open loop), latency
 * from the scheduled time. `--warmup` seconds (4) of the same traffic come
 * first, unmeasured, for both systems: a relay in service runs warm, and
 * confab's JIT compiles the hot path in the first second (and goes on
 * compiling, on V8's own threads, for a few more).
 */
async function fanoutRate(system, receivers, rate, seconds) {
  const pid = await system.start();
  const room = roomId(1);
  const messages = rate * seconds;
  const warm = new Meter(receivers * rate * WARMUP_SECONDS);
  const meter = new Meter(receivers * messages, receivers);
  const to = switchable(warm);
  const rssBefore = await warmBaseline(system, pid);
  const rx = await system.receivers(receivers, room, to, 'q');
  const reader =
    READER.path === null ? null : await startReader(READER.path, rx.map(system.socketOf), system.readerLayout(room));
  const tx = await pacer(system, room, 'pacer');
  await new Promise((r) => setTimeout(r, 300));
  const rssLoaded = rssBytes(pid);
  await reader?.meter(warm.expected);
  await tx.run(rate, rate * WARMUP_SECONDS);
  if (reader === null) await warmedUp(warm, 5_000);
  else if (!(await reader.until(5_000)))
    throw new Error(`warm-up: ${(await reader.report()).counted} of ${warm.expected} deliveries after 5000 ms`);
  to.current = meter;
  await reader?.meter(meter.expected);
  const probe = DETAIL ? cpuProbe(pid, reader?.pid) : null;
  const cpu0 = cpuReading(pid);
  const t0 = performance.now();
  const late = await tx.run(rate, messages);
  await (reader === null ? meter.until(meter.expected, 15_000) : reader.until(15_000));
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = cpuSince(pid, cpu0);
  const detail = probe?.();
  if (reader !== null) {
    meter.fill(await reader.report());
    await reader.close();
  }
  tx.close();
  system.close(rx);
  await system.stop();
  return withSamples(meter, {
    workload: 'b',
    system: system.name,
    reader: reader === null ? 'js' : 'c',
    receivers,
    ratePerSecond: rate,
    seconds,
    warmupSeconds: WARMUP_SECONDS,
    payloadBytes: SIZE,
    deliveriesPerSecond: Math.round(meter.count / elapsed),
    ...lostAndDuplicated(meter),
    latencyMs: meter.summary(),
    serverCpuSecondsPerMillionDeliveries: round(cpu / (meter.count / 1e6)),
    serverMemoryPerConnectionBytes: Math.round((rssLoaded - rssBefore) / (receivers + 1)),
    ...(detail && {
      cpuPercent: detail,
      senderLateMs: {
        p50: round(percentile(late, 50)),
        p90: round(percentile(late, 90)),
        p99: round(percentile(late, 99)),
      },
    }),
  });
}

/**
 * Each of `sides` indices `slices` times, shuffled by a generator seeded with
 * `seed` (mulberry32), so that a round can be played again.
 */
function sliceOrder(sides, slices, seed) {
  const order = Array.from({ length: sides * slices }, (_, k) => k % sides);
  let state = seed >>> 0;
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let k = order.length - 1; k > 0; k--) {
    const j = Math.floor(random() * (k + 1));
    [order[k], order[j]] = [order[j], order[k]];
  }
  return order;
}

/**
 * (b) interleaved: both systems connected and warmed up at once, the sender
 * alternating between them in slices of `slice` seconds, in an order shuffled
 * from `seed`, until each has sent `seconds` worth. The machine's speed drifts
 * by 10-40% between runs a few seconds apart; slices a second apart share that
 * drift out far more evenly than whole runs do. Each server's CPU is counted
 * over its own slices, each slice from its first message until its last was
 * delivered.
 *
 * The order was a fixed ABBA until 2026-11-27: a confab compared with itself
 * then came out at 0.59-0.86 of its twin's p99 in every round it went first and
 * 1.42-1.61 in every round it went second: in both rounds timed slice by slice,
 * the slowest slices were the sixth and seventh, the second system's.
 */
async function fanoutRateInterleaved(systems, receivers, rate, seconds, seed, slice = 1) {
  const perSlice = Math.round(rate * slice);
  const slices = Math.round(seconds / slice);
  const sides = [];
  for (const [i, system] of systems.entries()) {
    const pid = await system.start();
    const room = roomId(2 + i);
    const warm = new Meter(receivers * rate * WARMUP_SECONDS);
    const meter = new Meter(receivers * perSlice * slices, receivers);
    const to = switchable(warm);
    const rx = await system.receivers(receivers, room, to, `q${i}_`);
    const tx = await pacer(system, room, `pacer${i}`);
    sides.push({ system, pid, warm, meter, to, rx, tx, cpu: 0, sent: 0, lateSlices: 0 });
  }
  await new Promise((r) => setTimeout(r, 300));
  for (const s of sides) {
    await s.tx.run(rate, rate * WARMUP_SECONDS);
    await warmedUp(s.warm, 5_000);
    s.to.current = s.meter;
  }
  for (const side of sliceOrder(sides.length, slices, seed)) {
    const s = sides[side];
    const cpu0 = cpuReading(s.pid);
    await s.tx.run(rate, perSlice);
    s.sent += perSlice;
    // A slice whose deliveries are still coming after 2 s hands them, and
    // their CPU, to the next slice: counted, so such a round shows it.
    if (!(await s.meter.until(receivers * s.sent, 2_000))) s.lateSlices++;
    s.cpu += cpuSince(s.pid, cpu0);
  }
  const out = sides.map((s) => ({
    workload: 'b',
    system: s.system.name,
    interleaved: { slices, sliceSeconds: slice, lateSlices: s.lateSlices },
    receivers,
    ratePerSecond: rate,
    seconds,
    warmupSeconds: WARMUP_SECONDS,
    payloadBytes: SIZE,
    ...lostAndDuplicated(s.meter),
    latencyMs: s.meter.summary(),
    serverCpuSecondsPerMillionDeliveries: round(s.cpu / (s.meter.count / 1e6)),
  }));
  for (const s of sides) {
    s.tx.close();
    s.system.close(s.rx);
  }
  await Promise.all(sides.map((s) => s.system.stop()));
  return out;
}

/** Most (c) latencies kept (each delivery's, until then): 32 MB of samples, about 8 s of (c) here. */
const MANY_ROOMS_SAMPLES = 4_000_000;

/**
 * (c): many small rooms, every member talking at once for a fixed time:
 * deliveries per room (none may starve), lost, latency, and the server's
 * memory per member.
 */
async function manyRooms(rooms, perRoom, seconds, window = 2) {
  const pid = await confab.start();
  const perRoomCount = new Array(rooms).fill(0);
  const acked = new Array(rooms).fill(0);
  const meter = new Meter(MANY_ROOMS_SAMPLES);
  let refused = 0;
  const members = [];
  const rssBefore = await warmBaseline(confab, pid);
  for (let r = 0; r < rooms; r++) {
    const room = roomId(100 + r);
    const list = await Promise.all(Array.from({ length: perRoom }, (_, i) => confab.sender(room, `r${r}m${i}`))); // a nick belongs to one key server-wide
    for (const m of list) {
      const inner = m.client.onFrame;
      m.client.onFrame = (f) => {
        if (f[0] === FrameType.DELIVER) {
          perRoomCount[r]++;
          meter.deliver(f, deliverBodyOffset(f, 0));
        } else inner(f);
      };
      m.room = r;
    }
    members.push(...list);
  }
  await new Promise((res) => setTimeout(res, 500));
  const rssJoined = rssBytes(pid);
  perRoomCount.fill(0);
  meter.count = 0;
  const cpu0 = cpuReading(pid);
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let stop = false;
  const loops = members.map(async (m) => {
    const inFlight = new Set();
    while (!stop) {
      const p = m.send(payload(performance.now())).then(
        () => acked[m.room]++,
        () => refused++,
      );
      inFlight.add(p);
      void p.then(() => inFlight.delete(p));
      if (inFlight.size >= window) await Promise.race(inFlight);
      if (performance.now() > end) stop = true;
    }
    await Promise.all(inFlight);
  });
  await Promise.all(loops);
  const counts = [...perRoomCount];
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = cpuSince(pid, cpu0);
  const total = counts.reduce((a, b) => a + b, 0);
  const mean = total / rooms;
  // Every acknowledged message goes to the room's other members: wait for the last of them.
  const expected = acked.reduce((a, b) => a + b, 0) * (perRoom - 1);
  await meter.until(expected, 5000);
  confab.close(members);
  await confab.stop();
  return {
    workload: 'c',
    system: 'confab',
    rooms,
    membersPerRoom: perRoom,
    seconds,
    deliveriesPerSecond: Math.round(total / elapsed),
    lost: expected - meter.count,
    refused,
    latencyMs: meter.summary(),
    perRoomDeliveries: { min: Math.min(...counts), max: Math.max(...counts), mean: Math.round(mean) },
    maxDeviationFromMeanPercent: round((Math.max(...counts.map((c) => Math.abs(c - mean))) / mean) * 100, 1),
    serverCpuSecondsPerMillionDeliveries: round(cpu / (total / 1e6)),
    serverMemoryPerConnectionBytes: Math.round((rssJoined - rssBefore) / (rooms * perRoom)),
  };
}

/** (d): idle connections, each joined to a room of 10; server memory per connection. */
async function idle(connections) {
  const pid = await confab.start();
  const before = await warmBaseline(confab, pid);
  const clients = [];
  for (let i = 0; i < connections; i += 250) {
    clients.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(250, connections - i) }, (_, j) =>
          RawClient.open(confab.server.port, `i${i + j}`, roomId(1000 + Math.floor((i + j) / 10))),
        ),
      )),
    );
  }
  // RSS falls for a while after the joins, as the collector gives back what
  // they left behind (a review measured 6.7 KB a connection at 2 s, 4.1-4.6 at
  // 10-20 s): the lowest of readings over 2-6 s, which can only overstate.
  await new Promise((r) => setTimeout(r, 2000));
  let after = rssBytes(pid);
  for (let i = 0; i < 8; i++) {
    await new Promise((r) => setTimeout(r, 500));
    after = Math.min(after, rssBytes(pid));
  }
  const cpu0 = cpuReading(pid);
  await new Promise((r) => setTimeout(r, 3000));
  const idleCpu = cpuSince(pid, cpu0);
  confab.close(clients);
  await confab.stop();
  return {
    workload: 'd',
    system: 'confab',
    connections,
    serverRssBeforeMB: round(before / 1e6, 1),
    serverRssAfterMB: round(after / 1e6, 1),
    serverMemoryPerConnectionBytes: Math.round((after - before) / connections),
    idleServerCpuPercent: round((idleCpu / 3) * 100, 2),
  };
}

const against = process.env.CONFAB_BENCH_AGAINST;
if (against !== undefined && against !== 'sqlite' && against !== 'none')
  throw new Error('CONFAB_BENCH_AGAINST is sqlite or none');
const redis = values['no-redis'] || against !== undefined ? null : await findRedis();
if (!values['no-redis'] && against === undefined && redis === null)
  console.error('bench: no Redis to compare with (none on 6379, no redis-server)');
/** What (a) and (b) compare confab with, made fresh for each run: Redis, a second confab (A/B), or nothing. */
const yardstick =
  against !== undefined
    ? () => confabSystem(against, 'CONFAB_BENCH_B', 'confab-b')
    : redis !== null
      ? () => redisSystem(redis)
      : null;
const vs = against !== undefined ? 'ConfabB' : 'Redis';
if (values.pin) {
  const cpus = availableParallelism();
  if (cpus < 2) throw new Error('--pin needs 2 CPUs or more');
  const pin = { servers: '0', loadGenerator: cpus === 2 ? '1' : `1-${cpus - 1}` };
  pinCpus(pin.servers, pin.loadGenerator, redis !== null ? [redis.pid] : []);
  console.log(JSON.stringify({ pin }));
}

const print = (o) => console.log(JSON.stringify(o));

/** Each (a) and (b) result's latencies, sorted, kept for the run's pooled p99 (not printed). */
const samples = new WeakMap();

/** `result`, its meter's sorted latencies kept (call after `meter.summary()`). */
function withSamples(meter, result) {
  samples.set(result, meter.sorted);
  return result;
}

/**
 * The p99 of every delivery of every round together: the run's own p99, as one
 * long round would measure it, beside the median of the rounds' ratios.
 */
function pooledP99(runs) {
  const all = runs.map((r) => samples.get(r));
  if (all.some((s) => s === undefined)) return null;
  const pooled = new Float64Array(all.reduce((n, s) => n + s.length, 0));
  let at = 0;
  for (const s of all) {
    pooled.set(s, at);
    at += s.length;
  }
  return round(percentile(pooled.sort(), 99));
}

/** One round's p99 of confab over the other system's. */
const p99Ratio = ([a, b]) => a.latencyMs.p99 / b.latencyMs.p99;

/** Medians of the per-round ratios a / b of CPU per million deliveries and of p99, with the rounds' own. */
function ratios(pairs) {
  const cpu = pairs.map(([a, b]) => a.serverCpuSecondsPerMillionDeliveries / b.serverCpuSecondsPerMillionDeliveries);
  const p99 = pairs.map(p99Ratio);
  return {
    cpu: round(median(cpu)),
    p99: round(median(p99)),
    perRound: { cpu: cpu.map((x) => round(x)), p99: p99.map((x) => round(x)) },
  };
}

/**
 * Runs a fan-out workload `--rounds` times on confab, on Redis (or confab-b)
 * and on confab without its store (to price the store), printing every run,
 * then the medians of the per-round ratios: this machine's figures wander by
 * 10-40% from run to run, and pairing the runs of one round shares that out.
 */
async function compare(workload, run) {
  const priceStore = !values['no-store-cost'] && confab.store === 'sqlite';
  const vsPairs = [];
  const storePairs = [];
  for (let i = 1; i <= ROUNDS; i++) {
    // Confab, Redis, no store in odd rounds; the reverse in even ones: a machine
    // that drifts faster or slower during a round favours nobody.
    const systems = [confab, yardstick?.() ?? null, priceStore ? confabSystem('none') : null];
    const results = [null, null, null];
    for (const k of i % 2 === 1 ? [0, 1, 2] : [2, 1, 0]) {
      if (systems[k] === null) continue;
      results[k] = await run(systems[k]);
      print({ ...results[k], round: i });
    }
    const [c, r, n] = results;
    samples.delete(n); // pooled for confab and Redis only
    if (r !== null) vsPairs.push([c, r]);
    if (n !== null) storePairs.push([c, n]);
  }
  if (storePairs.length > 0) {
    const s = ratios(storePairs);
    print({
      workload,
      storeCost: {
        rounds: storePairs.length,
        cpuPerMillionDeliveriesWithStore: round(
          median(storePairs.map(([c]) => c.serverCpuSecondsPerMillionDeliveries)),
        ),
        cpuPerMillionDeliveriesWithout: round(
          median(storePairs.map(([, n]) => n.serverCpuSecondsPerMillionDeliveries)),
        ),
        cpuRatio: s.cpu,
        p99Ratio: s.p99,
        perRound: s.perRound,
      },
    });
  }
  if (vsPairs.length > 0) printVs({ workload }, vsPairs);
}

/** One system's runs of a workload in a line: messages lost in all, and the medians of its figures. */
function overRounds(runs) {
  const mid = (f) => round(median(runs.map(f)));
  return {
    lost: runs.reduce((sum, r) => sum + r.lost, 0),
    duplicated: runs.reduce((sum, r) => sum + r.duplicated, 0),
    deliveriesPerSecond: Math.round(median(runs.map((r) => r.deliveriesPerSecond))),
    latencyMs: { p50: mid((r) => r.latencyMs.p50), p99: mid((r) => r.latencyMs.p99) },
    serverCpuSecondsPerMillionDeliveries: mid((r) => r.serverCpuSecondsPerMillionDeliveries),
  };
}

/**
 * The workload's last line: the medians of the per-round ratios confab /
 * Redis (or confab-b), the ratio of the two systems' p99 over all their
 * rounds' deliveries pooled, and each system's figures over the rounds (the
 * medians; lost messages summed), so that the targets (CPU ratio at most 1
 * with nothing lost) read off one line.
 */
function printVs(head, pairs) {
  const v = ratios(pairs);
  const [a, b] = [pooledP99(pairs.map(([x]) => x)), pooledP99(pairs.map(([, y]) => y))];
  print({
    ...head,
    rounds: pairs.length,
    [`ratioConfabTo${vs}CpuPerMillionDeliveries`]: v.cpu,
    [`ratioConfabTo${vs}P99`]: v.p99,
    ...(a !== null &&
      b !== null && {
        [`ratioConfabTo${vs}PooledP99`]: round(a / b),
        pooledP99Ms: { [pairs[0][0].system]: a, [pairs[0][1].system]: b },
      }),
    perRound: v.perRound,
    overRounds: {
      [pairs[0][0].system]: overRounds(pairs.map(([a]) => a)),
      [pairs[0][1].system]: overRounds(pairs.map(([, b]) => b)),
    },
  });
}

if (ONLY.has('a')) await compare('a', (system) => fanoutBurst(system, 1000, 2000));
if (ONLY.has('b')) await compare('b', (system) => fanoutRate(system, B_RECEIVERS, 1000, 5));
if (ONLY.has('bi') && yardstick !== null) {
  const pairs = [];
  for (let i = 1; i <= ROUNDS; i++) {
    const [c, r] = [confab, yardstick()];
    // Rounds 2k-1 and 2k play one order with the systems swapped: over each
    // pair, both hold every place once.
    const res = await fanoutRateInterleaved(i % 2 === 1 ? [c, r] : [r, c], B_RECEIVERS, 1000, 5, Math.ceil(i / 2));
    for (const x of res) print({ ...x, round: i });
    pairs.push(i % 2 === 1 ? res : [res[1], res[0]]);
  }
  // Within a pair of rounds, what the places cost cancels out: the geometric
  // mean of the pair's two p99 ratios. A system compared with itself spreads
  // over 0.50-1.54 round by round, and over 0.88-1.02 pair by pair.
  const p99 = pairs.map(p99Ratio);
  const perPair = [];
  for (let k = 1; k < p99.length; k += 2) perPair.push(Math.sqrt(p99[k - 1] * p99[k]));
  const paired =
    perPair.length === 0
      ? {}
      : {
          p99RatioPerPairOfRounds: perPair.map((x) => round(x)),
          p99RatioMedianOfPairs: round(median(perPair)),
        };
  printVs({ workload: 'b', interleaved: true, ...paired }, pairs);
}
if (ONLY.has('c')) print(await manyRooms(100, 10, 5));
if (ONLY.has('d')) print(await idle(5000));
redis?.stop();
