import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseInvite } from '../../src/client/index.js';
import { confab, Proc, serve, tempHome } from '../helpers/cli.js';
import { inOrderServer } from '../helpers/in-order-server.js';
import { Link } from '../helpers/link.js';
import { until } from '../helpers/net.js';
import { Tty } from '../helpers/pty.js';
import { sendAnswering, UNREADABLE_FRAME } from '../helpers/send-answering.js';
import { secureMember } from '../helpers/secure.js';
import type { SecureMember } from '../helpers/secure.js';

// The interactive client is `confab join` with a terminal on both ends: here a
// pseudo-terminal, drawing on a headless xterm.js. The others in the room are
// the built CLI in line mode (--json, to read exactly what arrives) or, to send
// what no CLI would, the client library.

const procs: Proc[] = [];
const ttys: Tty[] = [];
const members: SecureMember[] = [];
afterEach(async () => {
  for (const t of ttys.splice(0)) {
    t.kill();
    await t.exited;
  }
  for (const m of members.splice(0)) await m.close();
  for (const p of procs.splice(0)) {
    p.kill('SIGKILL');
    await p.exited;
  }
});
function track<T extends Proc | Tty>(x: T): T {
  if (x instanceof Tty) ttys.push(x);
  else procs.push(x);
  return x;
}

interface Received {
  type: string;
  nick?: string;
  text?: string;
  action?: boolean;
  reason?: string;
  history?: boolean;
}
// Colour and other attributes: ESC [ ... m.
// eslint-disable-next-line no-control-regex -- matching escape sequences is the point
const SGR = /\u001b\[[0-9;]*m/;
const events = (p: Proc): Received[] => p.stdout.map((l) => JSON.parse(l) as Received);
/** Texts of the live messages a --json client printed (history left out). */
const texts = (p: Proc): string[] =>
  events(p).flatMap((e) => (e.type === 'message' && e.history !== true ? [e.text ?? ''] : []));

/** A server, alice in the interactive client (she creates the room), bob in line mode with --json. */
async function room(options: { cols?: number; rows?: number; args?: string[]; env?: NodeJS.ProcessEnv } = {}) {
  const data = tempHome();
  const { proc: server, port } = await serve(['--limit', 'messageIntervalMs=2', '--data', data]);
  track(server);
  const alice = track(
    new Tty(['join', `127.0.0.1:${port}`, '--nick', 'alice', '--home', tempHome(), ...(options.args ?? [])], options),
  );
  const invite = (await alice.line(/\* invite: confab:\/\//)).replace(/^.*invite: /, '');
  await alice.prompt('');
  const bob = track(new Proc(['join', invite, '--nick', 'bob', '--json', '--home', tempHome()]));
  await bob.line(/"type":"joined"/);
  await alice.line(/^\d\d:\d\d \* bob \d{5}-\d{5} joined$/);
  return { server, port, invite, alice, bob, data };
}

describe('confab join in a terminal (the interactive client)', () => {
  it('prints 20 arriving messages above a half-typed line, through a resize, then sends it on Enter', async () => {
    const { alice, bob } = await room({ cols: 80, rows: 24 });
    alice.type('hello wor');
    const before = await alice.prompt('hello wor');

    bob.write(Array.from({ length: 10 }, (_, i) => `message ${i + 1}`).join('\n') + '\n');
    await alice.line(/<bob> message 10$/);
    await alice.prompt('hello wor');

    alice.resize(50, 20);
    await alice.prompt('hello wor');
    bob.write(
      Array.from({ length: 10 }, (_, i) => `message ${i + 11} ${'is long enough to wrap '.repeat(2)}`).join('\n') +
        '\n',
    );
    await alice.line(/<bob> message 20 /);
    const prompt = await alice.prompt('hello wor');
    expect(prompt).toBe(before);

    const lines = alice.lines();
    const got = lines.flatMap((l) => /<bob> (message \d+)/.exec(l)?.[1] ?? []);
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => `message ${i + 1}`));
    // The half line is there once, last, with the cursor after it; nothing was sent.
    expect(lines.filter((l) => l.includes('hello wor'))).toHaveLength(1);
    expect(lines.at(-1)).toBe(prompt);
    expect(texts(bob)).toEqual([]);

    alice.type('ld\r');
    await bob.line(/"text":"hello world"/);
    await alice.line(/^\d\d:\d\d <alice> hello world$/);
    await alice.prompt('');
    expect(alice.lines().filter((l) => l.includes('hello wor'))).toHaveLength(1);
    expect(alice.titles).toEqual([]);
  });

  it('inserts keys that arrive together (an input method, a slow link) at the cursor, not at the end', async () => {
    const { alice, bob } = await room({ cols: 80, rows: 24 });
    alice.type('short input');
    await alice.prompt('short input');
    for (let i = 0; i < 5; i++) alice.type('\u001b[D'); // ← 5 times, one key at a time
    await alice.until(
      () => alice.term.buffer.active.cursorX === (alice.lines().at(-1) ?? '').length - 5,
      'the cursor 5 back',
    );
    alice.type('abc'); // one read: Node's readline put all but the last at the end of the line
    await alice.until(
      () => (alice.lines().at(-1) ?? '').endsWith('> short abcinput'),
      'the keys inserted at the cursor',
    );
    alice.type('\u0001xy\u0005!\r'); // Ctrl-A, two characters, Ctrl-E, one more, Enter: one read
    // Before: "short incputab", then "xshort ...".
    await bob.line(/"text":"xyshort abcinput!"/);
  });

  // xterm.js leaves the cursor's lines as they are on resize (as VS Code's terminal does); tmux, which
  // rewraps them like most terminals, is in tui-tmux.test.ts.
  it('keeps a wrapped input line, and the cursor inside it, through messages and resizes', async () => {
    const { alice, bob } = await room({ cols: 40, rows: 20 });
    const input = Array.from({ length: 12 }, (_, i) => `w${String(i).padStart(2, '0')}`).join(' '); // 47 columns
    alice.type(input);
    await alice.line(/w11$/);
    alice.type('\u001b[D'.repeat(20)); // ← 20 times: the cursor goes up into the first row of the input
    /** The input is on screen once, last, wrapped at the width, with the cursor 20 characters before its end. */
    const intact = (): boolean => {
      const lines = alice.lines();
      const last = lines.at(-1) ?? '';
      if (!/^#[0-9a-f]{6} alice \(connected\)> /.test(last) || !last.endsWith(input)) return false;
      if (lines.filter((l) => l.includes('w05') || l.includes('alice (connected)')).length !== 1) return false;
      const cols = alice.term.cols;
      const b = alice.term.buffer.active;
      const start = alice.rows().length - Math.ceil(last.length / cols);
      const offset = last.length - 20;
      return b.baseY + b.cursorY - start === Math.floor(offset / cols) && b.cursorX === offset % cols;
    };
    await alice.until(intact, 'the wrapped input, intact, with the cursor inside it');

    bob.write('one\ntwo\nthree is a longer message that wraps on a narrow screen\n');
    await alice.line(/<bob> three is a longer/);
    await alice.until(intact, 'the input intact after three messages');
    for (const [cols, rows] of [
      [30, 20],
      [72, 20],
      [40, 12],
    ] as const) {
      alice.resize(cols, rows);
      await alice.until(intact, `the input intact at ${cols}x${rows}`);
      bob.write(`at ${cols} columns\n`);
      await alice.line(new RegExp(`<bob> at ${cols} columns$`));
      await alice.until(intact, `the input intact after a message at ${cols}x${rows}`);
    }
    alice.type('\r');
    await bob.line(/"text":"w00 w01/);
    expect(texts(bob)).toEqual([input]);
  });

  it('Tab completes commands and nicks; ↑ and ↓ recall earlier lines', async () => {
    const { alice, bob } = await room();
    alice.type('/wh\t');
    await alice.prompt('/who');
    alice.type('\r');
    await alice.line(/^ {2}2 here:$/);
    await alice.line(/^ {2}bob \d{5}-\d{5} not verified$/);

    alice.type('/\t');
    await alice.line(
      /^ {2}\/help {2}\/who {2}\/me {2}\/nick {2}\/invite {2}\/verify {2}\/accept {2}\/clear {2}\/quit$/,
    );
    await alice.prompt('/');
    expect(alice.lines().filter((l) => /alice \(connected\)>/.test(l))).toHaveLength(1);
    alice.type('ver\t');
    await alice.prompt('/verify ');
    alice.type('b\t');
    await alice.prompt('/verify bob');
    alice.type('\u0015'); // Ctrl-U: erase the line
    await alice.prompt('');

    alice.type('b\t');
    await alice.prompt('bob: ');
    alice.type('first\r');
    await bob.line(/"text":"bob: first"/);
    alice.type('second\r');
    await bob.line(/"text":"second"/);
    alice.type('\u001b[A');
    await alice.prompt('second');
    alice.type('\u001b[A');
    await alice.prompt('bob: first');
    alice.type('\u001b[B');
    await alice.prompt('second');
    alice.type(' again\r');
    await bob.line(/"text":"second again"/);
    expect(texts(bob)).toEqual(['bob: first', 'second', 'second again']);
  });

  it('sends a paste of three lines as one message', async () => {
    const { alice, bob } = await room();
    alice.paste('line one\nline two\nline three\n');
    await alice.prompt('line one␤line two␤line three');
    alice.type('\r');
    await bob.line(/"type":"message"/);
    expect(texts(bob)).toEqual(['line one\nline two\nline three']);
    const lines = alice.lines();
    const at = lines.findIndex((l) => /^\d\d:\d\d <alice> line one$/.test(l));
    expect(lines.slice(at + 1, at + 3)).toEqual(['      │ line two', '      │ line three']);
    await alice.prompt('');
  });

  it('holds what arrives while a paste fills the window, so it is not copied into the scrollback, and prints it once the line fits', async () => {
    const { alice, bob } = await room({ cols: 40, rows: 12 });
    // 30 rows of input at 40 columns: taller than the window.
    const paste = `START ${'x'.repeat(1200)}`;
    alice.paste(paste);
    await alice.until(() => alice.cursorRow().endsWith('xxxx'), 'the paste in the input line');
    bob.write('one\ntwo\nthree\n');
    await bob.line(/"type":"sent".*"text":"three"/);
    // Every redraw of a line taller than the window would leave a copy of its
    // first rows in the scrollback; give the client time to have drawn them.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(alice.rows().filter((r) => r.includes('START'))).toHaveLength(1);
    expect(alice.lines().some((l) => /<bob> one$/.test(l))).toBe(false);

    alice.type('\u0015'); // Ctrl-U: the line is empty, and what waited is printed, in order
    await alice.line(/<bob> three$/);
    const got = alice.lines().flatMap((l) => /<bob> (\w+)$/.exec(l)?.[1] ?? []);
    expect(got).toEqual(['one', 'two', 'three']);
    expect(alice.rows().filter((r) => r.includes('START'))).toHaveLength(1);
    await alice.prompt('');
  });

  it('shows what others send inert: escape sequences, CR, fake lines; wide and right-to-left text keep the layout', async () => {
    const { alice, port, invite } = await room({ cols: 80, rows: 30 });
    const mallory = await secureMember(port, parseInvite(invite).secret, 'mallory');
    members.push(mallory);
    await alice.line(/\* mallory \d{5}-\d{5} joined$/);
    alice.type('半角 שלום');
    await alice.prompt('半角 שלום');

    await mallory.room.send('\u001b[2J\u001b[H\u001b]0;pwned\u0007\u001b[5;1H\rX\u001b[31mred\u001b[0m\u009b2J');
    await mallory.room.send('ok\r12:00 <alice> I owe mallory 100 EUR');
    await mallory.room.send('two\n12:00 <alice> I owe mallory 200 EUR\n\u001b[1A\u001b[2K');
    await mallory.room.send('你好世界 🎉 שלום עולם '.repeat(6));
    await alice.line(/<mallory> 你好世界/);

    const lines = alice.lines();
    const first = lines.find((l) => l.includes('<mallory> ^[['));
    expect(first).toMatch(
      /^\d\d:\d\d <mallory> \^\[\[2J\^\[\[H\^\[\]0;pwned\^G\^\[\[5;1H\^MX\^\[\[31mred\^\[\[0m\\x9b2J$/,
    );
    expect(lines.some((l) => /<mallory> ok\^M12:00 <alice> I owe mallory 100 EUR$/.test(l))).toBe(true);
    expect(lines.some((l) => l === '      │ 12:00 <alice> I owe mallory 200 EUR')).toBe(true);
    expect(lines.some((l) => l === '      │ ^[[1A^[[2K')).toBe(true);
    // No row starts as a message from alice, the screen was not cleared, no title, no bell.
    expect(alice.rows().some((r) => r.startsWith('12:00 <alice>'))).toBe(false);
    expect(alice.rows().some((r) => /\* joined as alice/.test(r))).toBe(true);
    expect(alice.titles).toEqual([]);
    expect(alice.bells).toBe(0);
    // The input line, with its wide and right-to-left characters, is intact and the cursor after it.
    await alice.prompt('半角 שלום');
    alice.type('\u0015');
    await alice.prompt('');
  });

  it('gives unknown commands a hint and sends nothing; // sends a leading slash; /me, /invite, /nick', async () => {
    const { alice, bob, invite } = await room();
    alice.type('/frob things\r');
    await alice.line(/! unknown command \/frob: not sent\. \/help lists commands; \/\/frob sends it as text\.$/);
    alice.type('/verfy bob\r');
    await alice.line(/! unknown command \/verfy \(did you mean \/verify\?\)/);
    alice.type('//slash\r');
    await bob.line(/"text":"\/slash"/);
    alice.type('/me waves\r');
    await bob.line(/"text":"waves"/);
    await alice.line(/^\d\d:\d\d \* alice waves$/);
    expect(events(bob).filter((e) => e.type === 'message')).toEqual([
      expect.objectContaining({ text: '/slash', action: false }),
      expect.objectContaining({ text: 'waves', action: true }),
    ]);

    alice.type('/invite\r');
    await alice.line(new RegExp(`^ {2}invite: ${invite.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`));
    alice.type('/help\r');
    await alice.line(/^ {4}\/verify NICK \[yes\] +show your safety number/);

    alice.type('/nick BOB\r');
    await alice.line(/^ {2}BOB is taken in this room$/);
    alice.type('/nick alice2\r');
    await alice.line(/\* you are now alice2 \(was alice\)$/);
    await alice.prompt('', 'connected');
    expect(alice.cursorRow()).toMatch(/ alice2 \(connected\)> $/);
    await bob.line(/"type":"leave","nick":"alice","reason":"left"/);
    await bob.line(/"type":"join","nick":"alice2"/);
    alice.type('renamed\r');
    await bob.line(/"nick":"alice2".*"text":"renamed"/);
  });

  it('/verify shows the safety number and marks the key; /accept takes a changed key', async () => {
    const { alice, bob, invite, data } = await room();
    alice.type('/verify bob\r');
    await alice.line(/^ {2}safety number with bob \(\d{5}-\d{5}, not verified\):$/);
    expect(alice.lines().filter((l) => /^ {4}\d{5} \d{5} \d{5} \d{5}$/.test(l))).toHaveLength(3);
    alice.type('/verify bob yes\r');
    await alice.line(/^ {2}marked the key of bob \(\d{5}-\d{5}\) verified ✓$/);
    bob.write('now verified\n');
    await alice.line(/<bob ✓> now verified$/);

    // bob leaves; someone else comes as bob, with another key.
    bob.end();
    await bob.exited;
    await alice.line(/\* bob left$/);
    expect(confab('admin', 'release-nick', 'bob', '--data', data).status).toBe(0); // the server's operator lets it go
    const other = track(new Proc(['join', invite, '--nick', 'bob', '--json', '--home', tempHome()]));
    await alice.line(/! WARNING: the key of bob changed \(was \d{5}-\d{5}, now \d{5}-\d{5}\)/);
    alice.type('are you bob?\r');
    await alice.line(/! not sent: the key of bob changed/);
    alice.type('/who\r');
    await alice.line(/^ {2}bob \d{5}-\d{5} ! key changed/);
    alice.type('/verify bob\r');
    await alice.line(/^ {2}the key of bob changed; the safety number for the NEW key/);
    other.write('it is me, new laptop\n');
    await alice.line(/! rejected a message relayed as bob .*shown if you accept it/);
    alice.type('/accept bob\r');
    await alice.line(/^ {2}accepted the new key of bob/);
    // Then what the key sent while it waited, under a line that says so (before, never shown).
    await alice.line(/<bob> it is me, new laptop$/);
    const order = ['accepted the new key of bob', '1 message bob sent under the new key', '<bob> it is me'].map((t) =>
      alice.lines().findIndex((l) => l.includes(t)),
    );
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(order[0]).toBeGreaterThanOrEqual(0);
    // Caught up first: a live message that overtakes the catch-up comes to it as history.
    await other.line(/"text":"now verified"/);
    alice.type('welcome back\r');
    await other.line(/"text":"welcome back"/);
    expect(texts(other)).toEqual(['welcome back']);
    // What bob said before is the newcomer's backlog, marked as history.
    expect(events(other).find((e) => e.type === 'message')).toMatchObject({ text: 'now verified', history: true });
  });

  it('Ctrl-C leaves cleanly: the others see a leave, the terminal gets its modes back', async () => {
    const { alice, bob } = await room();
    expect(alice.output).toContain('\u001b[?2004h');
    alice.type('not sent');
    await alice.prompt('not sent');
    alice.type('\u0003');
    expect(await alice.exited).toBe(130);
    await bob.line(/"type":"leave","nick":"alice","reason":"left"/);
    expect(alice.output.endsWith('\u001b[?2004l')).toBe(true);
    expect(alice.lines().at(-1)).toMatch(/\* left #[0-9a-f]{6}$/);
    expect(texts(bob)).toEqual([]);
  });

  it('Ctrl-D on an empty line leaves too (exit 0), after delivering what was sent', async () => {
    const { alice, bob } = await room();
    alice.type('bye\r\u0004');
    expect(await alice.exited).toBe(0);
    await bob.line(/"type":"leave","nick":"alice","reason":"left"/);
    expect(texts(bob)).toEqual(['bye']);
  });

  it('a lost connection shows a notice and comes back by itself; what was typed meanwhile is sent then', async () => {
    // alice reaches the server through a link the test cuts and mends; bob stays connected.
    const { proc: server, port } = await serve(['--limit', 'messageIntervalMs=2']);
    track(server);
    const link = await Link.open(port);
    try {
      const alice = track(new Tty(['join', `127.0.0.1:${link.port}`, '--nick', 'alice', '--home', tempHome()]));
      const invite = (await alice.line(/\* invite: confab:\/\//)).replace(/^.*invite: /, '');
      const direct = invite.replace(`:${link.port}/`, `:${port}/`);
      const bob = track(new Proc(['join', direct, '--nick', 'bob', '--json', '--home', tempHome()]));
      await alice.line(/\* bob \d{5}-\d{5} joined$/);

      link.cut();
      await alice.line(/! connection lost(?: \(.*\))?; reconnecting\. What you type is sent once it is back\.$/);
      await alice.prompt('', 'reconnecting');
      alice.type('typed while away\r');
      await alice.line(/<alice> typed while away$/);
      await alice.prompt('', 'reconnecting, 1 unsent');
      await bob.line(/"type":"leave","nick":"alice"/);

      link.mend();
      await alice.prompt('', 'connected', 20_000);
      await alice.line(/\* reconnected; here: bob$/);
      await bob.line(/"text":"typed while away"/);
      expect(texts(bob)).toEqual(['typed while away']);
    } finally {
      await link.close();
    }
  });

  it('a /nick during a stall: what was written is acknowledged before the leave, what was not is kept and sent as the new nick; the others get each once, in order', async () => {
    const { proc: server, port } = await serve();
    track(server);
    const alice = track(new Tty(['join', `127.0.0.1:${port}`, '--nick', 'alice', '--home', tempHome()]));
    const invite = (await alice.line(/\* invite: confab:\/\//)).replace(/^.*invite: /, '');
    const bob = track(new Proc(['join', invite, '--nick', 'bob', '--json', '--home', tempHome()]));
    await alice.line(/\* bob \d{5}-\d{5} joined$/);
    const typed = Array.from({ length: 12 }, (_, i) => `stalled ${i + 1}`);
    server.kill('SIGSTOP'); // a stall: nothing is acknowledged
    try {
      for (const t of typed) alice.type(`${t}\r`);
      await alice.line(/<alice> stalled 12$/);
      alice.type('/nick alice2\r');
      alice.type('during the rename\r'); // goes out as alice2, once the rename is done
      // /nick waits 5 s for the acknowledgements, then leaves. What the client
      // had not written yet stays in the outbox for the join as alice2.
      await alice.line(
        /! not delivered yet \("stalled 12"\): DISCONNECTED: .*; kept, and sent when you are back in the room$/,
        10_000,
      );
    } finally {
      server.kill('SIGCONT');
    }
    await alice.line(/\* you are now alice2 \(was alice\)$/, 15_000);
    await bob.line(/"text":"stalled 12"/, 'stdout', 15_000);
    alice.type('after\r');
    await bob.line(/"text":"after"/);
    expect(texts(bob)).toEqual([...typed, 'during the rename', 'after']);
    expect(events(bob).filter((e) => e.type === 'gap')).toEqual([]);
    const lines = alice.lines();
    const kept = lines.flatMap((l) => (/not delivered yet/.test(l) ? [/\("(stalled \d+)"\)/.exec(l)?.[1]] : []));
    // The client paces what it writes by the server's rate: the first few were
    // written, and answered before the LEAVE, so only a last run is kept.
    const written = typed.length - kept.length;
    expect(kept).toEqual(typed.slice(written));
    expect(written).toBeGreaterThan(0);
    const nicks = events(bob).flatMap((e) => (e.type === 'message' ? [e.nick] : []));
    expect(nicks).toEqual([...Array<string>(written).fill('alice'), ...Array<string>(kept.length + 2).fill('alice2')]);
    // Shown under the nick it went out as, after the rename. Before: "<alice> during the rename",
    // at once, while the others got it from alice2.
    const renamed = lines.findIndex((l) => /\* you are now alice2 \(was alice\)$/.test(l));
    expect(lines.findIndex((l) => l.endsWith('<alice2> during the rename'))).toBeGreaterThan(renamed);
    expect(lines.some((l) => l.endsWith('<alice> during the rename'))).toBe(false);
    expect(lines.some((l) => /not sent \(/.test(l))).toBe(false);
    // Each shown to alice once: none comes back to her as history.
    for (const t of typed) expect(lines.filter((l) => l.endsWith(` ${t}`))).toHaveLength(1);
  });

  it('out of the room after a rejoin refused for good (NICK_OWNED): told so, and /nick joins as someone else', async () => {
    const data = tempHome();
    const { proc: server, port } = await serve(['--data', data]);
    track(server);
    const link = await Link.open(port);
    try {
      const alice = track(new Tty(['join', `127.0.0.1:${link.port}`, '--nick', 'alice', '--home', tempHome()]));
      const invite = (await alice.line(/\* invite: confab:\/\//)).replace(/^.*invite: /, '');
      link.cut();
      await alice.prompt('', 'reconnecting');
      // The operator frees "alice", and another key takes it.
      expect(confab('admin', 'release-nick', 'alice', '--data', data).status).toBe(0);
      const direct = invite.replace(`:${link.port}/`, `:${port}/`);
      const other = track(new Proc(['join', direct, '--nick', 'alice', '--json', '--home', tempHome()]));
      await other.line(/"type":"joined"/);
      link.mend();
      await alice.line(/! NICK_OWNED: the nick "alice" belongs to another key/, 20_000);
      // Before, the warning was never shown (the error came before the client
      // gave the room up), and /nick waited for a connection that was back.
      await alice.line(/you are out of the room: the server refused to let you back in/);
      // Before, /who listed alice "(you)" among the members last heard of.
      alice.type('/who\r');
      await alice.line(/^ {2}you are not in the room\. \/nick NAME joins it again/);
      expect(alice.lines().some((l) => /\(you\)/.test(l))).toBe(false);
      // Before, this renamed to "alice2" and dropped the rest.
      alice.type('/nick alice2 extra\r');
      await alice.line(/usage: \/nick NEW \(not run: too many words\)/);
      alice.type('/nick alice2\r');
      await alice.line(/\* you are now alice2 \(was alice\)$/, 10_000);
      expect(alice.lines().some((l) => /once the connection is back/.test(l))).toBe(false);
      // The refusal said it all: the reconnect behind it adds no second notice (the other line is /who's).
      expect(alice.lines().filter((l) => /not in the room|out of the room/.test(l))).toHaveLength(2);
    } finally {
      await link.close();
    }
  });

  it('a rejoin refused while the same key holds the nick elsewhere (NICK_TAKEN, retried): /nick is the way out', async () => {
    const { proc: server, port } = await serve();
    track(server);
    const link = await Link.open(port);
    try {
      const home = tempHome();
      const alice = track(new Tty(['join', `127.0.0.1:${link.port}`, '--nick', 'alice', '--home', home]));
      const invite = (await alice.line(/\* invite: confab:\/\//)).replace(/^.*invite: /, '');
      link.cut();
      await alice.prompt('', 'reconnecting');
      // The same identity takes "alice" meanwhile: its key copied to another home (the same home
      // is refused while alice's run holds the room's lock).
      const copy = tempHome();
      copyFileSync(join(home, 'identity.json'), join(copy, 'identity.json'));
      const direct = invite.replace(`:${link.port}/`, `:${port}/`);
      const other = track(new Proc(['join', direct, '--nick', 'alice', '--json', '--home', copy]));
      await other.line(/"type":"joined"/);
      link.mend();
      await alice.line(/NICK_TAKEN/, 20_000); // back, and the rejoin is refused (and retried)
      alice.type('/nick alice2\r');
      await alice.line(/\* you are now alice2 \(was alice\)$/, 10_000);
      await alice.prompt('', 'connected');
      await other.line(/"type":"join","nick":"alice2"/);
      expect(alice.lines().some((l) => /once the connection is back/.test(l))).toBe(false);
    } finally {
      await link.close();
    }
  });

  it('a /nick refused while the rejoin is retried, and back in under the old nick: the prompt says connected', async () => {
    // JOIN 1 taken; after the drop the rejoin is refused (the server's ghost), the
    // retry held on its way; then "bob" is someone else's, and the way back is taken.
    const s = await inOrderServer((join, n) =>
      n === 2 ? 'taken' : n === 3 ? 'hold' : join.nick === 'bob' ? 'owned' : 'take',
    );
    try {
      const alice = track(new Tty(['join', `127.0.0.1:${s.port}`, '--nick', 'alice', '--home', tempHome()]));
      await alice.prompt('');
      s.drop();
      await alice.line(/NICK_TAKEN/, 10_000);
      await until(() => s.holding());
      alice.type('/nick bob\r');
      await until(() => s.waiting() === 1); // the LEAVE, behind the held JOIN
      s.release('take');
      await alice.line(/could not change nick: NICK_OWNED/, 10_000);
      expect(s.log.slice(2)).toEqual([
        'JOIN alice -> JOINED',
        'LEAVE -> LEFT',
        'JOIN bob -> NICK_OWNED',
        'JOIN alice -> JOINED',
      ]);
      // Before, it said reconnecting for good: the rejoin it waited for was left.
      await alice.prompt('', 'connected');
    } finally {
      s.close();
    }
  });

  it('a message lost when the client stops reconnecting: kept, and sent at the next confab join, it says', async () => {
    // A SEND answered with a frame type no server sends: a protocol error, which reconnecting would only repeat.
    const scripted = await sendAnswering(() => UNREADABLE_FRAME);
    try {
      const { port } = scripted;
      const alice = track(new Tty(['join', `127.0.0.1:${port}`, '--nick', 'alice', '--home', tempHome()]));
      await alice.prompt('');
      alice.type('hello\r');
      // Before, "when you are back in the room", which never comes in this session.
      await alice.line(/not delivered yet \("hello"\): DISCONNECTED: .*; kept, and sent when you next join this room/);
      await alice.prompt('', 'offline');
      alice.type('/quit\r');
      // Before, /quit counted the client's sends, none once it has stopped reconnecting, and said nothing.
      await alice.line(/1 message is not delivered yet: kept, and sent when you next join this room/);
      expect(await alice.exited).toBe(0);
    } finally {
      scripted.close();
    }
  });

  it('a /nick cut off by a lost connection: /nick again joins once the connection is back', async () => {
    const { proc: server, port } = await serve();
    track(server);
    const link = await Link.open(port);
    try {
      const alice = track(new Tty(['join', `127.0.0.1:${link.port}`, '--nick', 'alice', '--home', tempHome()]));
      await alice.line(/\* invite: confab:\/\//);
      server.kill('SIGSTOP'); // the LEAVE is not answered
      alice.type('/nick alice2\r');
      await new Promise((r) => setTimeout(r, 300));
      link.cut();
      server.kill('SIGCONT');
      await alice.line(/could not change nick: NOT_IN_ROOM/, 10_000);
      link.mend();
      await alice.line(/\* reconnected, but not in the room: \/nick NAME joins it again$/, 10_000);
      alice.type('/nick alice3\r');
      await alice.line(/\* you are now alice3 \(was alice\)$/, 10_000);
      expect(alice.lines().some((l) => /once the connection is back/.test(l))).toBe(false);
    } finally {
      server.kill('SIGCONT');
      await link.close();
    }
  });

  it('colours each nick (stably), highlights a mention and rings with --bell; NO_COLOR and a terminal without colours turn it off', async () => {
    const { alice, bob } = await room({ args: ['--bell'], env: { NO_COLOR: undefined } });
    bob.write('hi there\n');
    bob.write('hey alice, look\n');
    await alice.line(/<bob> hey alice, look$/);
    expect(alice.bells).toBe(1);
    const screen = alice.screen();
    const plain = screen.findIndex((r) => r.endsWith('<bob> hi there'));
    const mention = screen.findIndex((r) => r.endsWith('<bob> hey alice, look'));
    const fg = (y: number, x: number): number | undefined => alice.row(y)?.getCell(x)?.getFgColor();
    const nickAt = (screen[plain] ?? '').indexOf('bob');
    expect(alice.row(plain)?.getCell(nickAt)?.isFgPalette()).toBeTruthy();
    expect(fg(mention, nickAt)).toBe(fg(plain, nickAt)); // the same colour every time
    const at = (screen[mention] ?? '').indexOf('alice,');
    expect(alice.row(mention)?.getCell(at)?.isInverse()).toBeTruthy(); // the mention
    expect(
      alice
        .row(plain)
        ?.getCell((screen[plain] ?? '').indexOf('hi'))
        ?.isFgDefault(),
    ).toBeTruthy();
    expect(alice.output).toMatch(SGR);

    // NO_COLOR, and a terminal without colours (vt220): the same screen in plain text.
    for (const env of [{ NO_COLOR: '1' }, { NO_COLOR: undefined, TERM: 'vt220' }]) {
      const { alice: plainAlice, bob: plainBob } = await room({ env });
      plainBob.write('hey alice\n');
      await plainAlice.line(/<bob> hey alice$/);
      expect(plainAlice.output).not.toMatch(SGR);
      expect(plainAlice.bells).toBe(0); // no --bell
    }
  });

  it('falls back to line mode on a TERM=dumb terminal (it cannot move the cursor)', async () => {
    const { proc: server, port } = await serve();
    track(server);
    const t = track(
      new Tty(['join', `127.0.0.1:${port}`, '--nick', 'emacs', '--home', tempHome()], { env: { TERM: 'dumb' } }),
    );
    await t.line(/^\* joined as emacs \d{5}-\d{5}; nobody else is here yet$/);
    expect(t.output).not.toContain('\u001b');
    t.type('\u0004');
    expect(await t.exited).toBe(0);
  });
});

describe('SecureRoom.rename (what /nick does)', () => {
  it('joins again under the new nick; a taken one is refused and the old nick kept', async () => {
    const { alice, port, invite, bob } = await room();
    const secret = parseInvite(invite).secret;
    const mallory = await secureMember(port, secret, 'mallory');
    members.push(mallory);
    await alice.line(/\* mallory \d{5}-\d{5} joined$/);

    // bob's nick is his key's on this server, so another key gets NICK_OWNED.
    await expect(mallory.room.rename('BOB')).rejects.toMatchObject({ code: 'NICK_OWNED' });
    expect(mallory.room.nick).toBe('mallory');
    await mallory.room.send('still mallory');
    await bob.line(/"nick":"mallory".*"text":"still mallory"/);

    const renamed = await mallory.room.rename('mal');
    expect(renamed.nick).toBe('mal');
    expect(renamed.members.map((m) => m.nick).sort()).toEqual(['alice', 'bob']);
    await mallory.room.send('now mal');
    await bob.line(/"nick":"mal".*"text":"now mal"/);
    await alice.line(/<mal> now mal$/);
  });
});
