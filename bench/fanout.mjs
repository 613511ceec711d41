// The native fan-out's two ways of writing a turn, side by side: one send()
// per socket, or the turn through io_uring. 200 loopback sockets, 100-byte
// writes, the readers in a child process so that this process's CPU is the
// writing alone. Alternates the two ways for --rounds rounds and prints one
// JSON line per round and way, then the medians.
//
//   node bench/fanout.mjs [--sockets 200] [--turns 3000] [--rounds 5]
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { createServer, connect } from 'node:net';
import { parseArgs } from 'node:util';
import { DirectWriter, fanoutAddon, socketFd } from '../dist/server/direct-write.js';
import { median, round } from './lib.mjs';

const { values } = parseArgs({
  options: {
    sockets: { type: 'string', default: '200' },
    turns: { type: 'string', default: '3000' },
    rounds: { type: 'string', default: '5' },
    reader: { type: 'string' },
  },
});

if (values.reader !== undefined) {
  // The child: connects and reads everything until told to stop.
  const port = Number(values.reader);
  const sockets = [];
  for (let i = 0; i < Number(values.sockets); i++) {
    const s = connect(port, '127.0.0.1');
    s.on('data', () => {});
    sockets.push(s);
  }
  process.on('message', () => {
    for (const s of sockets) s.destroy();
    process.exit(0);
  });
} else {
  await main();
}

async function main() {
  if (fanoutAddon === null) {
    console.error('the native fan-out was not built here; nothing to compare');
    process.exit(1);
  }
  const count = Number(values.sockets);
  const turns = Number(values.turns);
  const accepted = [];
  // As the relay's sockets: no Nagle, each write goes out as it is made.
  const server = createServer({ noDelay: true }, (s) => accepted.push(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const reader = fork(new URL(import.meta.url), [
    '--sockets',
    String(count),
    '--reader',
    String(server.address().port),
  ]);
  while (accepted.length < count) await new Promise((r) => setTimeout(r, 10));

  const payload = Buffer.alloc(100, 'x');
  // Writes the kernel did not take at once and the streams queued (0 while the readers keep up).
  let streamed = 0;
  const targets = accepted.map((socket) => {
    const t = {
      fd: socketFd(socket),
      socket,
      out: null,
      takeOutput() {
        const o = t.out;
        t.out = null;
        return o;
      },
      writeStream(o) {
        streamed++;
        socket.write(o);
      },
    };
    return t;
  });
  const ways = fanoutAddon.ringReady() ? ['send', 'io_uring'] : ['send'];
  if (ways.length === 1) console.error('io_uring is not available here (kernel, sysctl or seccomp); send() only');
  const perWay = Object.fromEntries(ways.map((w) => [w, []]));

  for (let r = 1; r <= Number(values.rounds); r++) {
    for (const way of r % 2 === 1 ? ways : [...ways].reverse()) {
      const writer = new DirectWriter(fanoutAddon, way === 'io_uring');
      streamed = 0;
      const cpu0 = process.cpuUsage();
      for (let turn = 0; turn < turns; turn++) {
        for (const t of targets) {
          t.out = payload;
          writer.add(t);
        }
        writer.finish();
        // Let the readers keep up, as a relay's turns are spaced by its input.
        if (turn % 8 === 7) await new Promise((res) => setImmediate(res));
      }
      const cpu = process.cpuUsage(cpu0);
      const us = (cpu.user + cpu.system) / (turns * count);
      perWay[way].push(us);
      console.log(
        JSON.stringify({
          workload: 'fanout',
          way,
          round: r,
          sockets: count,
          turns,
          cpuMicrosecondsPerWrite: round(us),
          userMicrosecondsPerWrite: round(cpu.user / (turns * count)),
          streamed,
        }),
      );
    }
  }
  const summary = { workload: 'fanout', rounds: Number(values.rounds) };
  for (const w of ways) summary[`${w}CpuMicrosecondsPerWrite`] = round(median(perWay[w]));
  if (ways.length === 2) summary.ratioIoUringToSend = round(median(perWay.io_uring) / median(perWay.send));
  console.log(JSON.stringify(summary));
  reader.send('stop');
  for (const s of accepted) s.destroy();
  server.close();
}
