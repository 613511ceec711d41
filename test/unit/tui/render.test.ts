import { describe, expect, it } from 'vitest';
import type { ChatEvent } from '../../../src/tui/events.js';
import {
  clock,
  colors,
  mentions,
  nickColor,
  renderEvent,
  renderNotice,
  renderOwn,
  useColor,
} from '../../../src/tui/render.js';

// The server only lets [A-Za-z0-9_.-] nicks through, but the renderer must not
// rely on that: a hostile relay, or a future transport, could hand it anything.
const HOSTILE = '\u001b[2J\u001b[H\u001b]0;pwned\u0007\r<alice>\u009b31m\n12:00 <bob>\u001b[1A\u007f';
const TEXT = 'hi\u001b[2K\rfake\n12:00 <alice> I owe you\u001b]2;title\u001b\\';

// Our own styling is SGR (ESC [ ... m) and nothing else.
// eslint-disable-next-line no-control-regex -- matching escape sequences is the point
const SGR = /\u001b\[[0-9;]*m/g;
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/;

const who = { nick: HOSTILE, fingerprint: '12345-67890', verified: false, trust: 'known' as const };
const ts = new Date(2026, 0, 2, 9, 5).getTime();
/** A message event from `who`, with the fields a test cares about. */
type MessageEvent = Extract<ChatEvent, { type: 'message' }>;
const message = (fields: Partial<MessageEvent> = {}): MessageEvent => ({
  type: 'message',
  ...who,
  text: TEXT,
  action: false,
  seq: 1,
  senderSeq: 1,
  ts,
  history: false,
  own: false,
  ...fields,
});
const all: ChatEvent[] = [
  { type: 'invite', link: `confab://h:1/#${HOSTILE}`, ts },
  {
    type: 'joined',
    nick: HOSTILE,
    fingerprint: '12345-67890',
    members: [who, { ...who, trust: 'verified' }],
    seq: 1,
    ts,
  },
  message(),
  message({ seq: 3, senderSeq: 3, history: true }),
  { type: 'missed', count: 3, ts },
  { type: 'missed', count: 0, ts },
  { type: 'resent', count: 2, ts },
  message({ action: true, seq: 2, senderSeq: 2, warning: 'history-mismatch' }),
  { type: 'sent', nick: HOSTILE, text: TEXT, seq: 3, ts },
  { type: 'join', ...who, trust: 'changed', ts },
  { type: 'leave', nick: HOSTILE, reason: 'disconnected', ts },
  { type: 'rejected', reason: 'bad-signature', nick: HOSTILE, seq: 4, message: TEXT, ts },
  { type: 'gap', nick: HOSTILE, fingerprint: '12345-67890', missing: 3, ts },
  { type: 'key-changed', nick: HOSTILE, oldFingerprint: '1-2', newFingerprint: '3-4', ts },
  { type: 'disconnect', code: 'X', message: TEXT, reconnecting: true, ts },
  { type: 'error', code: 'NICK_TAKEN', message: TEXT, ts },
];

describe('renderEvent: what others send is inert', () => {
  for (const enabled of [false, true]) {
    it(`leaves no control character but our own colours, for every event (colour ${enabled ? 'on' : 'off'})`, () => {
      const ctx = { c: colors(enabled), me: 'alice' };
      for (const event of all) {
        const shown = renderEvent(event, ctx);
        expect(shown, event.type).not.toBeNull();
        for (const line of shown?.lines ?? []) {
          if (!enabled) expect(line).not.toMatch(SGR);
          expect(line.replace(SGR, ''), `${event.type}: ${JSON.stringify(line)}`).not.toMatch(CONTROL);
        }
      }
    });
  }

  it('shows the hostile nick in caret notation, on one line', () => {
    const shown = renderEvent(all[2] as ChatEvent, { c: colors(false), me: 'alice' });
    expect(shown?.lines[0]).toBe('09:05 <^[[2J^[[H^[]0;pwned^G^M<alice>\\x9b31m^J12:00 <bob>^[[1A^?> hi^[[2K^Mfake');
  });

  it('hangs the lines of a multi-line message under a bar, so none can pass for a message of its own', () => {
    const shown = renderEvent(message({ nick: 'mallory', text: 'one\n12:00 <alice> two\n\u001b[1A' }), {
      c: colors(false),
      me: 'carol',
    });
    expect(shown?.lines).toEqual(['09:05 <mallory> one', '      │ 12:00 <alice> two', '      │ ^[[1A']);
  });

  it('gives a message under our own nick that our key did not sign its fingerprint, so it cannot pass for ours', () => {
    const ctx = { c: colors(false), me: 'alice' };
    const theirs = message({ nick: 'Alice', text: 'I never said that', history: true });
    // Before: "09:05 · <Alice> I never said that", alike to the line we typed.
    expect(renderEvent(theirs, ctx)?.lines).toEqual(['09:05 · <Alice 12345-67890> I never said that']);
    expect(renderEvent({ ...theirs, own: true }, ctx)?.lines).toEqual(['09:05 · <Alice> I never said that']);
    expect(renderEvent({ ...theirs, nick: 'bob' }, ctx)?.lines).toEqual(['09:05 · <bob> I never said that']);
  });

  it('renders our own lines and notices with the same guarantees', () => {
    const ctx = { c: colors(false), me: 'alice' };
    expect(renderOwn(ctx, 'a\nb\u001b[2J', false, ts)).toEqual(['09:05 <alice> a', '      │ b^[[2J']);
    expect(renderOwn(ctx, 'waves', true, ts)).toEqual(['09:05 * alice waves']);
    expect(renderNotice(ctx, 'hello', 'info', ts)).toBe('09:05 * hello');
    expect(renderNotice(ctx, 'careful', 'warn', ts)).toBe('09:05 ! careful');
  });
});

describe('mentions, colours, time', () => {
  it('finds our nick as a word of its own, in any case, and marks the message', () => {
    expect(mentions('hey alice!', 'alice')).toBe(true);
    expect(mentions('ALICE: look', 'alice')).toBe(true);
    expect(mentions('@alice', 'alice')).toBe(true);
    expect(mentions('malice', 'alice')).toBe(false);
    expect(mentions('alice2 is here', 'alice')).toBe(false);
    expect(mentions('a.b', 'a.b')).toBe(true);
    expect(mentions('axb', 'a.b')).toBe(false); // the dot is literal
    const ctx = { c: colors(true), me: 'alice' };
    const event = message({ nick: 'bob', text: 'hi alice' });
    const shown = renderEvent(event, ctx);
    expect(shown?.mention).toBe(true);
    expect(shown?.lines[0]).toContain('\u001b[7malice\u001b[27m');
    expect(renderEvent({ ...event, text: 'hi bob' }, ctx)?.mention).toBe(false);
  });

  it('gives a nick the same colour every time, whatever its case', () => {
    expect(nickColor('alice')).toBe(nickColor('alice'));
    expect(nickColor('Alice')).toBe(nickColor('aLiCe'));
    const used = new Set(['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'].map(nickColor));
    expect(used.size).toBeGreaterThan(3);
  });

  it('uses colour on a colour terminal, never with NO_COLOR, and the same with or without CI', () => {
    const depth = (env: NodeJS.ProcessEnv): number => (env['TERM'] === 'vt220' ? 1 : 'CI' in env ? 1 : 8);
    const term = { getColorDepth: depth };
    expect(useColor({ TERM: 'xterm-256color' }, term)).toBe(true);
    expect(useColor({ TERM: 'xterm-256color', CI: 'true' }, term)).toBe(true);
    expect(useColor({ TERM: 'xterm-256color', NO_COLOR: '1' }, term)).toBe(false);
    expect(useColor({ TERM: 'xterm-256color', NO_COLOR: '' }, term)).toBe(true);
    expect(useColor({ TERM: 'vt220' }, term)).toBe(false);
    expect(useColor({ TERM: 'vt220', FORCE_COLOR: '1' }, term)).toBe(true);
    expect(useColor({ FORCE_COLOR: '0' }, term)).toBe(false);
    expect(useColor({}, null)).toBe(false);
  });

  it('prints local time as HH:MM', () => {
    expect(clock(ts)).toBe('09:05');
    expect(clock(new Date(2026, 0, 2, 23, 59).getTime())).toBe('23:59');
  });
});
