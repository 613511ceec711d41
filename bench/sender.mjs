// The sender of workload (b), in a thread of its own (workloads.mjs starts it).
//
// It sends each message alone, when it is due: it sleeps until then in
// Atomics.wait (to within about 0.1 ms, where a timer fires 1-2 ms late), and
// between messages it gives its event loop one turn to read the server's
// answers. A sender paced by a timer in the receivers' own event loop sent
// one to five messages per tick, as that loop allowed, so the arrival of
// messages, and with it how many the server could write in one go, depended
// on the system under test (doc/PERFORMANCE.md, 2026-11-27).
import { parentPort, workerData } from 'node:worker_threads';
import { confabSender, stamped } from './lib.mjs';
import { publisher } from './redis.mjs';

const { kind, port, room, nick, channel, size, mainOrigin } = workerData;
// Each message carries when it was due, on the main thread's clock, which the receivers read.
const offset = performance.timeOrigin - mainOrigin;
const send = kind === 'redis' ? (await publisher(port, channel)).publish : (await confabSender(port, room, nick)).send;
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const turn = () => new Promise((resolve) => setImmediate(resolve));

/** Sends `count` messages `1000 / rate` ms apart; answers with how late each left, in ms, sorted. */
parentPort.on('message', async ({ rate, count }) => {
  const late = new Float64Array(count);
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const when = t0 + (i * 1000) / rate;
    const wait = when - performance.now();
    if (wait > 0) Atomics.wait(sleeper, 0, 0, wait);
    late[i] = performance.now() - when;
    void send(stamped(when + offset, size));
    await turn();
  }
  late.sort();
  parentPort.postMessage(late, [late.buffer]);
});
parentPort.postMessage('ready');
