// Soak test (a script, not part of CI): many clients for a long time with
// reconnects; reports server memory growth and event-loop delay.
//
//   node bench/soak.mjs [--clients 1000] [--minutes 10] [--rooms 10]
//
// Each client sends one message every 10 s; 2% of clients reconnect each minute.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { newIdentity } from '../dist/crypto/index.js';
import { encodeFrame } from '../dist/protocol/index.js';
import { RawClient, round, spawnServer } from './lib.mjs';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    minutes: { type: 'string', default: '10' },
    rooms: { type: 'string', default: '10' },
  },
});
const N = Number(values.clients);
const MINUTES = Number(values.minutes);
const ROOMS = Number(values.rooms);
const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
// As deployed: history in SQLite in a data directory of its own.
const DATA = mkdtempSync(join(tmpdir(), 'confab-soak-'));

const server = spawnServer(
  process.execPath,
  [
    CLI,
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--stats',
    '10',
    '--log-level',
    'info',
    '--data',
    DATA,
    ...['maxConnectionsPerIp=100000', 'connectionsPerIpPerMinute=10000000', 'newRowsPerIp=10000000'].flatMap((l) => [
      '--limit',
      l,
    ]),
  ],
  { stdio: ['ignore', 'pipe', 'pipe'] },
);
const stats = [];
let errors = 0;
server.stderr.setEncoding('utf8').on('data', (chunk) => {
  for (const line of chunk.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const o = JSON.parse(line);
      if (o.msg === 'stats') stats.push({ at: Date.now(), ...o });
      if (o.level >= 50) errors++;
    } catch {
      // not a log line
    }
  }
});
const port = await new Promise((resolve) => {
  let buf = '';
  server.stdout.setEncoding('utf8').on('data', (c) => {
    buf += c;
    const m = /listening on [^:]+:(\d+)/.exec(buf);
    if (m) resolve(Number(m[1]));
  });
});

const roomId = (i) => new Uint8Array(16).fill(1 + (i % ROOMS));
const clients = new Array(N);
const identities = Array.from({ length: N }, () => newIdentity());
let received = 0;
let sent = 0;
let reconnects = 0;
async function open(i) {
  const c = await RawClient.open(port, `s${i}`, roomId(i), identities[i]);
  c.onFrame = (f) => {
    if (f[0] === 0x86) received++;
    if (f[0] === 0x10) c.socket.write(encodeFrame({ type: 'pong', token: 0 })); // answer heartbeats
  };
  clients[i] = c;
}
for (let i = 0; i < N; i += 100) await Promise.all(Array.from({ length: Math.min(100, N - i) }, (_, j) => open(i + j)));
console.error(`soak: ${N} clients connected; running ${MINUTES} min`);

const start = Date.now();
const end = start + MINUTES * 60_000;
// Every message its own id: a repeated id is a resend, which the server acknowledges and drops.
const mid = crypto.getRandomValues(new Uint8Array(16));
let rid = 0;
const sender = setInterval(() => {
  // Every second, a tenth of the clients send: one message per client per 10 s.
  const second = Math.floor((Date.now() - start) / 1000);
  for (let i = second % 10; i < N; i += 10) {
    new DataView(mid.buffer).setUint32(12, ++rid);
    clients[i]?.socket.write(encodeFrame({ type: 'send', rid, room: roomId(i), mid, body: new Uint8Array(64) }));
    sent++;
  }
}, 1000);
const churn = setInterval(() => {
  // 2% of clients per minute drop and come back.
  for (let k = 0; k < Math.ceil(N * 0.02); k++) {
    const i = Math.floor(Math.random() * N);
    clients[i]?.close();
    clients[i] = undefined;
    reconnects++;
    void open(i).catch(() => {});
  }
}, 60_000);
await new Promise((r) => setTimeout(r, end - Date.now()));
clearInterval(sender);
clearInterval(churn);
await new Promise((r) => setTimeout(r, 11_000)); // one more stats line
for (const c of clients) c?.close();

const at = (minute) => stats.find((s) => s.at - start >= minute * 60_000) ?? stats.at(-1);
const first = at(Math.min(2, MINUTES / 2));
const last = stats.at(-1);
console.log(
  JSON.stringify({
    workload: 'soak',
    clients: N,
    minutes: MINUTES,
    messagesSent: sent,
    deliveriesReceived: received,
    reconnects,
    rssMB: { atMinute2: round(first.rssBytes / 1e6, 1), atEnd: round(last.rssBytes / 1e6, 1) },
    rssGrowthMB: round((last.rssBytes - first.rssBytes) / 1e6, 1),
    // Still rising at the end, or levelled off: what tells a leak from caches filling.
    rssMBByMinute: Array.from({ length: MINUTES + 1 }, (_, m) => round(at(m).rssBytes / 1e6, 1)),
    heapUsedMB: { atMinute2: round(first.heapUsedBytes / 1e6, 1), atEnd: round(last.heapUsedBytes / 1e6, 1) },
    eventLoopDelayP99Ms: {
      worst: Math.max(...stats.map((s) => s.eventLoopDelayMs.p99)),
      last: last.eventLoopDelayMs.p99,
    },
    serverErrorLogLines: errors,
  }),
);
server.kill('SIGTERM');
server.once('exit', () => rmSync(DATA, { recursive: true, force: true }));
