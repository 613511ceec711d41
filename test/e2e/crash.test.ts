import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { inviteRoomId, parseInvite } from '../../src/client/index.js';
import { SqliteHistory, HISTORY_FILE } from '../../src/server/index.js';
import { member, room, text } from '../helpers/clients.js';
import type { Recorder } from '../helpers/clients.js';
import { Proc, serve, tempHome } from '../helpers/cli.js';
import { until } from '../helpers/net.js';
import { secureMember } from '../helpers/secure.js';
import type { SecureMember } from '../helpers/secure.js';

// Durability under crashes (issue 5): the server, then a receiver, killed with
// SIGKILL mid-stream. What was acknowledged must be stored once and reach
// everyone once, in each sender's order.

const procs: Proc[] = [];
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  for (const p of procs.splice(0)) {
    p.kill('SIGKILL');
    await p.exited;
  }
});

const ROOMY = [
  '--limit',
  'messageBurst=1000000',
  '--limit',
  'messageIntervalMs=1',
  '--limit',
  'maxConnectionsPerIp=1000',
  '--limit',
  'newRowsPerIp=1000000',
  '--limit',
  'connectionsPerIpPerMinute=1000000',
  '--log-level',
  'warn',
];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const decoder = new TextDecoder();

describe('crash safety', () => {
  it(
    'server SIGKILLed 5 times under 10 senders × 1,000 messages: every acknowledged message stored once, delivered once, in order',
    { timeout: 180_000 },
    async () => {
      const SENDERS = 10;
      const PER_SENDER = 1000;
      const RECEIVERS = 3;
      const KILLS = 5;
      const data = tempHome();
      let started = await serve(['--data', data, ...ROOMY]);
      procs.push(started.proc);
      const port = started.port;
      const r = room(42);
      const fast = { backoff: { baseMs: 20, maxMs: 250 }, maxPending: PER_SENDER };
      const track = (m: Recorder): Recorder => {
        closers.push(() => m.client.close());
        return m;
      };
      const receivers = await Promise.all(
        Array.from({ length: RECEIVERS }, (_, i) => member(port, r, `rx${i}`, fast, { backlog: 0 }).then(track)),
      );
      const senders = await Promise.all(
        Array.from({ length: SENDERS }, (_, i) => member(port, r, `tx${i}`, fast, { backlog: 0 }).then(track)),
      );

      // Each sender sends its 1,000 at about 1 per 8 ms; every promise settles on its ACK.
      const acks: { sender: number; n: number; seq: number }[] = [];
      let sent = 0;
      const sending = senders.map(async (s, i) => {
        const pending: Promise<void>[] = [];
        for (let n = 1; n <= PER_SENDER; n++) {
          sent++;
          pending.push(s.client.send(r, text(`${i}:${n}`)).then((a) => void acks.push({ sender: i, n, seq: a.seq })));
          await sleep(8);
        }
        await Promise.all(pending);
      });

      // Meanwhile: SIGKILL the server at random moments, and restart it on the same port and data.
      const kills: number[] = [];
      for (let k = 0; k < KILLS; k++) {
        await sleep(600 + Math.random() * 900);
        kills.push(acks.length);
        started.proc.kill('SIGKILL');
        await started.proc.exited;
        started = await serve(['--data', data, '--port', String(port), ...ROOMY]);
        procs.push(started.proc);
      }
      await Promise.all(sending);
      const total = SENDERS * PER_SENDER;
      for (const rx of receivers) await until(() => rx.events.message.length >= total, 60_000, 'every delivery');
      await sleep(300); // anything extra (a duplicate) would arrive now
      started.proc.kill('SIGTERM');
      await started.proc.exited;

      const db = new SqliteHistory({ path: join(data, HISTORY_FILE), retention: { messages: 1e9, maxAgeMs: 1e15 } });
      let stored: string[];
      try {
        expect(db.check()).toBe('ok');
        stored = db.read(r, 0, 1_000_000, 1e12).messages.map((m) => decoder.decode(m.body));
      } finally {
        db.close();
      }
      const ackedKeys = new Set(acks.map((a) => `${a.sender}:${a.n}`));
      const storedCount = new Map<string, number>();
      for (const b of stored) storedCount.set(b, (storedCount.get(b) ?? 0) + 1);
      let lost = 0;
      for (const k of ackedKeys) if (storedCount.get(k) !== 1) lost++;
      const storedDuplicates = [...storedCount.values()].filter((c) => c > 1).length;

      let delivered = 0;
      let deliveredDuplicates = 0;
      let missing = 0;
      let outOfOrder = 0;
      for (const rx of receivers) {
        const seen = rx.events.message.map((m) => decoder.decode(m.body));
        delivered += seen.length;
        const counts = new Map<string, number>();
        for (const b of seen) counts.set(b, (counts.get(b) ?? 0) + 1);
        deliveredDuplicates += [...counts.values()].filter((c) => c > 1).length;
        for (const k of ackedKeys) if (!counts.has(k)) missing++;
        const last = new Array<number>(SENDERS).fill(0);
        for (const b of seen) {
          const [s, n] = b.split(':').map(Number) as [number, number];
          if (n <= (last[s] as number)) outOfOrder++;
          last[s] = n;
        }
        // The room's numbers reach each receiver in order, each once.
        const seqs = rx.events.message.map((m) => m.seq);
        expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
        expect(new Set(seqs).size).toBe(seqs.length);
      }
      console.log(
        `crash test: ${KILLS} SIGKILLs (after ${kills.join(', ')} acks); sent ${sent}, acknowledged ${acks.length} ` +
          `(${new Set(acks.map((a) => a.seq)).size} distinct seqs), stored ${stored.length}, ` +
          `delivered ${delivered} to ${RECEIVERS} receivers, duplicated ${storedDuplicates + deliveredDuplicates}, ` +
          `lost ${lost + missing}, out of order ${outOfOrder}`,
      );
      expect(acks.length).toBe(total);
      expect(new Set(acks.map((a) => a.seq)).size).toBe(total);
      expect(stored.length).toBe(total);
      expect(storedDuplicates).toBe(0);
      expect(lost).toBe(0);
      expect(delivered).toBe(total * RECEIVERS);
      expect(deliveredDuplicates).toBe(0);
      expect(missing).toBe(0);
      expect(outOfOrder).toBe(0);
    },
  );

  it(
    'a receiver SIGKILLed and restarted (confab join --json, same home) misses nothing',
    { timeout: 60_000 },
    async () => {
      const started = await serve(['--data', tempHome(), ...ROOMY]);
      procs.push(started.proc);
      const home = tempHome();
      const rxArgs = (invite: string): string[] => ['join', invite, '--nick', 'rx', '--json', '--home', home];
      const creator = new Proc([
        'join',
        `127.0.0.1:${started.port}`,
        '--nick',
        'owner',
        '--json',
        '--home',
        tempHome(),
      ]);
      procs.push(creator);
      const invite = (JSON.parse(await creator.line(/"type":"invite"/)) as { link: string }).link;
      const alice: SecureMember = await secureMember(started.port, parseInvite(invite).secret, 'alice');
      closers.push(() => alice.close());

      const first = new Proc(rxArgs(invite));
      procs.push(first);
      await first.line(/"type":"joined"/);
      const TOTAL = 300;
      const sending = (async () => {
        for (let n = 1; n <= TOTAL; n++) {
          await alice.room.send(`n${n}`);
          await sleep(5);
        }
      })();
      await until(() => first.stdout.filter((l) => l.includes('"type":"message"')).length >= 60, 20_000);
      first.kill('SIGKILL');
      await first.exited;
      await sleep(400); // messages keep coming while it is dead
      const second = new Proc(rxArgs(invite));
      procs.push(second);
      await sending;
      const texts = (p: Proc): string[] =>
        p.stdout
          .map((l) => JSON.parse(l) as { type: string; text?: string; history?: boolean })
          .filter((e) => e.type === 'message')
          .map((e) => e.text ?? '');
      await until(() => texts(second).includes(`n${TOTAL}`), 30_000, 'the restarted receiver to catch up');
      const all = [...texts(first), ...texts(second)];
      const shownTwice = all.length - new Set(all).size;
      const missing = Array.from({ length: TOTAL }, (_, i) => `n${i + 1}`).filter((t) => !all.includes(t));
      console.log(
        `receiver crash: first run showed ${texts(first).length}, after the restart ${texts(second).length}; ` +
          `missing ${missing.length}, shown twice ${shownTwice}`,
      );
      expect(missing).toEqual([]);
      expect(shownTwice).toBeLessThanOrEqual(1); // at most the one message being shown at the instant of the kill
      expect(texts(second)).toEqual([...texts(second)].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1))));
    },
  );

  it(
    'a sender SIGKILLed with unacknowledged messages resends them from its outbox at restart; none twice',
    { timeout: 60_000 },
    async () => {
      const started = await serve(['--data', tempHome(), ...ROOMY]);
      procs.push(started.proc);
      const home = tempHome();
      const first = new Proc(['join', `127.0.0.1:${started.port}`, '--nick', 'tx', '--home', home]);
      procs.push(first);
      const invite = (await first.line(/^\* invite: /)).replace('* invite: ', '');
      const bob = await secureMember(started.port, parseInvite(invite).secret, 'bob');
      closers.push(() => bob.close());
      await first.line(/(^\* bob \d{5}-\d{5} joined|here: .*bob \d{5}-\d{5})$/);
      for (let n = 1; n <= 5; n++) first.write(`m${n}\n`);
      await until(() => bob.messages.length === 5);

      // The server stops answering; five more are sealed, kept in the outbox and sent, but never acknowledged.
      started.proc.child.kill('SIGSTOP');
      for (let n = 6; n <= 10; n++) first.write(`m${n}\n`);
      const roomFile = join(home, 'rooms', `${Buffer.from(roomIdOf(invite)).toString('hex')}.json`);
      await until(() => outboxSize(roomFile) === 5, 5000, 'five messages in the outbox');
      first.kill('SIGKILL');
      await first.exited;
      started.proc.child.kill('SIGCONT'); // it may now take what reached it before the kill: then the resends are duplicates

      const second = new Proc(['join', invite, '--nick', 'tx', '--home', home]);
      procs.push(second);
      second.end(); // nothing new to say: it resends its outbox, waits for the acknowledgements, and leaves
      await second.line(/^\* sending 5 messages left unacknowledged by your last session$/);
      expect(await second.exited).toBe(0);
      await until(() => bob.messages.length >= 10);
      await sleep(200);
      expect(bob.messages.map((m) => m.text)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i + 1}`));
      expect(bob.rejected).toEqual([]);
      expect(outboxSize(roomFile)).toBe(0);
    },
  );
});

function roomIdOf(invite: string): Uint8Array {
  return inviteRoomId(parseInvite(invite));
}

function outboxSize(path: string): number {
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { outbox?: unknown[] }).outbox?.length ?? 0;
  } catch {
    return -1;
  }
}
