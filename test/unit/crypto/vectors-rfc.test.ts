/**
 * Known-answer tests for src/crypto/primitives.ts, from the published documents:
 *
 *   RFC 8439 §2.8.2 and Appendix A.5          ChaCha20-Poly1305 AEAD
 *   draft-irtf-cfrg-xchacha-03 Appendix A.3.1 XChaCha20-Poly1305 AEAD
 *   RFC 8032 §7.1 (TEST 1, 2, 3, SHA(abc))    Ed25519
 *   RFC 5869 Appendix A.1, A.2, A.3           HKDF-SHA256
 *   FIPS 180-4 examples ("abc")               SHA-256, SHA-512
 *
 * Every hex constant is typed in from the document (section named beside it),
 * and each vector is also run through node:crypto (OpenSSL), so a typo in a
 * constant fails against two implementations, not one. node:crypto has no
 * XChaCha, so the cross-check builds it from OpenSSL's raw ChaCha20 (HChaCha20
 * subkey, then ChaCha20-Poly1305), itself checked against the draft's §2.2.1 vector.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  hkdfSync,
  randomBytes,
  sign as nodeSign,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  chachaOpen,
  chachaSeal,
  ed25519PublicKey,
  ed25519Sign,
  ed25519Verify,
  hkdfSha256,
  sha256,
  sha512,
  xchachaOpen,
  xchachaSeal,
} from '../../../src/crypto/primitives.js';

// ---------------------------------------------------------------------------
// helpers

/** Strict hex decoder: whitespace is ignored, anything else that is not hex throws (Buffer.from would truncate). */
function fromHex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || !/^[0-9a-f]*$/i.test(clean)) throw new Error(`bad hex constant: ${text}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function flipBit(bytes: Uint8Array, index: number, bit: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[index] = (copy[index] ?? 0) ^ (1 << bit);
  return copy;
}

function leToBigInt(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i] ?? 0);
  return n;
}

function bigIntToLe(value: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let n = value;
  for (let i = 0; i < length; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  if (n !== 0n) throw new Error(`${value} does not fit in ${length} bytes`);
  return out;
}

const ascii = (text: string): Uint8Array => new TextEncoder().encode(text);

// --- node:crypto (OpenSSL) oracles ---

function nodeChachaSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  cipher.setAAD(aad, { plaintextLength: plaintext.length });
  return concat(cipher.update(plaintext), cipher.final(), cipher.getAuthTag());
}

function nodeChachaOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array {
  const body = sealed.subarray(0, sealed.length - 16);
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  decipher.setAAD(aad, { plaintextLength: body.length });
  decipher.setAuthTag(sealed.subarray(sealed.length - 16));
  return concat(decipher.update(body), decipher.final());
}

/**
 * HChaCha20 from OpenSSL's raw ChaCha20 (16-byte IV = state words 12..15). One keystream
 * block is rounds(state) + state; HChaCha20 is words 0..3 and 12..15 of rounds(state),
 * so subtract the constants and the input words back out.
 */
function nodeHChaCha20(key: Uint8Array, input16: Uint8Array): Uint8Array {
  const block = createCipheriv('chacha20', key, input16).update(new Uint8Array(64));
  const sigma = Buffer.from('expand 32-byte k', 'ascii');
  const input = Buffer.from(input16);
  const out = Buffer.alloc(32);
  for (let i = 0; i < 4; i++) {
    out.writeUInt32LE((block.readUInt32LE(4 * i) - sigma.readUInt32LE(4 * i)) >>> 0, 4 * i);
    out.writeUInt32LE((block.readUInt32LE(48 + 4 * i) - input.readUInt32LE(4 * i)) >>> 0, 16 + 4 * i);
  }
  return new Uint8Array(out);
}

/** draft-irtf-cfrg-xchacha-03 §2.3: subkey = HChaCha20(key, nonce[0..16]); ChaCha20-Poly1305 with 0^4 ‖ nonce[16..24]. */
function nodeXChachaSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array {
  const subkey = nodeHChaCha20(key, nonce.subarray(0, 16));
  return nodeChachaSeal(subkey, concat(new Uint8Array(4), nonce.subarray(16, 24)), aad, plaintext);
}

const PKCS8_ED25519_PREFIX = fromHex('302e020100300506032b657004220420');

function nodeEdPrivate(secret: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.from(concat(PKCS8_ED25519_PREFIX, secret)), format: 'der', type: 'pkcs8' });
}

function nodeEdPublic(publicKey: Uint8Array): KeyObject {
  return createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') },
    format: 'jwk',
  });
}

function nodeEdPublicOf(secret: Uint8Array): Uint8Array {
  const jwk = createPublicKey(nodeEdPrivate(secret)).export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new Error('no x in exported Ed25519 JWK');
  return new Uint8Array(Buffer.from(jwk.x, 'base64url'));
}

// ---------------------------------------------------------------------------
// ChaCha20-Poly1305, RFC 8439

// RFC 8439 §2.8.2: "Example and Test Vector for AEAD_CHACHA20_POLY1305".
const SUNSCREEN_TEXT =
  "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
const RFC8439_282 = {
  plaintext:
    '4c616469657320616e642047656e746c656d656e206f662074686520636c6173' +
    '73206f66202739393a204966204920636f756c64206f6666657220796f75206f' +
    '6e6c79206f6e652074697020666f7220746865206675747572652c2073756e73' +
    '637265656e20776f756c642062652069742e',
  aad: '50515253c0c1c2c3c4c5c6c7',
  key: '808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f',
  // 32-bit fixed-common part 07000000 ‖ IV 4041424344454647
  nonce: '070000004041424344454647',
  ciphertext:
    'd31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6' +
    '3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36' +
    '92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc' +
    '3ff4def08e4b7a9de576d26586cec64b6116',
  tag: '1ae10b594f09e26a7e902ecbd0600691',
};

// RFC 8439 Appendix A.5: "ChaCha20-Poly1305 AEAD Decryption".
const RFC8439_A5 = {
  key: '1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0',
  nonce: '000000000102030405060708',
  aad: 'f33388860000000000004e91',
  ciphertext:
    '64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2' +
    '4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf' +
    '332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855' +
    '9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4' +
    'b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e' +
    'af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a' +
    '0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10' +
    '49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29' +
    'a6ad5cb4022b02709b',
  tag: 'eead9d67890cbb22392336fea1851f38',
  plaintext:
    '496e7465726e65742d4472616674732061726520647261667420646f63756d65' +
    '6e74732076616c696420666f722061206d6178696d756d206f6620736978206d' +
    '6f6e74687320616e64206d617920626520757064617465642c207265706c6163' +
    '65642c206f72206f62736f6c65746564206279206f7468657220646f63756d65' +
    '6e747320617420616e792074696d652e20497420697320696e617070726f7072' +
    '6961746520746f2075736520496e7465726e65742d4472616674732061732072' +
    '65666572656e6365206d6174657269616c206f7220746f206369746520746865' +
    '6d206f74686572207468616e206173202fe2809c776f726b20696e2070726f67' +
    '726573732e2fe2809d',
};
const RFC8439_A5_TEXT =
  'Internet-Drafts are draft documents valid for a maximum of six months and may be updated, replaced, or ' +
  'obsoleted by other documents at any time. It is inappropriate to use Internet-Drafts as reference material ' +
  'or to cite them other than as /\u201cwork in progress./\u201d';

describe('ChaCha20-Poly1305 (RFC 8439)', () => {
  it('§2.8.2: the plaintext hex is the sunscreen sentence', () => {
    expect(toHex(ascii(SUNSCREEN_TEXT))).toBe(RFC8439_282.plaintext);
  });

  it('§2.8.2: seal gives exactly the published ciphertext and tag; open gives the plaintext back', () => {
    const v = RFC8439_282;
    const key = fromHex(v.key);
    const nonce = fromHex(v.nonce);
    const aad = fromHex(v.aad);
    const sealed = chachaSeal(key, nonce, aad, fromHex(v.plaintext));
    expect(toHex(sealed.subarray(0, sealed.length - 16))).toBe(v.ciphertext);
    expect(toHex(sealed.subarray(sealed.length - 16))).toBe(v.tag);
    expect(toHex(chachaOpen(key, nonce, aad, fromHex(v.ciphertext + v.tag)))).toBe(v.plaintext);
  });

  it('§2.8.2: node:crypto agrees with the constants', () => {
    const v = RFC8439_282;
    const sealed = nodeChachaSeal(fromHex(v.key), fromHex(v.nonce), fromHex(v.aad), fromHex(v.plaintext));
    expect(toHex(sealed)).toBe(v.ciphertext + v.tag);
  });

  it('Appendix A.5: open gives the published plaintext; seal gives the ciphertext and tag back', () => {
    const v = RFC8439_A5;
    const key = fromHex(v.key);
    const nonce = fromHex(v.nonce);
    const aad = fromHex(v.aad);
    const opened = chachaOpen(key, nonce, aad, fromHex(v.ciphertext + v.tag));
    expect(toHex(opened)).toBe(v.plaintext);
    expect(new TextDecoder().decode(opened)).toBe(RFC8439_A5_TEXT);
    expect(toHex(chachaSeal(key, nonce, aad, fromHex(v.plaintext)))).toBe(v.ciphertext + v.tag);
  });

  it('Appendix A.5: node:crypto agrees with the constants', () => {
    const v = RFC8439_A5;
    const opened = nodeChachaOpen(fromHex(v.key), fromHex(v.nonce), fromHex(v.aad), fromHex(v.ciphertext + v.tag));
    expect(toHex(opened)).toBe(v.plaintext);
  });

  it('open throws on a flipped bit in the ciphertext, the tag, the AAD or the nonce', () => {
    for (const v of [RFC8439_282, RFC8439_A5]) {
      const key = fromHex(v.key);
      const nonce = fromHex(v.nonce);
      const aad = fromHex(v.aad);
      const sealed = fromHex(v.ciphertext + v.tag);
      expect(() => chachaOpen(key, nonce, aad, flipBit(sealed, 0, 0))).toThrow();
      expect(() => chachaOpen(key, nonce, aad, flipBit(sealed, sealed.length - 1, 7))).toThrow();
      expect(() => chachaOpen(key, nonce, flipBit(aad, 0, 0), sealed)).toThrow();
      expect(() => chachaOpen(key, flipBit(nonce, 11, 0), aad, sealed)).toThrow();
    }
  });

  it('matches node:crypto on random inputs', () => {
    for (let length = 0; length < 140; length += 7) {
      const key = randomBytes(32);
      const nonce = randomBytes(12);
      const aad = randomBytes(length % 33);
      const plaintext = randomBytes(length);
      const sealed = chachaSeal(key, nonce, aad, plaintext);
      expect(toHex(sealed)).toBe(toHex(nodeChachaSeal(key, nonce, aad, plaintext)));
      expect(toHex(chachaOpen(key, nonce, aad, sealed))).toBe(toHex(plaintext));
    }
  });
});

// ---------------------------------------------------------------------------
// XChaCha20-Poly1305, draft-irtf-cfrg-xchacha-03

// draft-irtf-cfrg-xchacha-03 §2.2.1: "Test Vector for the HChaCha20 Block Function"
// (checks only the node:crypto oracle below; HChaCha20 is not exported by primitives.ts).
const HCHACHA20_221 = {
  key: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f',
  nonce: '000000090000004a0000000031415927',
  subkey: '82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc',
};

// draft-irtf-cfrg-xchacha-03 Appendix A.3.1: "AEAD_XCHACHA20_POLY1305" example and test vector.
const XCHACHA_A31 = {
  plaintext: RFC8439_282.plaintext,
  aad: '50515253c0c1c2c3c4c5c6c7',
  key: '808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f',
  iv: '404142434445464748494a4b4c4d4e4f5051525354555657',
  ciphertext:
    'bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb' +
    '731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452' +
    '2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9' +
    '21f9664c97637da9768812f615c68b13b52e',
  tag: 'c0875924c1c7987947deafd8780acf49',
};

describe('XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03)', () => {
  it('Appendix A.3.1: seal gives exactly the published ciphertext and tag; open gives the plaintext back', () => {
    const v = XCHACHA_A31;
    const key = fromHex(v.key);
    const iv = fromHex(v.iv);
    const aad = fromHex(v.aad);
    const sealed = xchachaSeal(key, iv, aad, fromHex(v.plaintext));
    expect(toHex(sealed.subarray(0, sealed.length - 16))).toBe(v.ciphertext);
    expect(toHex(sealed.subarray(sealed.length - 16))).toBe(v.tag);
    expect(toHex(xchachaOpen(key, iv, aad, fromHex(v.ciphertext + v.tag)))).toBe(v.plaintext);
  });

  it('§2.2.1: the node:crypto HChaCha20 oracle gives the published subkey', () => {
    const v = HCHACHA20_221;
    expect(toHex(nodeHChaCha20(fromHex(v.key), fromHex(v.nonce)))).toBe(v.subkey);
  });

  it('Appendix A.3.1: node:crypto (HChaCha20 + ChaCha20-Poly1305) agrees with the constants', () => {
    const v = XCHACHA_A31;
    const sealed = nodeXChachaSeal(fromHex(v.key), fromHex(v.iv), fromHex(v.aad), fromHex(v.plaintext));
    expect(toHex(sealed)).toBe(v.ciphertext + v.tag);
  });

  it('open throws on a flipped bit in the ciphertext, the tag, the AAD or the nonce', () => {
    const v = XCHACHA_A31;
    const key = fromHex(v.key);
    const iv = fromHex(v.iv);
    const aad = fromHex(v.aad);
    const sealed = fromHex(v.ciphertext + v.tag);
    expect(() => xchachaOpen(key, iv, aad, flipBit(sealed, 0, 0))).toThrow();
    expect(() => xchachaOpen(key, iv, aad, flipBit(sealed, sealed.length - 1, 7))).toThrow();
    expect(() => xchachaOpen(key, iv, flipBit(aad, 0, 0), sealed)).toThrow();
    // both halves of the nonce matter: the first 16 bytes feed HChaCha20, the last 8 ChaCha20
    expect(() => xchachaOpen(key, flipBit(iv, 0, 0), aad, sealed)).toThrow();
    expect(() => xchachaOpen(key, flipBit(iv, 23, 7), aad, sealed)).toThrow();
  });

  it('matches the node:crypto construction on random inputs', () => {
    for (let length = 0; length < 140; length += 7) {
      const key = randomBytes(32);
      const iv = randomBytes(24);
      const aad = randomBytes(length % 33);
      const plaintext = randomBytes(length);
      const sealed = xchachaSeal(key, iv, aad, plaintext);
      expect(toHex(sealed)).toBe(toHex(nodeXChachaSeal(key, iv, aad, plaintext)));
      expect(toHex(xchachaOpen(key, iv, aad, sealed))).toBe(toHex(plaintext));
    }
  });
});

// ---------------------------------------------------------------------------
// Ed25519, RFC 8032

interface EdVector {
  name: string;
  secretKey: string;
  publicKey: string;
  message: string;
  signature: string;
}

// RFC 8032 §7.1 "Test Vectors for Ed25519".
const RFC8032_71: EdVector[] = [
  {
    // RFC 8032 §7.1 -----TEST 1 (empty message)
    name: 'TEST 1',
    secretKey: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    publicKey: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    message: '',
    signature:
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155' +
      '5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    // RFC 8032 §7.1 -----TEST 2 (one byte)
    name: 'TEST 2',
    secretKey: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    publicKey: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    message: '72',
    signature:
      '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da' +
      '085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    // RFC 8032 §7.1 -----TEST 3 (two bytes)
    name: 'TEST 3',
    secretKey: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
    publicKey: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    message: 'af82',
    signature:
      '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac' +
      '18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
  },
  {
    // RFC 8032 §7.1 -----TEST SHA(abc) (the message is SHA-512("abc"))
    name: 'TEST SHA(abc)',
    secretKey: '833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42',
    publicKey: 'ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf',
    message:
      'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a' +
      '2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
    signature:
      'dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589' +
      '09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704',
  },
];

/** Ed25519 group order L = 2^252 + 27742317777372353535851937790883648493 (RFC 8032 §5.1). */
const ED25519_L = 2n ** 252n + 27742317777372353535851937790883648493n;

describe('Ed25519 (RFC 8032 §7.1)', () => {
  for (const v of RFC8032_71) {
    describe(v.name, () => {
      const secretKey = fromHex(v.secretKey);
      const publicKey = fromHex(v.publicKey);
      const message = fromHex(v.message);
      const signature = fromHex(v.signature);

      it('derives the published public key from the secret', () => {
        expect(toHex(ed25519PublicKey(secretKey))).toBe(v.publicKey);
      });

      it('signs to exactly the published signature, and it verifies', () => {
        expect(toHex(ed25519Sign(message, secretKey))).toBe(v.signature);
        expect(ed25519Verify(signature, message, publicKey)).toBe(true);
      });

      it('does not verify after a bit of the message, the signature or the key is flipped', () => {
        const alteredMessages =
          message.length === 0
            ? [new Uint8Array([0]), new Uint8Array([0x80])]
            : [flipBit(message, 0, 0), flipBit(message, message.length - 1, 7)];
        for (const m of alteredMessages) expect(ed25519Verify(signature, m, publicKey)).toBe(false);
        for (const [index, bit] of [
          [0, 0], // R, low bit
          [31, 7], // R, sign bit of x
          [32, 0], // S, low bit
          [63, 3], // S, high byte
        ] as const) {
          expect(ed25519Verify(flipBit(signature, index, bit), message, publicKey)).toBe(false);
        }
        for (const [index, bit] of [
          [0, 0],
          [15, 4],
          [31, 7], // sign bit of x
        ] as const) {
          expect(ed25519Verify(signature, message, flipBit(publicKey, index, bit))).toBe(false);
        }
      });

      it('node:crypto agrees with the constants', () => {
        expect(toHex(nodeEdPublicOf(secretKey))).toBe(v.publicKey);
        expect(toHex(nodeSign(null, message, nodeEdPrivate(secretKey)))).toBe(v.signature);
        expect(nodeVerify(null, message, nodeEdPublic(publicKey), signature)).toBe(true);
      });
    });
  }

  it('TEST SHA(abc): the message is SHA-512("abc")', () => {
    expect(toHex(sha512(ascii('abc')))).toBe(RFC8032_71[3]?.message);
  });

  it('matches node:crypto on random keys and messages', () => {
    for (let length = 0; length < 200; length += 23) {
      const secretKey = randomBytes(32);
      const message = randomBytes(length);
      const publicKey = ed25519PublicKey(secretKey);
      expect(toHex(publicKey)).toBe(toHex(nodeEdPublicOf(secretKey)));
      const signature = ed25519Sign(message, secretKey);
      expect(toHex(signature)).toBe(toHex(nodeSign(null, message, nodeEdPrivate(secretKey))));
      expect(ed25519Verify(signature, message, publicKey)).toBe(true);
    }
  });
});

describe('Ed25519 strict verification (zip215: false)', () => {
  it('rejects S >= L: a valid signature with the group order added to S', () => {
    for (const v of RFC8032_71) {
      const signature = fromHex(v.signature);
      const message = fromHex(v.message);
      const publicKey = fromHex(v.publicKey);
      const s = leToBigInt(signature.subarray(32));
      expect(s < ED25519_L).toBe(true);
      // S + L < 2^254 still fits in 32 bytes, and is the same scalar mod L
      const malleated = concat(signature.subarray(0, 32), bigIntToLe(s + ED25519_L, 32));
      expect(ed25519Verify(signature, message, publicKey)).toBe(true);
      expect(ed25519Verify(malleated, message, publicKey)).toBe(false);
      // OpenSSL rejects it as well
      expect(nodeVerify(null, message, nodeEdPublic(publicKey), malleated)).toBe(false);
    }
  });

  /**
   * A signature whose R is the identity point (x = 0, y = 1) can be made by anyone who holds
   * the secret scalar a: with R = identity, the check [S]B = R + [k]A holds for S = k·a mod L,
   * k = SHA-512(R_enc ‖ A ‖ M) mod L over the exact R bytes. The identity has two non-canonical
   * encodings besides 01 00…00: y + p = 2^255 − 18 (y ≥ p), and 01 00…00 80 (x = 0 with the
   * sign bit set, "−0"). RFC 8032 §5.1.3 decoding rejects both; ZIP-215 decoding accepts both,
   * which is the difference `zip215: false` is there for. The canonical encoding is the control:
   * it must verify, so a false for the others is the encoding and not the construction.
   */
  describe('rejects a non-canonical encoding of R', () => {
    const v = RFC8032_71[0];
    if (v === undefined) throw new Error('RFC 8032 TEST 1 missing');
    const secretKey = fromHex(v.secretKey);
    const publicKey = fromHex(v.publicKey);
    const message = ascii('confab: non-canonical R');

    // RFC 8032 §5.1.5: the secret scalar is the clamped first half of SHA-512(secret).
    const h = sha512(secretKey).slice(0, 32);
    h[0] = (h[0] ?? 0) & 248;
    h[31] = ((h[31] ?? 0) & 127) | 64;
    const a = leToBigInt(h) % ED25519_L;

    const signWithR = (rEncoding: Uint8Array): Uint8Array => {
      const k = leToBigInt(sha512(concat(rEncoding, publicKey, message))) % ED25519_L;
      return concat(rEncoding, bigIntToLe((k * a) % ED25519_L, 32));
    };

    const identityCanonical = fromHex('0100000000000000000000000000000000000000000000000000000000000000');
    // y = p + 1 = 2^255 - 18, little-endian; decodes (mod p) to y = 1 under ZIP-215
    const identityYPlusP = fromHex('eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f');
    // y = 1 with the x sign bit set: x = 0 cannot be "negative"
    const identityNegativeZero = fromHex('0100000000000000000000000000000000000000000000000000000000000080');

    it('control: the canonical identity R with the same construction verifies (RFC 8032 and OpenSSL)', () => {
      const signature = signWithR(identityCanonical);
      expect(ed25519Verify(signature, message, publicKey)).toBe(true);
      expect(nodeVerify(null, message, nodeEdPublic(publicKey), signature)).toBe(true);
    });

    it('y >= p: R = 2^255 - 18 is refused', () => {
      const signature = signWithR(identityYPlusP);
      expect(ed25519Verify(signature, message, publicKey)).toBe(false);
      expect(nodeVerify(null, message, nodeEdPublic(publicKey), signature)).toBe(false);
    });

    it('x = 0 with the sign bit set is refused', () => {
      const signature = signWithR(identityNegativeZero);
      expect(ed25519Verify(signature, message, publicKey)).toBe(false);
      expect(nodeVerify(null, message, nodeEdPublic(publicKey), signature)).toBe(false);
    });
  });

  it('returns false, never throws, for malformed input', () => {
    const v = RFC8032_71[1];
    if (v === undefined) throw new Error('RFC 8032 TEST 2 missing');
    const signature = fromHex(v.signature);
    const message = fromHex(v.message);
    const publicKey = fromHex(v.publicKey);
    expect(ed25519Verify(signature.subarray(0, 63), message, publicKey)).toBe(false);
    expect(ed25519Verify(concat(signature, new Uint8Array(1)), message, publicKey)).toBe(false);
    expect(ed25519Verify(signature, message, publicKey.subarray(0, 31))).toBe(false);
    expect(ed25519Verify(new Uint8Array(64), message, publicKey)).toBe(false);
    // y = 2 is not on the curve
    expect(ed25519Verify(signature, message, fromHex('02' + '00'.repeat(31)))).toBe(false);
  });
});

// ---------------------------------------------------------------------------
// HKDF-SHA256, RFC 5869 (the PRK is internal to hkdfSha256, so only OKM is checked)

interface HkdfVector {
  name: string;
  ikm: string;
  salt: string;
  info: string;
  length: number;
  okm: string;
}

const RFC5869: HkdfVector[] = [
  {
    // RFC 5869 Appendix A.1: "Test Case 1", basic test case with SHA-256
    name: 'A.1',
    ikm: '0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b',
    salt: '000102030405060708090a0b0c',
    info: 'f0f1f2f3f4f5f6f7f8f9',
    length: 42,
    okm: '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf' + '34007208d5b887185865',
  },
  {
    // RFC 5869 Appendix A.2: "Test Case 2", SHA-256 with longer inputs/outputs
    name: 'A.2',
    ikm:
      '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f' +
      '202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f' +
      '404142434445464748494a4b4c4d4e4f',
    salt:
      '606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f' +
      '808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f' +
      'a0a1a2a3a4a5a6a7a8a9aaabacadaeaf',
    info:
      'b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf' +
      'd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef' +
      'f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff',
    length: 82,
    okm:
      'b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c' +
      '59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71' +
      'cc30c58179ec3e87c14c01d5c1f3434f1d87',
  },
  {
    // RFC 5869 Appendix A.3: "Test Case 3", SHA-256 with zero-length salt/info
    name: 'A.3',
    ikm: '0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b',
    salt: '',
    info: '',
    length: 42,
    okm: '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d' + '9d201395faa4b61a96c8',
  },
];

describe('HKDF-SHA256 (RFC 5869 Appendix A)', () => {
  for (const v of RFC5869) {
    it(`${v.name}: OKM is exactly the published bytes`, () => {
      const okm = hkdfSha256(fromHex(v.ikm), fromHex(v.salt), fromHex(v.info), v.length);
      expect(okm.length).toBe(v.length);
      expect(toHex(okm)).toBe(v.okm);
    });

    it(`${v.name}: node:crypto agrees with the constants`, () => {
      const okm = new Uint8Array(hkdfSync('sha256', fromHex(v.ikm), fromHex(v.salt), fromHex(v.info), v.length));
      expect(toHex(okm)).toBe(v.okm);
    });
  }

  it('matches node:crypto on random inputs, up to the 255-block limit', () => {
    for (const length of [1, 31, 32, 33, 64, 100, 8160]) {
      const ikm = randomBytes(1 + (length % 50));
      const salt = randomBytes(length % 70);
      const info = randomBytes(length % 40);
      const expected = new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
      expect(toHex(hkdfSha256(ikm, salt, info, length))).toBe(toHex(expected));
    }
  });

  it('throws when asked for more than 255 · 32 bytes', () => {
    expect(() => hkdfSha256(new Uint8Array(22), new Uint8Array(0), new Uint8Array(0), 255 * 32 + 1)).toThrow();
  });
});

// ---------------------------------------------------------------------------
// SHA-256 / SHA-512 (re-exported from @noble/hashes)

// FIPS 180-4 examples (NIST CSRC "Examples with Intermediate Values"), one-block message "abc".
const SHA256_ABC = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
const SHA512_ABC =
  'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a' +
  '2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f';

describe('SHA-256 and SHA-512', () => {
  it('FIPS 180-4 "abc" examples', () => {
    expect(toHex(sha256(ascii('abc')))).toBe(SHA256_ABC);
    expect(toHex(sha512(ascii('abc')))).toBe(SHA512_ABC);
    expect(createHash('sha256').update('abc').digest('hex')).toBe(SHA256_ABC);
    expect(createHash('sha512').update('abc').digest('hex')).toBe(SHA512_ABC);
  });

  it('matches node:crypto across block boundaries', () => {
    for (const length of [0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1000]) {
      const data = randomBytes(length);
      expect(toHex(sha256(data))).toBe(createHash('sha256').update(data).digest('hex'));
      expect(toHex(sha512(data))).toBe(createHash('sha512').update(data).digest('hex'));
    }
  });
});
