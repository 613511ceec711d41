// The same fan-out workloads against Redis pub/sub, as the yardstick. Raw RESP
// over sockets, so the load generator costs the same for both servers.
import { connect } from 'node:net';
import { recordReader, sharedRead, spawnServer } from './lib.mjs';

/** A Redis server to measure: the one on 127.0.0.1:6379 if it answers, else one started here. */
export async function findRedis() {
  const existing = await info(6379).catch(() => null);
  if (existing !== null) return { port: 6379, pid: existing.pid, stop: () => {} };
  const port = 6390;
  const child = spawnServer(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 50; i++) {
    const ok = await info(port).catch(() => null);
    if (ok !== null) return { port, pid: ok.pid, stop: () => child.kill('SIGTERM') };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  return null;
}

function info(port) {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let buf = '';
    s.setTimeout(1000, () => {
      s.destroy();
      reject(new Error('timeout'));
    });
    s.on('error', reject);
    s.on('connect', () => s.write('INFO server\r\n'));
    s.on('data', (c) => {
      buf += c.toString('latin1');
      const m = /process_id:(\d+)/.exec(buf);
      if (m) {
        s.destroy();
        resolve({ pid: Number(m[1]) });
      }
    });
  });
}

const bulk = (b) => Buffer.concat([Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n')]);

/** A `message` push of a `size`-byte payload on `channel`: its length, and where its payload starts. */
export function pushLayout(channel, size) {
  const head = `*3\r\n$7\r\nmessage\r\n$${channel.length}\r\n${channel}\r\n$${size}\r\n`;
  return { record: head.length + size + 2, payloadAt: head.length };
}

/** A subscriber: parses fixed-size `message` pushes and hands each payload to `onPayload`. */
export function subscribe(port, channel, size, onPayload) {
  return new Promise((resolve, reject) => {
    const ack = `*3\r\n$9\r\nsubscribe\r\n$${channel.length}\r\n${channel}\r\n:1\r\n`;
    const { record, payloadAt } = pushLayout(channel, size);
    let subscribed = false;
    // The subscription's acknowledgement, then fixed-size pushes, read in place
    // from the load generator's one shared buffer, as confab's receivers are (lib.mjs).
    const onRead = recordReader(
      () => (subscribed ? record : ack.length),
      (buf, at) => {
        if (subscribed) {
          onPayload(buf, at + payloadAt);
        } else {
          subscribed = true;
          resolve(s);
        }
      },
    );
    const s = connect({
      host: '127.0.0.1',
      port,
      noDelay: true,
      onread: { ...sharedRead, callback: (n, read) => onRead(read.subarray(0, n)) },
    });
    s.on('error', reject);
    s.on('connect', () => s.write(`SUBSCRIBE ${channel}\r\n`));
  });
}

/** A publisher connection; `publish` resolves once Redis has answered. */
export function publisher(port, channel) {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, noDelay: true });
    const waiting = [];
    let buf = '';
    s.on('error', reject);
    s.on('data', (c) => {
      buf += c.toString('latin1');
      let nl;
      while ((nl = buf.indexOf('\r\n')) >= 0) {
        buf = buf.slice(nl + 2);
        waiting.shift()?.();
      }
    });
    s.on('connect', () => {
      const prefix = Buffer.concat([Buffer.from(`*3\r\n$7\r\nPUBLISH\r\n`), bulk(Buffer.from(channel))]);
      resolve({
        socket: s,
        publish(payload) {
          s.write(Buffer.concat([prefix, bulk(payload)]));
          return new Promise((r) => waiting.push(r));
        },
      });
    });
  });
}
