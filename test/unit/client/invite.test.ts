import { describe, expect, it } from 'vitest';
import {
  formatInvite,
  inviteRoomId,
  InviteError,
  newInvite,
  parseAddress,
  parseInvite,
} from '../../../src/client/index.js';

describe('invite links', () => {
  const secret = new Uint8Array(32).map((_, i) => i);

  it('formats and parses back', () => {
    const link = formatInvite({ host: 'chat.example', port: 5050, secret });
    expect(link).toBe('confab://chat.example:5050/#AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8');
    expect(parseInvite(link)).toEqual({ host: 'chat.example', port: 5050, secret });
  });

  it('brackets IPv6 hosts', () => {
    const link = formatInvite({ host: '::1', port: 7000, secret });
    expect(link.startsWith('confab://[::1]:7000/#')).toBe(true);
    expect(parseInvite(link).host).toBe('::1');
  });

  it('accepts a link without the slash and uses the default port', () => {
    const s = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8';
    expect(parseInvite(`confab://h#${s}`)).toEqual({ host: 'h', port: 5050, secret });
  });

  it.each([
    ['http://h:1/#x', /starts with confab:\/\//],
    ['confab://h:1/', /no secret/],
    ['confab://h:1/#short', /43 characters/],
    ['confab://h:1/#' + 'A'.repeat(42) + '=', /43 characters/],
    ['confab://h:99999/#' + 'A'.repeat(43), /out of range/],
    ['confab://bad host:1/#' + 'A'.repeat(43), /not HOST/],
  ])('rejects %s', (link, message) => {
    expect(() => parseInvite(link)).toThrow(InviteError);
    expect(() => parseInvite(link)).toThrow(message);
  });

  it('parses addresses', () => {
    expect(parseAddress('localhost')).toEqual({ host: 'localhost', port: 5050 });
    expect(parseAddress('10.0.0.1:6000')).toEqual({ host: '10.0.0.1', port: 6000 });
    expect(parseAddress('[fe80::1]:1')).toEqual({ host: 'fe80::1', port: 1 });
    expect(() => parseAddress('h:0')).toThrow(InviteError);
    expect(() => parseAddress('')).toThrow(InviteError);
  });

  it('never echoes a secret in what it says of a mistyped invite', () => {
    const secret = 'A'.repeat(43);
    const typos = [
      `CONFAB://h:1/#${secret}`,
      ` confab://h:1/#${secret}`,
      `h:1/#${secret}`,
      `confab%3A%2F%2Fh%3A1%2F%23${secret}`,
      `CONFAB://h:1/%23${secret}`,
      `confab:h:1/${secret}`,
      `${secret}_`,
    ];
    for (const typo of typos) {
      let message = '';
      try {
        parseAddress(typo);
      } catch (err) {
        message = (err as Error).message;
      }
      // Before: '"CONFAB://h:1/#AAAA…" is not HOST or HOST:PORT', secret and all.
      expect(message).toMatch(/ is neither HOST\[:PORT\] nor an invite link/);
      expect(message).not.toContain(secret.slice(0, 8));
    }
    // A secret alone, without a _ (half of them), matched a host name: looked up, and printed with ENOTFOUND.
    expect(() => parseAddress('lY3xFe-CRb40qwE4unKlGfk5QkSSm2bZ8lo4-yiKM9Y')).toThrow(
      /that is a room secret, not a host/,
    );
  });

  it('makes a fresh secret per room from the injected rng, and a 16-byte room id', () => {
    let n = 0;
    const rng = (len: number): Uint8Array => new Uint8Array(len).fill(++n);
    const a = newInvite('h', 1, rng);
    const b = newInvite('h', 1, rng);
    expect(a.secret).toEqual(new Uint8Array(32).fill(1));
    expect(b.secret).toEqual(new Uint8Array(32).fill(2));
    expect(inviteRoomId(a)).toHaveLength(16);
    expect(inviteRoomId(a)).not.toEqual(inviteRoomId(b));
  });
});
