import { hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  EnvelopeError,
  HEADER_LEN,
  identityFromSecret,
  MAX_TEXT,
  MessageType,
  messageKey,
  newIdentity,
  NO_PREVIOUS,
  openEnvelope,
  PAD_BUCKET,
  roomKeys,
  sealEnvelope,
} from '../../../src/crypto/index.js';
import type { Message, RejectReasonValue } from '../../../src/crypto/index.js';
import { xchachaOpen, xchachaSeal } from '../../../src/crypto/primitives.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

// The worked example of doc/PROTOCOL.md §7.
const secret = new Uint8Array(32).map((_, i) => i);
const keys = roomKeys(secret);
const alice = identityFromSecret(new Uint8Array(32).fill(0x42));
const nonce = new Uint8Array(24).map((_, i) => 0xa0 + i);
const hello: Message = {
  type: MessageType.TEXT,
  nick: 'alice',
  seq: 1,
  sentAt: 1_800_000_000_000,
  prevHash: NO_PREVIOUS,
  body: text('hello, bob'),
};
const GOLDEN =
  '0101efeb20c181dfd0fc73b3f3a63d51ac4c00000000a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b71c91e62efbbd5489b8a1' +
  'c7092dde0e2b5b007c544184789c58f7b34a29dfa412f7be4f33649b23c7238025927e311f40e0970395f3a4afb34a2b21f481e9acd290f6' +
  'aac26852533a9392f6349661f6f899e3b5cd7197a7277df6908c9b74d1271c5c4a0b49b109eb8dd42f789d6952e5470decd151c98907227e' +
  'cbaa9057de43674832ea82f5b74413b5cf3f3482e87cd42dfad82fb3e66e743d0726792ec2a8f41611e7f3798941f8e8391932e5e02c0efa' +
  'abe6ac0c0baf4238ab7f4bbab8dfaa355c5a1266623676102486f50dca0429fe3b9879a15dd89ef6ff61c8ee0c9dacea04688c9f5a901ed0' +
  '428f8ae4c29067804a7e2cf36161975b5ce576a1d237ea156dc2d3cec7ae077c6d4561cb7834';

function reasonOf(fn: () => unknown): RejectReasonValue | 'accepted' {
  try {
    fn();
    return 'accepted';
  } catch (err) {
    if (err instanceof EnvelopeError) return err.reason;
    throw err;
  }
}

describe('key derivation (golden vectors)', () => {
  it('derives the room id and the epoch-0 message key, as node:crypto’s HKDF does', () => {
    expect(hex(keys.roomId)).toBe('efeb20c181dfd0fc73b3f3a63d51ac4c');
    expect(hex(keys.messageKey)).toBe('b5b33bde8a5fc23ad56b8232e1d36dbc5522a0a52628e9d85b3b30b7199a3509');
    const info = Buffer.concat([Buffer.from('msg-key'), Buffer.from([0, 0, 0, 0])]);
    expect(keys.messageKey).toEqual(new Uint8Array(hkdfSync('sha256', secret, keys.roomId, info, 32)));
  });

  it('gives each epoch its own key', () => {
    expect(messageKey(secret, keys.roomId, 1)).not.toEqual(keys.messageKey);
  });
});

describe('envelope', () => {
  it('matches the worked example byte for byte', () => {
    expect(hex(sealEnvelope(keys, alice, hello, () => nonce))).toBe(GOLDEN);
  });

  it('opens the worked example', () => {
    const opened = openEnvelope(keys, new Uint8Array(Buffer.from(GOLDEN, 'hex')));
    expect(opened).toMatchObject({ type: 1, nick: 'alice', seq: 1, sentAt: 1_800_000_000_000 });
    expect(new TextDecoder().decode(opened.body)).toBe('hello, bob');
    expect(opened.senderKey).toEqual(alice.publicKey);
  });

  it('pads the inner plaintext to 256-byte buckets', () => {
    const sizes = [0, 1, 103, 104, 400, 1000, MAX_TEXT].map(
      (n) => sealEnvelope(keys, alice, { ...hello, body: new Uint8Array(n) }).length - HEADER_LEN - 16,
    );
    for (const s of sizes) expect(s % PAD_BUCKET).toBe(0);
    // 153 fixed bytes with a 5-byte nick leave 103 for the body in the first bucket.
    expect(sizes.slice(0, 5)).toEqual([256, 256, 256, 512, 768]);
  });

  it('opens the nick as the bytes signed, a leading byte order mark included', () => {
    const opened = openEnvelope(keys, sealEnvelope(keys, alice, { ...hello, nick: '\u{FEFF}alice' }));
    expect(opened.nick).toBe('\u{FEFF}alice');
  });

  it('uses a fresh nonce each time, so the same message never seals the same', () => {
    const a = sealEnvelope(keys, alice, hello);
    const b = sealEnvelope(keys, alice, hello);
    expect(hex(a.subarray(22, 46))).not.toBe(hex(b.subarray(22, 46)));
    expect(openEnvelope(keys, a).body).toEqual(openEnvelope(keys, b).body);
  });

  it('refuses bodies over MAX_TEXT and malformed inputs to seal', () => {
    expect(() => sealEnvelope(keys, alice, { ...hello, body: new Uint8Array(MAX_TEXT + 1) })).toThrow(RangeError);
    expect(() => sealEnvelope(keys, alice, { ...hello, seq: 0 })).toThrow(RangeError);
    expect(() => sealEnvelope(keys, alice, { ...hello, prevHash: new Uint8Array(3) })).toThrow(RangeError);
  });
});

describe('envelope: every alteration is rejected with its reason', () => {
  const envelope = sealEnvelope(keys, alice, hello);

  it('a flipped bit in every header byte', () => {
    const expected = (i: number): RejectReasonValue =>
      i === 0
        ? 'bad-version'
        : i === 1
          ? 'bad-suite'
          : i < 18
            ? 'wrong-room'
            : i < 22
              ? 'wrong-epoch'
              : 'decrypt-failed';
    for (let i = 0; i < HEADER_LEN; i++) {
      for (const bit of [0x01, 0x80]) {
        const bad = envelope.slice();
        bad[i] = (bad[i] as number) ^ bit;
        expect(
          reasonOf(() => openEnvelope(keys, bad)),
          `header byte ${i}`,
        ).toBe(expected(i));
      }
    }
  });

  it('a flipped bit in every ciphertext and tag byte', () => {
    for (let i = HEADER_LEN; i < envelope.length; i++) {
      const bad = envelope.slice();
      bad[i] = (bad[i] as number) ^ (1 << (i % 8));
      expect(
        reasonOf(() => openEnvelope(keys, bad)),
        `byte ${i}`,
      ).toBe('decrypt-failed');
    }
  });

  it('truncation and extension', () => {
    for (const n of [0, 1, 2, HEADER_LEN, envelope.length - 1]) {
      expect(['malformed', 'decrypt-failed']).toContain(reasonOf(() => openEnvelope(keys, envelope.subarray(0, n))));
    }
    const longer = new Uint8Array(envelope.length + 1);
    longer.set(envelope);
    expect(reasonOf(() => openEnvelope(keys, longer))).toBe('decrypt-failed');
  });

  it('an unknown version or suite, never a fallback', () => {
    for (const [i, v, reason] of [
      [0, 2, 'bad-version'],
      [0, 0, 'bad-version'],
      [1, 0, 'bad-suite'],
      [1, 2, 'bad-suite'],
    ] as const) {
      const bad = envelope.slice();
      bad[i] = v;
      expect(reasonOf(() => openEnvelope(keys, bad))).toBe(reason);
    }
  });

  it('a message from another room', () => {
    const other = roomKeys(new Uint8Array(32).fill(9));
    expect(reasonOf(() => openEnvelope(keys, sealEnvelope(other, alice, hello)))).toBe('wrong-room');
  });

  it('a message for this room id sealed with another key (a forging relay)', () => {
    const forged = { ...keys, messageKey: new Uint8Array(32).fill(7) };
    expect(reasonOf(() => openEnvelope(keys, sealEnvelope(forged, alice, hello)))).toBe('decrypt-failed');
  });

  /** Opens the AEAD with the room key (as a member could), edits the inner, seals again. */
  function reseal(edit: (inner: Uint8Array) => void): Uint8Array {
    const header = envelope.subarray(0, HEADER_LEN);
    const inner = xchachaOpen(keys.messageKey, header.subarray(22), header, envelope.subarray(HEADER_LEN));
    edit(inner);
    const out = new Uint8Array(envelope.length);
    out.set(header);
    out.set(xchachaSeal(keys.messageKey, header.subarray(22), header, inner), HEADER_LEN);
    return out;
  }

  it('a member who alters the text of someone else’s message (signature no longer matches)', () => {
    const bad = reseal((inner) => {
      const at = 1 + 32 + 8 + 8 + 32 + 1 + 5 + 2; // first letter of the body
      inner[at] = (inner[at] as number) ^ 0x20;
    });
    expect(reasonOf(() => openEnvelope(keys, bad))).toBe('bad-signature');
  });

  it('a member who swaps in its own key as the sender', () => {
    const mallory = newIdentity();
    const bad = reseal((inner) => inner.set(mallory.publicKey, 1));
    expect(reasonOf(() => openEnvelope(keys, bad))).toBe('bad-signature');
  });

  it('a non-canonical signature (S + L): strict RFC 8032 verification', () => {
    const L = (1n << 252n) + 27742317777372353535851937790883648493n;
    const bad = reseal((inner) => {
      const at = inner.length - 32;
      let s = 0n;
      for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(inner[at + i] as number);
      s += L;
      for (let i = 0; i < 32; i++) {
        inner[at + i] = Number(s & 0xffn);
        s >>= 8n;
      }
    });
    expect(reasonOf(() => openEnvelope(keys, bad))).toBe('bad-signature');
  });

  it('an unknown message type, even when signed', () => {
    const eve = newIdentity();
    const sealed = sealEnvelope(keys, eve, { ...hello, type: 9 as 1 });
    expect(reasonOf(() => openEnvelope(keys, sealed))).toBe('malformed');
  });
});
