import { PassThrough } from 'node:stream';
import type { ReadStream } from 'node:tty';
import { describe, expect, it } from 'vitest';
import { MAX_TEXT } from '../../../src/client/index.js';
import { KeyRuns, LINE_BREAK, MAX_PASTE, PasteParser, pasteText, TtyInput, unpaste } from '../../../src/tui/paste.js';
import type { CursorReport, Segment } from '../../../src/tui/paste.js';

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
    // 16,000 emoji are 64,000 bytes: cut to the longest message the client sends, between two characters.
    const [emoji] = run(`${START}${'😀'.repeat(MAX_PASTE + 10)}${END}`, 4096);
    expect(emoji).toEqual({ kind: 'paste', text: '😀'.repeat(MAX_TEXT / 4), truncated: true });
    const [mixed] = run(`${START}a${'😀'.repeat(MAX_TEXT / 4)}${END}`, 4096);
    expect(mixed).toEqual({ kind: 'paste', text: `a${'😀'.repeat(MAX_TEXT / 4 - 1)}`, truncated: true });
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

describe('KeyRuns', () => {
  const feed = (...chunks: string[]): string[] => {
    const runs = new KeyRuns();
    return chunks.flatMap((c) => runs.feed(c)).map((r) => `${r.kind}:${JSON.stringify(r.text)}`);
  };

  it('gives plain characters typed together as one text run, and one alone as a key', () => {
    expect(feed('abc')).toEqual(['text:"abc"']);
    expect(feed('a')).toEqual(['keys:"a"']);
    expect(feed('继续')).toEqual(['text:"继续"']);
    expect(feed('😀')).toEqual(['keys:"😀"']); // one character of two UTF-16 units
    expect(feed('hi\r')).toEqual(['text:"hi"', 'keys:"\\r"']);
    // Tab completes only as the last key of a read; inside one it is pasted text, as readline takes it.
    expect(feed('/ni\t')).toEqual(['text:"/ni"', 'keys:"\\t"']);
    expect(feed('a\tb')).toEqual(['text:"a\\tb"']);
    expect(feed('\t\u001b[C')).toEqual(['text:"\\t"', 'keys:"\\u001b[C"']);
    expect(feed('\u0001ab\u0015cd')).toEqual(['keys:"\\u0001"', 'text:"ab"', 'keys:"\\u0015"', 'text:"cd"']);
  });

  it('keeps escape sequences whole, their letters included, wherever a chunk ends', () => {
    const left = '\u001b[D';
    expect(feed(`${left}${left}xy`)).toEqual([`keys:${JSON.stringify(left + left)}`, 'text:"xy"']);
    // Cut inside the sequence: the D is still part of it.
    expect(feed('\u001b[', 'Dxy')).toEqual(['keys:"\\u001b["', 'keys:"D"', 'text:"xy"']);
    expect(feed('\u001b', '[1;5', 'Cab')).toEqual(['keys:"\\u001b"', 'keys:"[1;5"', 'keys:"C"', 'text:"ab"']);
    // SS3 (F1, keypad), Alt and a key, Alt and an arrow, an OSC string (BEL or ST ended).
    expect(feed('\u001bOPab')).toEqual(['keys:"\\u001bOP"', 'text:"ab"']);
    expect(feed('\u001bbcd')).toEqual(['keys:"\\u001bb"', 'text:"cd"']);
    expect(feed('\u001b\u001b[Dab')).toEqual(['keys:"\\u001b\\u001b[D"', 'text:"ab"']);
    // Ended where readline's own parser ends them: Konsole's Shift+F1, the Linux console's F1,
    // xterm's Ctrl+F12 and Ctrl+Home, rxvt's Shift+Insert.
    expect(feed('\u001bO2Pab')).toEqual(['keys:"\\u001bO2P"', 'text:"ab"']);
    expect(feed('\u001b[[Aab')).toEqual(['keys:"\\u001b[[A"', 'text:"ab"']);
    expect(feed('\u001b[24;5~ab')).toEqual(['keys:"\\u001b[24;5~"', 'text:"ab"']);
    expect(feed('\u001b[1;5Hab')).toEqual(['keys:"\\u001b[1;5H"', 'text:"ab"']);
    expect(feed('\u001b[2$ab')).toEqual(['keys:"\\u001b[2$"', 'text:"ab"']);
    // ESC P, ESC ], ESC _ and ESC ^ are Alt and a key, as readline reads them (terminals send
    // the strings they begin only in answer to queries this client does not make).
    for (const alt of ['P', ']', '_', '^']) {
      expect(feed(`\u001b${alt}`, 'hello')).toEqual([`keys:${JSON.stringify(`\u001b${alt}`)}`, 'text:"hello"']);
    }
  });

  it('lets go of a read-ending ESC once told input went quiet (readline does after 500 ms), not of a sequence under way', () => {
    const runs = new KeyRuns();
    expect(runs.feed('\u001b')).toEqual([{ kind: 'keys', text: '\u001b' }]);
    expect(runs.awaitingEscape).toBe(true);
    runs.reset();
    expect(runs.feed('[ab')).toEqual([{ kind: 'text', text: '[ab' }]);
    // After ESC [ readline waits for the rest however long it takes: so does this.
    expect(runs.feed('\u001b[')).toEqual([{ kind: 'keys', text: '\u001b[' }]);
    expect(runs.awaitingEscape).toBe(false);
    runs.reset();
    expect(runs.feed('Dab')).toEqual([
      { kind: 'keys', text: 'D' },
      { kind: 'text', text: 'ab' },
    ]);
  });
});

describe('TtyInput: the terminal’s answers to where the cursor is', () => {
  /** A terminal to read from, and everything TtyInput passes on as keys. */
  function terminal() {
    const source = Object.assign(new PassThrough(), { isRaw: true, setRawMode: () => source });
    const input = new TtyInput(source as unknown as ReadStream);
    let keys = '';
    input.on('data', (b: Buffer) => (keys += b.toString('utf8')));
    input.onText((t) => (keys += t));
    input.attach();
    const sent = new PassThrough();
    const type = async (text: string): Promise<void> => {
      source.write(text);
      await new Promise((resolve) => setTimeout(resolve, 5));
    };
    return { input, sent, type, keys: () => keys, close: () => input.detach() };
  }

  it('an answer later than its waiter, or cut between two reads, is taken out of the keys, not typed into the line', async () => {
    const t = terminal();
    const answers: (CursorReport | null)[] = [];
    t.input.askCursor(t.sent, (pos) => answers.push(pos), 20);
    await new Promise((resolve) => setTimeout(resolve, 60)); // a slow link: the waiter gave up
    await t.type('hello\u001b[12;5R');
    // Before: `hello` then readline's key for `R`, and `12;5` in the line ("helloR" was sent).
    expect(t.keys()).toBe('hello');
    expect(answers).toEqual([null]);
    t.input.askCursor(t.sent, (pos) => answers.push(pos), 1000);
    await t.type('a\u001b[3');
    await t.type('0;7Rb');
    expect(t.keys()).toBe('helloab');
    expect(answers).toEqual([null, { row: 30, col: 7 }]);
    // With no question out, the same bytes are keys (Ctrl-F3 is ESC[1;5R on some terminals).
    await t.type('\u001b[1;5R');
    expect(t.keys()).toContain('\u001b[1;5R');
    t.close();
  });
});
