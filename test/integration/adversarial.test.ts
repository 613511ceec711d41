import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADER_LEN, newIdentity, newRoomSecret, NO_PREVIOUS, roomKeys, sealEnvelope } from '../../src/crypto/index.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { encodeFrame, FrameType } from '../../src/protocol/index.js';
import type { ConfabServer } from '../../src/server/index.js';
import { Mitm } from '../helpers/mitm.js';
import { testServer, until } from '../helpers/net.js';
import { secureMember } from '../helpers/secure.js';
import type { SecureMember } from '../helpers/secure.js';

// A malicious relay between a real server and a real receiver: every attack
// must be detected (a gap) or rejected (with a reason), never shown as genuine.
const TRIALS = 200;

let server: ConfabServer;
let mitm: Mitm;
let alice: SecureMember; // sends, directly to the server
let bob: SecureMember; // receives, through the man in the middle
const secret = newRoomSecret();
const keys = roomKeys(secret);
let counter = 0;
const results: string[] = [];

type Hook = (frame: Uint8Array, to: Socket) => Uint8Array[];
const pass: Hook = (f) => [f];

/** Applies `hook` to the next DELIVER only; everything else passes. */
function onNextDeliver(hook: Hook): void {
  mitm.onServerFrame = (f, to) => {
    if (f[0] !== FrameType.DELIVER) return [f];
    mitm.onServerFrame = pass;
    return hook(f, to);
  };
}

/** Where the envelope starts inside a DELIVER frame (type byte included). */
function bodyOffset(frame: Uint8Array): number {
  return 1 + 16 + 8 + 8 + 1 + (frame[1 + 16 + 8 + 8] as number);
}

async function send(): Promise<string> {
  const text = `message ${++counter}`;
  await alice.room.send(text);
  return text;
}

/** Waits until bob's event log has grown by `n` entries and returns them. */
async function next(n: number): Promise<string[]> {
  const start = bob.log.length;
  await until(() => bob.log.length >= start + n, 5000, `${n} events at bob`);
  return bob.log.slice(start, start + n);
}

beforeAll(async () => {
  server = await testServer();
  mitm = await Mitm.start(server.port);
  mitm.renumber = true;
  alice = await secureMember(server.port, secret, 'alice');
  bob = await secureMember(mitm.port, secret, 'bob');
  await send();
  expect(await next(1)).toEqual(['message:message 1']);
});

afterAll(async () => {
  console.log(`adversarial relay, ${TRIALS} trials each: ${results.join('; ')}`);
  await alice.close();
  await bob.close();
  await mitm.close();
  await server.close();
});

describe('adversarial relay: every attack detected or rejected', () => {
  it(`flips a random bit of the envelope (${TRIALS} trials)`, async () => {
    let detected = 0;
    for (let i = 0; i < TRIALS; i++) {
      onNextDeliver((f) => {
        const at = bodyOffset(f) + Math.floor(Math.random() * (f.length - bodyOffset(f)));
        f[at] = (f[at] as number) ^ (1 << Math.floor(Math.random() * 8));
        return [f];
      });
      await send();
      const [event] = await next(1);
      if (event?.startsWith('rejected:')) detected++;
      // The next genuine message reports the one that never arrived intact.
      await send();
      const after = await next(2);
      expect(after[0]).toBe('gap:1');
    }
    results.push(`flip ${detected}/${TRIALS}`);
    expect(detected).toBe(TRIALS);
  });

  it(`flips a bit of the relayed nick, to pin the words on someone else (${TRIALS} trials)`, async () => {
    let detected = 0;
    for (let i = 0; i < TRIALS; i++) {
      onNextDeliver((f) => {
        const nickAt = 1 + 16 + 8 + 8 + 1;
        f[nickAt] = (f[nickAt] as number) ^ (1 << (i % 5)); // stays printable-ish ASCII
        return [f];
      });
      await send();
      const [event] = await next(1);
      if (event === 'rejected:nick-mismatch') detected++;
      await send();
      await next(2);
    }
    results.push(`nick swap ${detected}/${TRIALS}`);
    expect(detected).toBe(TRIALS);
  });

  it(`replays a message (${TRIALS} trials): shown once, the copy rejected`, async () => {
    let detected = 0;
    for (let i = 0; i < TRIALS; i++) {
      onNextDeliver((f) => [f, f.slice()]);
      const text = await send();
      const events = await next(2);
      if (events[0] === `message:${text}` && events[1] === 'rejected:replay') detected++;
    }
    results.push(`replay ${detected}/${TRIALS}`);
    expect(detected).toBe(TRIALS);
    const shown = bob.messages.map((m) => m.text);
    expect(new Set(shown).size).toBe(shown.length);
  });

  it(`drops a message (${TRIALS} trials): the next one reports the gap`, async () => {
    let detected = 0;
    for (let i = 0; i < TRIALS; i++) {
      onNextDeliver(() => []);
      await send();
      const text = await send();
      const events = await next(2);
      if (events[0] === 'gap:1' && events[1] === `message:${text}`) detected++;
    }
    results.push(`drop ${detected}/${TRIALS}`);
    expect(detected).toBe(TRIALS);
  });

  it(`reorders two messages (${TRIALS} trials): flagged as a gap, the late one rejected`, async () => {
    let detected = 0;
    for (let i = 0; i < TRIALS; i++) {
      let held: Uint8Array | undefined;
      mitm.onServerFrame = (f) => {
        if (f[0] !== FrameType.DELIVER) return [f];
        if (held === undefined) {
          held = f;
          return [];
        }
        mitm.onServerFrame = pass;
        return [f, held];
      };
      await send();
      const second = await send();
      const events = await next(3);
      if (events[0] === 'gap:1' && events[1] === `message:${second}` && events[2] === 'rejected:replay') detected++;
    }
    results.push(`reorder ${detected}/${TRIALS}`);
    expect(detected).toBe(TRIALS);
  });

  it(`injects forged messages (${TRIALS} trials): garbage, wrong key, and an insider posing as alice`, async () => {
    const mallory = newIdentity(); // holds the invite, but not alice's key
    let malloryMsgSeq = 0;
    let detected = 0;
    const reasons = new Map<string, number>();
    for (let i = 0; i < TRIALS; i++) {
      let body: Uint8Array;
      const variant = i % 3;
      if (variant === 0) {
        body = crypto.getRandomValues(new Uint8Array(300));
      } else if (variant === 1) {
        const real = sealEnvelope(keys, alice.identity, {
          type: 1,
          nick: 'alice',
          seq: 1,
          sentAt: Date.now(),
          prevHash: NO_PREVIOUS,
          body: new TextEncoder().encode('forged'),
        });
        body = real.slice();
        crypto.getRandomValues(body.subarray(HEADER_LEN)); // right header, ciphertext without the key
      } else {
        body = sealEnvelope(keys, mallory, {
          type: 1,
          nick: 'alice',
          seq: ++malloryMsgSeq,
          sentAt: Date.now(),
          prevHash: NO_PREVIOUS,
          body: new TextEncoder().encode('send the money to mallory'),
        });
      }
      const frame = encodeFrame({
        type: 'deliver',
        room: keys.roomId,
        seq: 1e9 + i,
        ts: Date.now(),
        nick: 'alice',
        body,
      });
      const [toBob] = [...mitm.clients];
      mitm.inject(toBob as Socket, frame.subarray(4));
      const events = await next(variant === 2 && malloryMsgSeq === 1 ? 2 : 1);
      const rejected = events.find((e) => e.startsWith('rejected:'));
      if (rejected !== undefined && !events.some((e) => e.startsWith('message:'))) {
        detected++;
        reasons.set(rejected, (reasons.get(rejected) ?? 0) + 1);
      }
    }
    results.push(`inject ${detected}/${TRIALS} (${[...reasons].map(([r, n]) => `${r.slice(9)} ${n}`).join(', ')})`);
    expect(detected).toBe(TRIALS);
    expect(bob.keyChanges.map((k) => k.nick)).toEqual(['alice']);
    expect(bob.messages.some((m) => m.text.includes('mallory'))).toBe(false);
  });

  it('a sender who showed others another history: its next message is shown flagged (history-mismatch)', async () => {
    // carol signs two different first messages (one for bob, one for everyone
    // else), then a second that follows the one the others saw.
    const carol = newIdentity();
    const seal = (seq: number, prevHash: Uint8Array, text: string): Uint8Array =>
      sealEnvelope(keys, carol, {
        type: 1,
        nick: 'carol',
        seq,
        sentAt: Date.now(),
        prevHash,
        body: new TextEncoder().encode(text),
      });
    const forBob = seal(1, NO_PREVIOUS, 'I owe bob 5 EUR');
    const forOthers = seal(1, NO_PREVIOUS, 'I owe bob nothing');
    const next2 = seal(2, sha256(forOthers), 'as I said');
    const [toBob] = [...mitm.clients];
    const deliver = (seq: number, body: Uint8Array): void =>
      mitm.inject(
        toBob as Socket,
        encodeFrame({
          type: 'deliver',
          room: keys.roomId,
          seq: 3e9 + seq,
          ts: Date.now(),
          nick: 'carol',
          body,
        }).subarray(4),
      );
    deliver(1, forBob);
    deliver(2, next2);
    expect(await next(2)).toEqual(['message:I owe bob 5 EUR', 'message:as I said']);
    const shown = bob.messages.slice(-2);
    expect(shown[0]?.warning).toBeUndefined();
    expect(shown[1]?.warning).toBe('history-mismatch');
    // A message that follows the one bob saw last is not flagged.
    deliver(3, seal(3, sha256(next2), 'and again'));
    expect(await next(1)).toEqual(['message:and again']);
    expect(bob.messages.at(-1)?.warning).toBeUndefined();
  });

  it('an insider posing as alice under a look-alike nick, relayed under the same: rejected, not shown', async () => {
    const mallory = newIdentity();
    // A Cyrillic а, and a zero-width space: each would show as "alice", a new member with its own pin.
    for (const [i, nick] of ['\u0430lice', 'alice\u200b'].entries()) {
      const body = sealEnvelope(keys, mallory, {
        type: 1,
        nick,
        seq: 1,
        sentAt: Date.now(),
        prevHash: NO_PREVIOUS,
        body: new TextEncoder().encode(`look-alike ${i}: send the money to mallory`),
      });
      const frame = encodeFrame({ type: 'deliver', room: keys.roomId, seq: 2e9 + i, ts: Date.now(), nick, body });
      const [toBob] = [...mitm.clients];
      mitm.inject(toBob as Socket, frame.subarray(4));
      expect(await next(1)).toEqual(['rejected:malformed']);
    }
    expect(bob.messages.some((m) => m.text.includes('look-alike'))).toBe(false);
  });
});
