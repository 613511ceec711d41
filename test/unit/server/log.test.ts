import { describe, expect, it } from 'vitest';
import { printable } from '../../../src/server/log.js';

describe('printable: a client string as it may go in a log line', () => {
  it('writes control characters, DEL, C1 and the Unicode line separators as \\uXXXX, and nothing else', () => {
    // Before, a HELLO agent with U+2028 and NEL split one JSON record into three lines for a
    // reader that splits on them (Python's splitlines), one a forged level-60 record.
    const agent = 'x\u2028{"level":60,"msg":"FAKE"}\u0085y\u001b[2J\u007f\u2029';
    expect(printable(agent)).toBe('x\\u2028{"level":60,"msg":"FAKE"}\\u0085y\\u001b[2J\\u007f\\u2029');
    expect(printable('confab/0.1.0 (é, 日本)')).toBe('confab/0.1.0 (é, 日本)');
  });
});
