import { describe, expect, it } from 'vitest';
import {
  displayableFingerprint,
  fingerprint,
  groupDigits,
  newIdentity,
  safetyNumber,
  shortFingerprint,
  signJoinProof,
  verifySignature,
} from '../../../src/crypto/index.js';
import { joinProofMessage } from '../../../src/protocol/index.js';

const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

describe('fingerprints and safety numbers', () => {
  // libsignal rust/protocol/src/fingerprint.rs, fingerprint_test_v1: two
  // identity keys (33-byte serialised), stable ids, 5200 iterations.
  it('computes Signal’s displayable fingerprint exactly (libsignal test vector)', () => {
    const alice = displayableFingerprint(
      unhex('0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868'),
      new TextEncoder().encode('+14152222222'),
    );
    const bob = displayableFingerprint(
      unhex('05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b'),
      new TextEncoder().encode('+14153333333'),
    );
    expect([alice, bob].sort().join('')).toBe('300354477692869396892869876765458257569162576843440918079131');
  });

  it('gives 60 digits, the same for both people, different for another key', () => {
    const a = newIdentity().publicKey;
    const b = newIdentity().publicKey;
    const c = newIdentity().publicKey;
    expect(safetyNumber(a, b)).toMatch(/^\d{60}$/);
    expect(safetyNumber(a, b)).toBe(safetyNumber(b, a));
    expect(safetyNumber(a, c)).not.toBe(safetyNumber(a, b));
    expect(fingerprint(a)).toMatch(/^\d{30}$/);
    expect(shortFingerprint(a)).toBe(`${fingerprint(a).slice(0, 5)}-${fingerprint(a).slice(5, 10)}`);
    expect(groupDigits('123456789012')).toBe('12345 67890 12');
  });
});

describe('join proofs', () => {
  it('signs the protocol’s proof bytes and verifies them strictly', () => {
    const id = newIdentity();
    const msg = joinProofMessage(new Uint8Array(32).fill(1), new Uint8Array(16).fill(2), 'alice');
    const sig = signJoinProof(id, msg);
    expect(verifySignature(id.publicKey, sig, msg)).toBe(true);
    expect(verifySignature(newIdentity().publicKey, sig, msg)).toBe(false);
    const other = joinProofMessage(new Uint8Array(32).fill(1), new Uint8Array(16).fill(2), 'alicf');
    expect(verifySignature(id.publicKey, sig, other)).toBe(false);
  });

  it('refuses to sign anything that is not a join proof (no signing oracle)', () => {
    const id = newIdentity();
    expect(() => signJoinProof(id, new TextEncoder().encode('confab/msg/v1 something'))).toThrow(/join/);
    expect(() => signJoinProof(id, new Uint8Array(0))).toThrow(RangeError);
  });
});
