import { describe, expect, it, vi } from 'vitest';
import * as crypto from '../../src/crypto/index.js';
import { until } from '../helpers/net.js';
import { testScope } from '../helpers/scope.js';
import { secureMember } from '../helpers/secure.js';

// Each fingerprint is 5,200 SHA-512s: computed per message, they made the
// client spend tens of milliseconds on every message it received.
vi.mock('../../src/crypto/index.js', async (original) => {
  const real = await original<typeof crypto>();
  return { ...real, shortFingerprint: vi.fn(real.shortFingerprint) };
});

const { cleanup, server } = testScope();

describe('fingerprints', () => {
  it('a room computes each key’s fingerprint once, not once per message', async () => {
    const s = await server();
    const secret = crypto.newRoomSecret();
    const alice = await secureMember(s.port, secret, 'alice');
    cleanup.push(() => alice.close());
    const bob = await secureMember(s.port, secret, 'bob');
    cleanup.push(() => bob.close());
    const computed = vi.mocked(crypto.shortFingerprint);
    computed.mockClear();
    for (let i = 0; i < 10; i++) await Promise.all([alice.room.send(`a${i}`), bob.room.send(`b${i}`)]);
    await until(() => alice.messages.length === 10 && bob.messages.length === 10);
    expect(alice.messages.every((m) => m.fingerprint === crypto.shortFingerprint(bob.identity.publicKey))).toBe(true);
    computed.mockClear();
    await alice.room.send('one more');
    await until(() => bob.messages.length === 11);
    // The 20 messages before needed at most one per key and room; this one none.
    expect(computed).not.toHaveBeenCalled();
  });
});
