import { describe, expect, it } from 'vitest';
import { COMMANDS, complete, helpLines, parseInput } from '../../../src/tui/commands.js';

describe('parseInput', () => {
  it('tells messages, commands and unknown commands apart', () => {
    expect(parseInput('   ')).toEqual({ kind: 'empty' });
    expect(parseInput('hello /who')).toEqual({ kind: 'text', text: 'hello /who' });
    expect(parseInput('//who')).toEqual({ kind: 'text', text: '/who' });
    expect(parseInput('/VERIFY bob  yes')).toEqual({
      kind: 'command',
      name: 'verify',
      args: ['bob', 'yes'],
      rest: 'bob  yes',
    });
    expect(parseInput('/me waves\nhello')).toMatchObject({ kind: 'command', name: 'me', rest: 'waves\nhello' });
    expect(parseInput('/quit')).toEqual({ kind: 'command', name: 'quit', args: [], rest: '' });
  });

  it('never turns an unknown command into a message, and suggests the one meant', () => {
    expect(parseInput('/frob it')).toEqual({ kind: 'unknown', name: 'frob', suggestion: null });
    expect(parseInput('/verfy bob')).toMatchObject({ kind: 'unknown', suggestion: 'verify' });
    expect(parseInput('/qiut')).toMatchObject({ kind: 'unknown', suggestion: 'quit' });
    expect(parseInput('/inv')).toMatchObject({ kind: 'unknown', suggestion: 'invite' });
    expect(parseInput('/')).toMatchObject({ kind: 'unknown', name: '', suggestion: null });
  });

  it('refuses a command given more words than it takes, rather than dropping the rest', () => {
    // Before, /nick bad nick! renamed to "bad", and /accept carol extra accepted carol.
    expect(parseInput('/nick bad nick!')).toEqual({ kind: 'usage', name: 'nick', usage: 'usage: /nick NEW' });
    expect(parseInput('/accept carol extra')).toEqual({ kind: 'usage', name: 'accept', usage: 'usage: /accept NICK' });
    expect(parseInput('/who is here')).toMatchObject({ kind: 'usage', usage: 'usage: /who' });
    expect(parseInput('/verify bob yes please')).toMatchObject({ kind: 'usage', name: 'verify' });
    expect(parseInput('/nick  bob ')).toMatchObject({ kind: 'command', args: ['bob'] });
    expect(parseInput('/me waves at everyone')).toMatchObject({ kind: 'command', rest: 'waves at everyone' });
  });
});

describe('complete (Tab)', () => {
  const nicks = ['bob', 'Bobby', 'carol'];
  it('completes commands after a leading slash, with a space when they take arguments', () => {
    expect(complete('/wh', nicks)).toEqual([['/who'], '/wh']);
    expect(complete('/ve', nicks)).toEqual([['/verify '], '/ve']);
    expect(complete('/', nicks)[0]).toHaveLength(COMMANDS.length);
    expect(complete('/zz', nicks)).toEqual([[], '/zz']);
    expect(complete('/help ac', nicks)).toEqual([['accept'], 'ac']);
  });

  it('completes nicks: "nick: " at the start, the bare nick inside a line, any case', () => {
    expect(complete('ca', nicks)).toEqual([['carol: '], 'ca']);
    // Several: the list shows the nicks alone (before, 'bob: ' and 'Bobby: ').
    expect(complete('bo', nicks)).toEqual([['bob', 'Bobby'], 'bo']);
    expect(complete('hi CA', nicks)).toEqual([['carol'], 'CA']);
    expect(complete('hi @ca', nicks)).toEqual([['@carol'], '@ca']);
    expect(complete('@ca', nicks)).toEqual([['@carol'], '@ca']);
    expect(complete('hi ', nicks)).toEqual([[], '']);
    expect(complete('mail@ca', nicks)).toEqual([[], '@ca']);
  });

  it('never offers a nick that no one can join with: a server could put terminal escapes in one', () => {
    const evil = ['evA\u001b]0;PWNED\u0007', 'evB\u001b[2J', 'eve'];
    expect(complete('ev', evil)).toEqual([['eve: '], 'ev']);
    expect(complete('/verify ev', evil)).toEqual([['eve'], 'ev']);
    expect(complete('hi @ev', ['evA\u009b2J'])).toEqual([[], '@ev']);
  });

  it('completes the NICK of /verify and /accept and words of /me, nothing else after a command', () => {
    expect(complete('/verify b', nicks)).toEqual([['bob', 'Bobby'], 'b']);
    expect(complete('/accept ca', nicks)).toEqual([['carol'], 'ca']);
    expect(complete('/verify carol y', nicks)).toEqual([[], 'y']);
    expect(complete('/me hugs ca', nicks)).toEqual([['carol'], 'ca']);
    expect(complete('/nick ca', nicks)).toEqual([[], 'ca']);
  });
});

describe('helpLines', () => {
  it('lists every command, each line within 80 columns, and explains one', () => {
    const lines = helpLines();
    for (const c of COMMANDS) expect(lines.some((l) => l.startsWith(`  /${c.name}`))).toBe(true);
    for (const l of lines) expect(l.length + 2, l).toBeLessThanOrEqual(80); // printed indented by 2
    expect(helpLines('/verify')[0]).toMatch(/^\/verify NICK \[yes\]: /);
    expect(helpLines('nope')).toEqual(['no command /nope; /help lists them']);
  });
});
