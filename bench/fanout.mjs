// Fan-out benchmark: one room, R receivers, one sender sending M messages as
// fast as the server acknowledges them (a window of W in flight). The server
// runs in its own process; its CPU comes from its own procfs accounting.
//
//   node bench/fanout.mjs [--receivers 1000] [--messages 2000] [--size 64] [--window 64]
//
// Prints one JSON object.
import { parseArgs } from 'node:util';
import { encodeFrame, FrameType } from '../dist/protocol/index.js';
import { cpuSeconds, deliverBodyOffset, percentile, RawClient, round, rssBytes, startServerProcess } from './lib.mjs';

const { values } = parseArgs({
  options: {
    receivers: { type: 'string', default: '1000' },
    messages: { type: 'string', default: '2000' },
    size: { type: 'string', default: '64' },
    window: { type: 'string', default: '64' },
  },
});
const R = Number(values.receivers);
const M = Number(values.messages);
const SIZE = Math.max(8, Number(values.size));
const W = Number(values.window);

const room = new Uint8Array(16).fill(7);
const server = await startServerProcess();
const rssBefore = rssBytes(server.pid);

// Receivers join in batches so the join storm itself is not what we measure.
const receivers = [];
for (let i = 0; i < R; i += 100) {
  const batch = await Promise.all(
    Array.from({ length: Math.min(100, R - i) }, (_, j) => RawClient.open(server.port, `r${i + j}`, room)),
  );
  receivers.push(...batch);
}
const sender = await RawClient.open(server.port, 'sender', room);
await new Promise((r) => setTimeout(r, 200)); // let the join notices drain

const latencies = new Float64Array(R * M);
let delivered = 0;
let lastDelivery = 0;
let done;
const allDelivered = new Promise((r) => (done = r));
for (const rc of receivers) {
  rc.onFrame = (f) => {
    if (f[0] !== FrameType.DELIVER) return;
    const at = deliverBodyOffset(f);
    const view = new DataView(f.buffer, f.byteOffset + at, 8);
    latencies[delivered++] = performance.now() - view.getFloat64(0);
    if (delivered === R * M) {
      lastDelivery = performance.now();
      done();
    }
  };
}

const rssLoaded = rssBytes(server.pid);
const cpu0 = cpuSeconds(server.pid);
const t0 = performance.now();
let sent = 0;
let acked = 0;
const mid = new Uint8Array(16);
function sendOne() {
  const body = new Uint8Array(SIZE);
  new DataView(body.buffer).setFloat64(0, performance.now());
  sent++;
  sender.socket.write(encodeFrame({ type: 'send', rid: sent, room, mid, body }));
}
sender.onFrame = (f) => {
  if (f[0] !== FrameType.ACK) return;
  acked++;
  if (sent < M) sendOne();
};
for (let i = 0; i < Math.min(W, M); i++) sendOne();

const timeout = setTimeout(() => done(), 120_000);
await allDelivered;
clearTimeout(timeout);
const cpu1 = cpuSeconds(server.pid);
const elapsed = ((lastDelivery || performance.now()) - t0) / 1000;
const sorted = latencies.subarray(0, delivered).sort();

const result = {
  workload: 'fanout-1-room',
  receivers: R,
  messages: M,
  payloadBytes: SIZE,
  window: W,
  expectedDeliveries: R * M,
  delivered,
  lost: R * M - delivered,
  acked,
  seconds: round(elapsed),
  deliveriesPerSecond: Math.round(delivered / elapsed),
  latencyMs: {
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1) ?? NaN),
  },
  serverCpuSeconds: round(cpu1 - cpu0),
  serverCpuSecondsPerMillionDeliveries: round((cpu1 - cpu0) / (delivered / 1e6)),
  serverRssPerConnectionBytes: Math.round((rssLoaded - rssBefore) / (R + 1)),
};
console.log(JSON.stringify(result));

for (const rc of receivers) rc.close();
sender.close();
server.child.kill('SIGTERM');
