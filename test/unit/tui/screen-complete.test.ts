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
