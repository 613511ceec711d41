import { execFileSync, spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, Proc, serve, tempHome } from '../helpers/cli.js';

// Most terminals (tmux, VTE, iTerm2, kitty, Windows Terminal) rewrap the lines on
// screen when resized, the input line with the cursor too; xterm.js, the screen of
// tui.test.ts, leaves the cursor's lines alone. tmux stands in for the first kind
// here, on a private server. Skipped where tmux is not installed.
const hasTmux = spawnSync('tmux', ['-V']).status === 0;
const socket = `confab-test-${process.pid}`;
const tmux = (...args: string[]): string => execFileSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });

const procs: Proc[] = [];
afterEach(async () => {
  spawnSync('tmux', ['-L', socket, 'kill-server']);
  for (const p of procs.splice(0)) {
    p.kill('SIGKILL');
    await p.exited;
  }
});

async function until(ok: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; screen:\n${tmux('capture-pane', '-p')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.skipIf(!hasTmux)('the interactive client in tmux', () => {
  it('keeps a wrapped input line, and the cursor inside it, through messages and resizes', async () => {
    const { proc: server, port } = await serve();
    procs.push(server);
    const bob = new Proc(['join', `127.0.0.1:${port}`, '--nick', 'bob', '--json', '--home', tempHome()]);
    procs.push(bob);
    const invite = (JSON.parse(await bob.line(/"type":"invite"/)) as { link: string }).link;
    const home = tempHome();
    const argv = [process.execPath, CLI, 'join', invite, '--nick', 'alice', '--home', home];
    tmux('new-session', '-d', '-s', 'chat', '-x', '40', '-y', '20', '--', 'env', 'NO_COLOR=1', 'CI=true', ...argv);
    await bob.line(/"type":"join","nick":"alice"/);
    await until(
      () => /alice \(connected\)> $/.test(tmux('capture-pane', '-p', '-t', 'chat').trimEnd() + ' '),
      'the prompt',
    );

    const input = Array.from({ length: 12 }, (_, i) => `w${String(i).padStart(2, '0')}`).join(' ');
    tmux('send-keys', '-t', 'chat', '-l', input);
    tmux('send-keys', '-t', 'chat', ...Array<string>(20).fill('Left'));
    const intact = (): boolean => {
      const rows = tmux('capture-pane', '-p', '-t', 'chat').split('\n');
      const [x, y, cols] = tmux('display', '-p', '-t', 'chat', '#{cursor_x} #{cursor_y} #{pane_width}')
        .trim()
        .split(' ')
        .map(Number);
      const prompts = rows.flatMap((r, i) => (/^#[0-9a-f]{6} alice \(connected/.test(r) ? [i] : []));
      if (prompts.length !== 1 || rows.filter((r) => r.includes('w05')).length !== 1) return false;
      const start = prompts[0] as number;
      const line = rows.slice(start, start + Math.ceil(74 / (cols as number))).join('');
      const offset = 74 - 20; // prompt (27) + input (47), cursor 20 back
      return (
        line.endsWith(input) && y === start + Math.floor(offset / (cols as number)) && x === offset % (cols as number)
      );
    };
    await until(intact, 'the wrapped input, intact, with the cursor inside it');
    bob.write('one\ntwo is a longer message that wraps on a narrow screen\n');
    await until(() => tmux('capture-pane', '-p', '-J', '-t', 'chat').includes('<bob> two is a longer'), 'the messages');
    await until(intact, 'the input intact after the messages');
    for (const cols of [30, 72, 25, 40]) {
      tmux('resize-window', '-t', 'chat', '-x', String(cols));
      // tmux rewraps a pane some time after it resizes it, and answers the client's question about its
      // cursor from the old screen meanwhile if polled hard: leave it alone a moment, as a person would.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await until(intact, `the input intact at ${cols} columns`);
      bob.write(`at ${cols} columns\n`);
      await until(
        () => tmux('capture-pane', '-p', '-J', '-t', 'chat').includes(`<bob> at ${cols} columns`),
        'the message',
      );
      await until(intact, `the input intact after a message at ${cols} columns`);
    }
    tmux('send-keys', '-t', 'chat', 'Enter');
    const sent = JSON.parse(await bob.line(/"type":"message","nick":"alice"/)) as { text: string };
    expect(sent.text).toBe(input);
  });
});
