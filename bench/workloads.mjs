// The relay's benchmark (issue 6): four workloads against `confab serve` in
// its own process, and (a) and (b) again against Redis pub/sub on the same
// machine, with the same payload. Prints one JSON object per line.
//
//   node bench/workloads.mjs [--only a,b,c,d] [--no-redis] [--no-store-cost]
//
// confab runs as deployed, with its SQLite history in a fresh --data
// directory; (a) and (b) run once more with --no-history to price the store.
// CONFAB_BENCH_STORE=none runs every workload with --no-history instead.
//
// The server's rate and per-address limits are raised for the benchmark's
// clients with explicit --limit options (all clients come from 127.0.0.1);
// the defaults are never changed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { encodeFrame, FrameType } from '../dist/protocol/index.js';
import { cpuSeconds, deliverBodyOffset, percentile, RawClient, round, rssBytes, startServerProcess } from './lib.mjs';
import { findRedis, publisher, subscribe } from './redis.mjs';

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: 'a,b,c,d' },
    'no-redis': { type: 'boolean', default: false },
    'no-store-cost': { type: 'boolean', default: false },
  },
});
const ONLY = new Set(values.only.split(','));
const SIZE = 64;
const BENCH_LIMITS = [
  'maxConnectionsPerIp=1000000',
  'connectionsPerIpPerMinute=100000000',
  'messageBurst=1000000',
  'messageIntervalMs=1',
].flatMap((l) => ['--limit', l]);

const roomId = (n) => {
  const r = new Uint8Array(16);
  new DataView(r.buffer).setUint32(0, n + 1);
  return r;
};

function payload(at) {
  const p = Buffer.alloc(SIZE);
  p.writeDoubleBE(at, 0);
  return p;
}

/** Latency samples and delivery counts, shared by both systems' receivers. */
class Meter {
  constructor(expected) {
    this.expected = expected;
    this.latencies = new Float64Array(expected);
    this.count = 0;
    this.done = new Promise((r) => (this.finish = r));
  }
  deliver(buf, at) {
    const sent = buf.readDoubleBE(at);
    if (this.count < this.expected) this.latencies[this.count] = performance.now() - sent;
    if (++this.count === this.expected) this.finish();
  }
  summary() {
    const sorted = this.latencies.subarray(0, Math.min(this.count, this.expected)).sort();
    return { p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)) };
  }
}

/**
 * confab: raw protocol clients (no end-to-end layer: this measures the relay).
 * `store`: 'sqlite' (history.db in a fresh --data directory, as a real
 * deployment runs), or 'none' (--no-history), to price the store.
 */
const confabSystem = (store) => ({
  name: store === 'none' ? 'confab-no-history' : 'confab',
  store,
  async start() {
    this.dir = store === 'sqlite' ? mkdtempSync(join(tmpdir(), 'confab-bench-')) : null;
    const args = store === 'sqlite' ? ['--data', this.dir] : ['--no-history'];
    this.server = await startServerProcess([...BENCH_LIMITS, ...args]);
    return this.server.pid;
  },
  stop() {
    this.server.child.kill('SIGTERM');
    if (this.dir) {
      const dir = this.dir;
      this.server.child.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    }
  },
  async receivers(n, room, meter, nickBase) {
    const out = [];
    for (let i = 0; i < n; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(100, n - i) }, (_, j) =>
          RawClient.open(this.server.port, `${nickBase}${i + j}`, room),
        ),
      );
      for (const c of batch) {
        c.onFrame = (f) => {
          if (f[0] === FrameType.DELIVER)
            meter.deliver(Buffer.from(f.buffer, f.byteOffset, f.byteLength), deliverBodyOffset(f));
        };
      }
      out.push(...batch);
    }
    return out;
  },
  async sender(room, nick) {
    const c = await RawClient.open(this.server.port, nick, room);
    const waiting = new Map();
    let rid = 0;
    // Every message its own id (a repeated id is a resend, which the store drops).
    const mid = crypto.getRandomValues(new Uint8Array(16));
    const midView = new DataView(mid.buffer);
    c.onFrame = (f) => {
      if (f[0] === FrameType.ACK) {
        const r = new DataView(f.buffer, f.byteOffset).getUint32(1);
        waiting.get(r)?.();
        waiting.delete(r);
      }
    };
    return {
      client: c,
      send(body) {
        rid++;
        midView.setUint32(12, rid);
        c.socket.write(encodeFrame({ type: 'send', rid, room, mid, body }));
        return new Promise((r) => waiting.set(rid, r));
      },
    };
  },
  close(clients) {
    for (const c of clients) {
      if (typeof c.close === 'function') c.close();
      else c.client.close();
    }
  },
});
const confab = confabSystem(process.env.CONFAB_BENCH_STORE ?? 'sqlite');

/** Redis pub/sub with the same workload shape. */
function redisSystem(redis) {
  return {
    name: 'redis',
    async start() {
      return redis.pid;
    },
    stop() {},
    async receivers(n, room, meter) {
      const channel = `bench:${Buffer.from(room).toString('hex').slice(0, 8)}`;
      const out = [];
      for (let i = 0; i < n; i += 100) {
        out.push(
          ...(await Promise.all(
            Array.from({ length: Math.min(100, n - i) }, () =>
              subscribe(redis.port, channel, SIZE, (b, at) => meter.deliver(b, at)),
            ),
          )),
        );
      }
      return out;
    },
    async sender(room) {
      const channel = `bench:${Buffer.from(room).toString('hex').slice(0, 8)}`;
      const p = await publisher(redis.port, channel);
      return { client: p.socket, send: (body) => p.publish(body) };
    },
    close(clients) {
      for (const c of clients) (c.destroy ? c : c.client).destroy();
    },
  };
}

/** (a): one room, R receivers, one sender as fast as acknowledgements allow (W in flight). */
async function fanoutBurst(system, receivers, messages, window = 64) {
  const pid = await system.start();
  const room = roomId(0);
  const meter = new Meter(receivers * messages);
  const rssBefore = rssBytes(pid);
  const rx = await system.receivers(receivers, room, meter, 'r');
  const tx = await system.sender(room, 'sender');
  await new Promise((r) => setTimeout(r, 300));
  const rssLoaded = rssBytes(pid);
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  let sent = 0;
  await new Promise((resolve) => {
    const next = () => {
      if (sent >= messages) return resolve();
      sent++;
      void tx.send(payload(performance.now())).then(next);
    };
    for (let i = 0; i < Math.min(window, messages); i++) next();
  });
  await Promise.race([meter.done, new Promise((r) => setTimeout(r, 30_000))]);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(pid) - cpu0;
  system.close([...rx, tx]);
  system.stop();
  return {
    workload: 'a',
    system: system.name,
    receivers,
    messages,
    payloadBytes: SIZE,
    deliveriesPerSecond: Math.round(meter.count / seconds),
    lost: meter.expected - meter.count,
    latencyMs: meter.summary(),
    serverCpuSecondsPerMillionDeliveries: round(cpu / (meter.count / 1e6)),
    serverMemoryPerConnectionBytes: Math.round((rssLoaded - rssBefore) / (receivers + 1)),
  };
}

/** (b): one room, R receivers, one sender at a fixed rate (open loop), latency from the scheduled time. */
async function fanoutRate(system, receivers, rate, seconds) {
  const pid = await system.start();
  const room = roomId(1);
  const messages = rate * seconds;
  const meter = new Meter(receivers * messages);
  const rx = await system.receivers(receivers, room, meter, 'q');
  const tx = await system.sender(room, 'pacer');
  await new Promise((r) => setTimeout(r, 300));
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  let sent = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(messages, Math.floor(((performance.now() - t0) / 1000) * rate));
      while (sent < due) {
        // Stamped with when it should have left, so a stalled sender shows as latency.
        void tx.send(payload(t0 + (sent * 1000) / rate));
        sent++;
      }
      if (sent >= messages) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.race([meter.done, new Promise((r) => setTimeout(r, 15_000))]);
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(pid) - cpu0;
  system.close([...rx, tx]);
  system.stop();
  return {
    workload: 'b',
    system: system.name,
    receivers,
    ratePerSecond: rate,
    seconds,
    payloadBytes: SIZE,
    deliveriesPerSecond: Math.round(meter.count / elapsed),
    lost: meter.expected - meter.count,
    latencyMs: meter.summary(),
    serverCpuSecondsPerMillionDeliveries: round(cpu / (meter.count / 1e6)),
  };
}

/** (c): many small rooms, every member talking at once for a fixed time; deliveries per room. */
async function manyRooms(rooms, perRoom, seconds, window = 2) {
  const pid = await confab.start();
  const perRoomCount = new Array(rooms).fill(0);
  const members = [];
  for (let r = 0; r < rooms; r++) {
    const room = roomId(100 + r);
    const list = await Promise.all(Array.from({ length: perRoom }, (_, i) => confab.sender(room, `r${r}m${i}`))); // a nick belongs to one key server-wide
    for (const m of list) {
      const inner = m.client.onFrame;
      m.client.onFrame = (f) => {
        if (f[0] === FrameType.DELIVER) perRoomCount[r]++;
        else inner(f);
      };
    }
    members.push(...list);
  }
  await new Promise((res) => setTimeout(res, 500));
  perRoomCount.fill(0);
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let stop = false;
  const loops = members.map(async (m) => {
    const inFlight = new Set();
    while (!stop) {
      const p = m.send(payload(performance.now()));
      inFlight.add(p);
      void p.then(() => inFlight.delete(p));
      if (inFlight.size >= window) await Promise.race(inFlight);
      if (performance.now() > end) stop = true;
    }
  });
  await Promise.all(loops);
  const counts = [...perRoomCount];
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(pid) - cpu0;
  const total = counts.reduce((a, b) => a + b, 0);
  const mean = total / rooms;
  confab.close(members);
  confab.stop();
  return {
    workload: 'c',
    system: 'confab',
    rooms,
    membersPerRoom: perRoom,
    seconds,
    deliveriesPerSecond: Math.round(total / elapsed),
    perRoomDeliveries: { min: Math.min(...counts), max: Math.max(...counts), mean: Math.round(mean) },
    maxDeviationFromMeanPercent: round((Math.max(...counts.map((c) => Math.abs(c - mean))) / mean) * 100, 1),
    serverCpuSecondsPerMillionDeliveries: round(cpu / (total / 1e6)),
  };
}

/** (d): idle connections, each joined to a room of 10; server memory per connection. */
async function idle(connections) {
  const pid = await confab.start();
  const warm = await Promise.all(
    Array.from({ length: 50 }, (_, i) => RawClient.open(confab.server.port, `w${i}`, roomId(9999))),
  );
  confab.close(warm);
  await new Promise((r) => setTimeout(r, 500));
  const before = rssBytes(pid);
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
  await new Promise((r) => setTimeout(r, 2000));
  const after = rssBytes(pid);
  const cpu0 = cpuSeconds(pid);
  await new Promise((r) => setTimeout(r, 3000));
  const idleCpu = cpuSeconds(pid) - cpu0;
  confab.close(clients);
  confab.stop();
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

const redis = values['no-redis'] ? null : await findRedis();
if (!values['no-redis'] && redis === null)
  console.error('bench: no Redis to compare with (none on 6379, no redis-server)');

const print = (o) => console.log(JSON.stringify(o));
/** The store's price: the same workload without it, and the ratio of CPU per million deliveries. */
function storeCost(workload, withStore, without) {
  print(without);
  print({
    workload,
    storeCost: {
      cpuPerMillionDeliveriesWithStore: withStore.serverCpuSecondsPerMillionDeliveries,
      cpuPerMillionDeliveriesWithout: without.serverCpuSecondsPerMillionDeliveries,
      ratio: round(withStore.serverCpuSecondsPerMillionDeliveries / without.serverCpuSecondsPerMillionDeliveries),
    },
  });
}
if (ONLY.has('a')) {
  const c = await fanoutBurst(confab, 1000, 2000);
  print(c);
  if (!values['no-store-cost']) storeCost('a', c, await fanoutBurst(confabSystem('none'), 1000, 2000));
  if (redis) {
    const r = await fanoutBurst(redisSystem(redis), 1000, 2000);
    print(r);
    print({
      workload: 'a',
      ratioConfabToRedisCpuPerMillionDeliveries: round(
        c.serverCpuSecondsPerMillionDeliveries / r.serverCpuSecondsPerMillionDeliveries,
      ),
    });
  }
}
if (ONLY.has('b')) {
  const c = await fanoutRate(confab, 200, 1000, 5);
  print(c);
  if (!values['no-store-cost']) storeCost('b', c, await fanoutRate(confabSystem('none'), 200, 1000, 5));
  if (redis) {
    const r = await fanoutRate(redisSystem(redis), 200, 1000, 5);
    print(r);
    print({
      workload: 'b',
      ratioConfabToRedisCpuPerMillionDeliveries: round(
        c.serverCpuSecondsPerMillionDeliveries / r.serverCpuSecondsPerMillionDeliveries,
      ),
      ratioConfabToRedisP99: round(c.latencyMs.p99 / r.latencyMs.p99),
    });
  }
}
if (ONLY.has('c')) print(await manyRooms(100, 10, 5));
if (ONLY.has('d')) print(await idle(5000));
redis?.stop();
