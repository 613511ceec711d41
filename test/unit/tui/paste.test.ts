import { describe, expect, it } from 'vitest';
import { LINE_BREAK, MAX_PASTE, PasteParser, pasteText, unpaste } from '../../../src/tui/paste.js';
import type { Segment } from '../../../src/tui/paste.js';

const START = '\u001b[200~';
const END = '\u001b[201~';

/** Feeds `input` in pieces of `size`, merging adjacent key segments. */
function run(input: string, size: number): Segment[] {
  const parser = new PasteParser();
  const out: Segment[] = [];
  for (let i = 0; i < input.length; i += size) out.push(...parser.feed(input.slice(i, i + size)));
  out.push(...parser.release());
  return out.reduce<Segment[]>((acc, s) => {
    const last = acc.at(-1);
    if (last?.kind === 'keys' && s.kind === 'keys') acc[acc.length - 1] = { kind: 'keys', text: last.text + s.text };
    else acc.push(s);
    return acc;
  }, []);
}

describe('PasteParser', () => {
  const input = `ab\u001b[A${START}one\r\ntwo\rthree\r${END}cd${START}x${END}\u001b`;
  const expected: Segment[] = [
    { kind: 'keys', text: 'ab\u001b[A' },
    { kind: 'paste', text: `one${LINE_BREAK}two${LINE_BREAK}three`, truncated: false },
    { kind: 'keys', text: 'cd' },
    { kind: 'paste', text: 'x', truncated: false },
    { kind: 'keys', text: '\u001b' },
  ];
  for (const size of [1, 2, 3, 5, 7, input.length]) {
    it(`finds the pastes among the keys, input cut every ${size} characters`, () => {
      expect(run(input, size)).toEqual(expected);
    });
  }

  it('holds a possible marker back until it is sure, and lets a lone ESC go on release', () => {
    const parser = new PasteParser();
    expect(parser.feed('a\u001b[2')).toEqual([{ kind: 'keys', text: 'a' }]);
    expect(parser.waiting).toBe(true);
    expect(parser.feed('0')).toEqual([]);
    expect(parser.release()).toEqual([{ kind: 'keys', text: '\u001b[20' }]);
    expect(parser.feed('\u001b[2')).toEqual([]);
    expect(parser.feed('1~')).toEqual([{ kind: 'keys', text: '\u001b[21~' }]); // F10, not a paste
    expect(parser.waiting).toBe(false);
  });

  it('ends a paste whose end never came on release, and cuts a huge one', () => {
    const parser = new PasteParser();
    expect(parser.feed(`${START}half`)).toEqual([]);
    expect(parser.pasting).toBe(true);
    expect(parser.release()).toEqual([{ kind: 'paste', text: 'half', truncated: false }]);
    const big = run(`${START}${'y'.repeat(MAX_PASTE * 3)}${END}`, 4096);
    expect(big).toEqual([{ kind: 'paste', text: 'y'.repeat(MAX_PASTE), truncated: true }]);
  });
});

describe('pasteText', () => {
  it('makes a paste one line of text: breaks marked, tabs as spaces, escapes and controls gone', () => {
    expect(pasteText('a\r\nb\rc\nd\n\n')).toBe(`a${LINE_BREAK}b${LINE_BREAK}c${LINE_BREAK}d`);
    expect(pasteText('x\ty')).toBe('x    y');
    expect(pasteText('\u001b[31mred\u001b[0m \u001b]0;title\u0007ok\u0000\u0008\u007f\u009b')).toBe('red ok');
    expect(unpaste(pasteText('one\ntwo'))).toBe('one\ntwo');
  });
});
