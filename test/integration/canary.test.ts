import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { newRoomSecret } from '../../src/crypto/index.js';
import { startServer } from '../../src/server/index.js';
import { Mitm } from '../helpers/mitm.js';
import { ROOMY_LIMITS, until } from '../helpers/net.js';
import { secureMember } from '../helpers/secure.js';

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

function count(haystack: Buffer, needle: Buffer): number {
  let n = 0;
  for (let at = haystack.indexOf(needle); at >= 0; at = haystack.indexOf(needle, at + 1)) n++;
  return n;
}

// 1,000 messages carrying a random marker: the server must never see it. It
// is looked for in the data directory, the server's logs at debug level, and
// every byte that crossed the wire in both directions.
describe('canary', () => {
  it('a marker in 1,000 messages appears nowhere the server or the network can see', async () => {
    const marker = `canary-${randomBytes(12).toString('hex')}`;
    const logChunks: Buffer[] = [];
    const logSink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logChunks.push(Buffer.from(chunk));
        done();
      },
    });
    const dataDir = mkdtempSync(join(tmpdir(), 'confab-canary-data-'));
    const server = await startServer({
      host: '127.0.0.1',
      port: 0,
      dataDir,
      logger: pino({ level: 'debug' }, logSink),
      limits: ROOMY_LIMITS,
    });
    const mitm = await Mitm.start(server.port);
    const secret = newRoomSecret();
    const alice = await secureMember(mitm.port, secret, 'alice');
    const bob = await secureMember(mitm.port, secret, 'bob');
    try {
      for (let i = 0; i < 1000; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, j) => (j % 2 === 0 ? alice : bob).room.send(`${marker} ${i + j}`)),
        );
      }
      await until(() => alice.messages.length + bob.messages.length === 1000, 20_000, 'all 1,000 delivered');
    } finally {
      await alice.close();
      await bob.close();
      await mitm.close();
      await server.close();
    }
    // The members did read it: the marker is really in the messages.
    expect([...alice.messages, ...bob.messages].filter((m) => m.text.startsWith(marker))).toHaveLength(1000);

    const needle = Buffer.from(marker);
    const wire = Buffer.concat(mitm.captured);
    const logs = Buffer.concat(logChunks);
    const stored = filesUnder(dataDir).map((f) => readFileSync(f));
    expect(wire.length).toBeGreaterThan(1000 * 300); // the traffic was captured
    expect(logs.toString()).toContain('"msg":"hello"'); // debug logging was on
    const found = {
      wire: count(wire, needle),
      logs: count(logs, needle),
      dataDir: stored.reduce((n, b) => n + count(b, needle), 0),
    };
    console.log(
      `canary: 1000 messages; marker found ${found.wire} times on the wire (${wire.length} bytes), ` +
        `${found.logs} in ${logs.length} bytes of logs, ${found.dataDir} in ${stored.length} stored files`,
    );
    expect(found).toEqual({ wire: 0, logs: 0, dataDir: 0 });
  });
});
