import { PassThrough } from 'node:stream';
import type { ReadStream, WriteStream } from 'node:tty';
import { describe, expect, it } from 'vitest';
import { Screen } from '../../../src/tui/screen.js';

/** A terminal of 80 × 24 made of two streams: what is typed, and everything written to it. */
function terminal(): { input: ReadStream; output: WriteStream; written: () => string } {
  const input = Object.assign(new PassThrough(), {
    isTTY: true,
    isRaw: false,
    setRawMode(this: { isRaw: boolean }, mode: boolean) {
      this.isRaw = mode;
      return this;
    },
  });
  const output = Object.assign(new PassThrough(), {
    isTTY: true,
    columns: 80,
    rows: 24,
    getWindowSize: (): [number, number] => [80, 24],
  });
  let written = '';
  output.on('data', (d: Buffer) => (written += d.toString('utf8')));
  return {
    input: input as unknown as ReadStream,
    output: output as unknown as WriteStream,
    written: () => written,
  };
}

const turn = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 50));

describe('Screen: Tab with several candidates', () => {
  it('lists them inert: a candidate with escapes in it can not write them to the terminal', async () => {
    const t = terminal();
    const screen = new Screen({
      input: t.input,
      output: t.output,
      prompt: '> ',
      // A completer that lets through what it should not (the nicks are checked
      // before this): the list printed must still be harmless.
      completer: (line) => [['evA\u001b]0;PWNED\u0007', 'evB\u001b[2J'], line],
      onLine: () => {},
      onQuit: () => {},
    });
    screen.start();
    await turn();
    const before = t.written().length;
    t.input.write('ev\t');
    await turn();
    const after = t.written().slice(before);
    screen.close();
    expect(after).toContain('evA^[]0;PWNED^G  evB^[[2J');
    expect(after).not.toContain('\u001b]0;PWNED');
    expect(after).not.toContain('\u001b[2J');
  });
});

describe('Screen: keys that arrive together go in at the cursor', () => {
  const HOME = '\u001b[H';
  /** Writes each chunk as one read (a number: waits that long), then Enter; resolves with the line sent. */
  async function typed(chunks: (string | number)[]): Promise<string> {
    const t = terminal();
    const lines: string[] = [];
    const screen = new Screen({
      input: t.input,
      output: t.output,
      prompt: '> ',
      completer: (line) => [['/nick '].filter((c) => c.startsWith(line)), line],
      onLine: (l) => lines.push(l),
      onQuit: () => {},
    });
    screen.start();
    await turn();
    for (const c of chunks) {
      if (typeof c === 'number') await new Promise((resolve) => setTimeout(resolve, c));
      else t.input.write(c);
      await turn();
    }
    t.input.write('\r');
    await turn();
    screen.close();
    return lines[0] ?? '';
  }

  it.each([
    ['typing after Home', ['world', HOME, 'hello '], 'hello world'],
    ['an emoji run after Home', ['world', HOME, '😀😀 '], '😀😀 world'],
    // Alt+Shift+P and Alt+] are keys, not the start of a DCS or OSC string that would never end.
    ['Alt+Shift+P, then typing after Home', ['world', HOME, '\u001bP', 'hello '], 'hello world'],
    ['Alt+], then typing after Home', ['world', HOME, '\u001b]', 'x', 'world', HOME, 'hello '], 'hello xworldworld'],
    // A lone Escape, then a pause past readline's 500 ms: what follows is typing, not a sequence.
    ['a lone Escape, a pause, then typing', ['world', HOME, '\u001b', 700, 'Peter '], 'Peter world'],
    // A key's sequence and typing in one read, ended where readline ends it.
    ["Konsole's Shift+F1 and typing in one read", ['world', HOME, '\u001bO2Pab '], 'ab world'],
    ["the Linux console's F1 and typing in one read", ['world', HOME, '\u001b[[Aab '], 'ab world'],
    ['Tab completion typed fast', ['/ni\t'], '/nick '],
    // ESC [ then a pause: readline still waits for the rest of the sequence, and so must this.
    ['ESC [, a pause, then the rest and typing', ['world', HOME, '\u001b[', 700, 'Dab '], 'ab world'],
    // A Tab with more after it in one read is text, as readline has it; only a read-ending Tab completes.
    ['a Tab and an arrow in one read', ['/ni', '\t\u001b[C'], '/ni\t'],
  ])('%s', async (_what, chunks, line) => {
    expect(await typed(chunks)).toBe(line);
  });
});
