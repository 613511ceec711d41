import { hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { newRoomSecret, roomIdFromSecret } from '../../../src/crypto/index.js';

describe('room id derivation', () => {
  it('is HKDF-SHA256(secret, "confab/v1", "room-id")[0..16], checked against node:crypto', () => {
    for (let i = 0; i < 20; i++) {
      const secret = newRoomSecret();
      const expected = new Uint8Array(hkdfSync('sha256', secret, 'confab/v1', 'room-id', 16));
      expect(roomIdFromSecret(secret)).toEqual(expected);
    }
  });

  it('matches our golden vector', () => {
    const secret = new Uint8Array(32).map((_, i) => i);
    // secret = 00 01 02 ... 1f (also in doc/PROTOCOL.md §1)
    expect(Buffer.from(roomIdFromSecret(secret)).toString('hex')).toBe('efeb20c181dfd0fc73b3f3a63d51ac4c');
  });

  it('rejects secrets of the wrong size', () => {
    expect(() => roomIdFromSecret(new Uint8Array(31))).toThrow(/expected 32 bytes, got 31/);
    expect(() => newRoomSecret(() => new Uint8Array(8))).toThrow(RangeError);
  });
});
