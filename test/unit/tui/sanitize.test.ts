import { describe, expect, it } from 'vitest';
import { inert } from '../../../src/tui/index.js';

describe('inert', () => {
  it('shows escape sequences and controls in caret notation', () => {
    expect(inert('\u001b[2J\u001b]0;pwned\u0007')).toBe('^[[2J^[]0;pwned^G');
    expect(inert('a\rb\nc\bd\u007f')).toBe('a^Mb^Jc^Hd^?');
    expect(inert('\u009b31m')).toBe('\\x9b31m');
  });

  it('keeps ordinary text, tabs, wide characters and RTL text as they are', () => {
    for (const s of ['hello, world', 'tab\there', '你好 🎉', 'שלום', 'e\u0301']) expect(inert(s)).toBe(s);
  });

  it('names the text-direction controls instead of applying them; keeps the joiners emoji are made of', () => {
    // Before: kept, and a terminal that lays out bidirectional text showed "rtl dne live".
    expect(inert('rtl \u202eevil\u202c end')).toBe('rtl <U+202E>evil<U+202C> end');
    for (const c of ['\u061c', '\u200e', '\u200f', '\u202a', '\u202d', '\u2066', '\u2069']) {
      expect(inert(c)).toMatch(/^<U\+[0-9A-F]{4}>$/);
    }
    expect(inert('👨\u200d👩\u200d👧 👍🏽 🇫🇷')).toBe('👨\u200d👩\u200d👧 👍🏽 🇫🇷');
  });

  it('leaves no control character behind', () => {
    let all = '';
    for (let c = 0; c < 0xa0; c++) all += String.fromCharCode(c);
    // eslint-disable-next-line no-control-regex
    expect(inert(all)).not.toMatch(/[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/);
  });
});
