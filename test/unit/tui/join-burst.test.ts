import { describe, expect, it } from 'vitest';
import { formatLine, hereList, JoinBurst, SHOWN_MEMBERS } from '../../../src/tui/events.js';
import type { ChatEvent, Who } from '../../../src/tui/events.js';
import { colors, renderEvent } from '../../../src/tui/render.js';

/** A member whose fingerprint counts its reads (each costs 5,200 SHA-512s in the client). */
function member(i: number, reads: { n: number }): Who {
  return {
    nick: `m${i}`,
    get fingerprint(): string {
      reads.n++;
      return `${String(i).padStart(5, '0')}-00000`;
    },
    verified: false,
    trust: 'new',
  };
}

/** A clock whose time and one timer the test moves by hand. */
function manualClock(): {
  now: () => number;
  setTimer: (run: () => void, ms: number) => () => void;
  advance: (ms: number) => void;
} {
  let now = 0;
  let timer: { at: number; run: () => void } | null = null;
  return {
    now: () => now,
    setTimer: (run, ms) => {
      timer = { at: now + ms, run };
      return () => (timer = null);
    },
    advance: (ms) => {
      now += ms;
      const t = timer;
      if (t !== null && t.at <= now) {
        timer = null;
        t.run();
      }
    },
  };
}

const join = (i: number): ChatEvent => ({
  type: 'join',
  nick: `m${i}`,
  fingerprint: 'x',
  verified: false,
  trust: 'new',
  ts: 0,
});
const leave: ChatEvent = { type: 'leave', nick: 'm1', reason: 'left', ts: 0 };

describe('JoinBurst', () => {
  it('shows the first joins of a burst and reports the rest as one count when the window ends', () => {
    const clock = manualClock();
    const counts: number[] = [];
    const burst = new JoinBurst((n) => counts.push(n), { limit: 3, windowMs: 1000, ...clock });
    const shown = Array.from({ length: 10_000 }, (_, i) => burst.admit(join(i))).filter(Boolean).length;
    expect(shown).toBe(3);
    expect(counts).toEqual([]);
    clock.advance(1000);
    expect(counts).toEqual([9_997]);
  });

  it('reports the count before the next event that is not a join, and starts over in a new window', () => {
    const clock = manualClock();
    const counts: number[] = [];
    const burst = new JoinBurst((n) => counts.push(n), { limit: 2, windowMs: 1000, ...clock });
    for (let i = 0; i < 5; i++) burst.admit(join(i));
    expect(burst.admit(leave)).toBe(true);
    expect(counts).toEqual([3]);
    clock.advance(999);
    expect(counts).toEqual([3]); // the timer was cancelled with the count reported
    clock.advance(1);
    expect([burst.admit(join(5)), burst.admit(join(6)), burst.admit(join(7))]).toEqual([true, true, false]);
    clock.advance(1000);
    expect(counts).toEqual([3, 1]);
  });

  it('lets everything through while joins trickle', () => {
    const clock = manualClock();
    const counts: number[] = [];
    const burst = new JoinBurst((n) => counts.push(n), { limit: 2, windowMs: 1000, ...clock });
    for (let i = 0; i < 20; i++) {
      expect(burst.admit(join(i))).toBe(true);
      clock.advance(600);
    }
    expect(counts).toEqual([]);
  });
});

describe('the joined line', () => {
  it(`names the first ${SHOWN_MEMBERS} members of a big room and counts the rest, reading only their fingerprints`, () => {
    const reads = { n: 0 };
    const members = Array.from({ length: 1_000 }, (_, i) => member(i, reads));
    const line = formatLine({ type: 'joined', nick: 'me', fingerprint: '1-2', members, seq: 0, ts: 0 }, (s) => s);
    expect(line).toContain(`m${SHOWN_MEMBERS - 1} `);
    expect(line).not.toContain(`m${SHOWN_MEMBERS} `);
    // Line mode sends every input line to the room: it must not suggest typing /who.
    expect(line).toMatch(/, and 980 more$/);
    expect(reads.n).toBe(SHOWN_MEMBERS);
    const shown = renderEvent(
      { type: 'joined', nick: 'me', fingerprint: '1-2', members, seq: 0, ts: 0 },
      { c: colors(false), me: 'me' },
    );
    expect(shown?.lines.join('\n')).toMatch(/, and 980 more \(\/who\)$/);
  });

  it('names every member of a small room', () => {
    expect(hereList(['a', 'b'], (s) => s.toUpperCase())).toBe('A, B');
  });
});
