/** The interactive client's slash commands: their help, parsing and Tab completion. */

import { isValidNick } from '../client/index.js';

export interface Command {
  name: string;
  /** Arguments as shown in help, '' for none. */
  args: string;
  /** Most words it takes after its name (the rest of the line, for /me). */
  maxArgs: number;
  summary: string;
  /** More lines for `/help NAME`. */
  details: readonly string[];
}

export const COMMANDS: readonly Command[] = [
  {
    name: 'help',
    args: '[COMMAND]',
    maxArgs: 1,
    summary: 'list the commands, or explain one',
    details: ['Tab completes commands and nicks; ↑ and ↓ recall what you typed before.'],
  },
  {
    name: 'who',
    args: '',
    maxArgs: 0,
    summary: 'who is here, with key fingerprints (✓ verified)',
    details: [
      'Each member is shown with the start of their key fingerprint. ✓ means you compared',
      'safety numbers and marked the key verified (/verify); ! means their key changed (/accept).',
    ],
  },
  {
    name: 'me',
    args: 'ACTION',
    maxArgs: Infinity,
    summary: 'send an action: /me waves shows as "* alice waves"',
    details: [],
  },
  {
    name: 'nick',
    args: 'NEW',
    maxArgs: 1,
    summary: 'change your nick: leaves the room and joins again as NEW',
    details: [
      'Others see you leave and join again under the new name, with the same key.',
      'NEW is 1 to 24 of A-Z a-z 0-9 _ . - and must be free in the room (any case).',
    ],
  },
  {
    name: 'invite',
    args: '',
    maxArgs: 0,
    summary: "print this room's invite link",
    details: ['Anyone with the link can join and read the room: send it over a channel you trust.'],
  },
  {
    name: 'verify',
    args: 'NICK [yes]',
    maxArgs: 2,
    summary: 'show your safety number with NICK; yes: mark verified',
    details: [
      'Compare the 60 digits with NICK in person or by voice: they see the same number.',
      'If it matches, /verify NICK yes marks the key verified; their name then shows ✓.',
      'After a key change, it shows the number for the new key, to compare before /accept.',
    ],
  },
  {
    name: 'accept',
    args: 'NICK',
    maxArgs: 1,
    summary: "accept NICK's changed key, so you can send again",
    details: [
      'When a known nick comes back with another key, confab refuses its messages and blocks',
      'your sending until you decide. Compare safety numbers first (/verify NICK).',
    ],
  },
  { name: 'clear', args: '', maxArgs: 0, summary: 'clear the screen (also Ctrl-L)', details: [] },
  { name: 'quit', args: '', maxArgs: 0, summary: 'leave the room and exit (also Ctrl-D, Ctrl-C)', details: [] },
];

export type Input =
  | { kind: 'empty' }
  | { kind: 'text'; text: string }
  | { kind: 'command'; name: string; args: string[]; rest: string }
  /** A command given more words than it takes: not run (`/nick a b` is not `/nick a`). */
  | { kind: 'usage'; name: string; usage: string }
  | { kind: 'unknown'; name: string; suggestion: string | null };

/**
 * What a submitted line is: a message, a command, or an unknown command
 * (never sent). `//text` sends `/text`.
 */
export function parseInput(line: string): Input {
  if (line.trim() === '') return { kind: 'empty' };
  if (line.startsWith('//')) return { kind: 'text', text: line.slice(1) };
  if (!line.startsWith('/')) return { kind: 'text', text: line };
  const m = /^\/(\S*)\s*(.*)$/s.exec(line);
  const name = (m?.[1] ?? '').toLowerCase();
  const rest = m?.[2] ?? '';
  const cmd = COMMANDS.find((c) => c.name === name);
  if (cmd !== undefined) {
    const args = rest.split(/\s+/).filter((a) => a !== '');
    if (args.length > cmd.maxArgs)
      return { kind: 'usage', name, usage: `usage: /${name}${cmd.args === '' ? '' : ` ${cmd.args}`}` };
    return { kind: 'command', name, args, rest };
  }
  return { kind: 'unknown', name: m?.[1] ?? '', suggestion: suggest(name) };
}

/** The command meant by a mistyped name: a unique prefix match, or one within one edit. */
function suggest(name: string): string | null {
  if (name === '') return null;
  const prefixed = COMMANDS.filter((c) => c.name.startsWith(name));
  if (prefixed.length === 1) return prefixed[0]?.name ?? null;
  const near = COMMANDS.filter((c) => distance(c.name, name) <= 1 || sameLetters(c.name, name));
  return near.length === 1 ? (near[0]?.name ?? null) : null;
}

function sameLetters(a: string, b: string): boolean {
  return a.length === b.length && [...a].sort().join('') === [...b].sort().join('');
}

function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min((prev[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = row;
  }
  return prev[b.length] ?? 0;
}

/** `/help` or `/help NAME`, as plain lines. */
export function helpLines(topic?: string): string[] {
  if (topic !== undefined) {
    const name = topic.replace(/^\//, '').toLowerCase();
    const cmd = COMMANDS.find((c) => c.name === name);
    if (cmd === undefined) return [`no command /${name}; /help lists them`];
    return [`/${cmd.name}${cmd.args === '' ? '' : ` ${cmd.args}`}: ${cmd.summary}`, ...cmd.details];
  }
  const width = Math.max(...COMMANDS.map((c) => c.name.length + (c.args === '' ? 0 : c.args.length + 1))) + 2;
  return [
    'Commands:',
    ...COMMANDS.map((c) => `  /${`${c.name}${c.args === '' ? '' : ` ${c.args}`}`.padEnd(width)}${c.summary}`),
    'Other lines are messages to the room (// sends one that starts with /).',
    'Tab completes commands and nicks; ↑ and ↓ recall earlier lines.',
    'A paste of several lines is one message; its line breaks show as ␤.',
  ];
}

// Commands whose first argument is a nick.
const NICK_ARG = new Set(['verify', 'accept']);

/**
 * readline's completer: commands after a leading `/`, command names after
 * `/help`, and nicks elsewhere (`nick: ` at the start of a message).
 * Case-insensitive; returns the candidates and the word they replace.
 */
export function complete(line: string, nicks: readonly string[]): [string[], string] {
  const byPrefix = (list: readonly string[], word: string): string[] =>
    list.filter((x) => x.toLowerCase().startsWith(word.toLowerCase()));
  if (/^\/\S*$/.test(line)) {
    const hits = COMMANDS.filter((c) => `/${c.name}`.startsWith(line.toLowerCase()));
    // The space goes in with the one completion, not into the list readline shows for several.
    return [hits.map((c) => `/${c.name}${c.args === '' || hits.length > 1 ? '' : ' '}`), line];
  }
  const help = /^\/help\s+\/?(\S*)$/i.exec(line);
  if (help !== null) {
    const word = help[1] ?? '';
    return [
      byPrefix(
        COMMANDS.map((c) => c.name),
        word,
      ),
      word,
    ];
  }
  const m = /(@?)([A-Za-z0-9_.-]*)$/.exec(line);
  const at = m?.[1] ?? '';
  const word = m?.[2] ?? '';
  const token = `${at}${word}`;
  const before = line.slice(0, line.length - token.length);
  if (token === '' || (before !== '' && !/\s$/.test(before))) return [[], token];
  if (line.startsWith('/')) {
    // Only the NICK of /verify and /accept, and words in a /me action, are nicks.
    const words = before.trim().split(/\s+/);
    const name = (words[0] ?? '').slice(1).toLowerCase();
    const nickArg = NICK_ARG.has(name) && words.length === 1;
    if (!nickArg && name !== 'me') return [[], token];
  }
  // What readline inserts is written to the terminal as it is: a nick a
  // server made up with escapes in it must never be a candidate.
  const hits = byPrefix(nicks.filter(isValidNick), word);
  // "nick: " only for the one completion; a list of several shows the nicks alone.
  const suffix = before === '' && at === '' && hits.length === 1 ? ': ' : '';
  return [hits.map((n) => `${at}${n}${suffix}`), token];
}
