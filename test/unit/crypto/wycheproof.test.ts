/**
 * Every test of three Wycheproof files, run through src/crypto/primitives.ts:
 *
 *   xchacha20_poly1305_test.json  xchachaSeal / xchachaOpen
 *   chacha20_poly1305_test.json   chachaSeal / chachaOpen
 *   hkdf_sha256_test.json         hkdfSha256
 *
 * The files live outside the checkout, in ../shared/vectors/wycheproof/ (see the README
 * there; they are not copied into the project). Where that folder is absent the suite is
 * skipped with a printed reason. Where it is present, each file must hold exactly its
 * declared numberOfTests, so a missing or truncated file fails rather than passing quietly.
 *
 * result "valid": seal gives ct ‖ tag exactly and open gives msg back (HKDF: okm exactly).
 * result "invalid": open throws; for a nonce of the wrong size seal throws too (HKDF: throws).
 * result "acceptable": either outcome, but the same one twice.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { chachaOpen, chachaSeal, hkdfSha256, xchachaOpen, xchachaSeal } from '../../../src/crypto/primitives.js';

const VECTOR_DIR = fileURLToPath(new URL('../../../../shared/vectors/wycheproof/', import.meta.url));
const HAVE_VECTORS = existsSync(VECTOR_DIR);

// ---------------------------------------------------------------------------
// the JSON, narrowed from unknown

type WycheproofResult = 'valid' | 'invalid' | 'acceptable';

interface WycheproofCase {
  tcId: number;
  comment: string;
  flags: string[];
  result: WycheproofResult;
}

interface AeadCase extends WycheproofCase {
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
}

interface HkdfCase extends WycheproofCase {
  ikm: string;
  salt: string;
  info: string;
  size: number;
  okm: string;
}

interface WycheproofFile<T> {
  algorithm: string;
  numberOfTests: number;
  /** one entry per test group, in file order */
  groups: T[][];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function field<T>(record: Record<string, unknown>, name: string, check: (v: unknown) => v is T, where: string): T {
  const value = record[name];
  if (!check(value)) throw new Error(`${where}: field "${name}" is missing or has the wrong type`);
  return value;
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const isHex = (v: unknown): v is string => typeof v === 'string' && /^(?:[0-9a-f]{2})*$/i.test(v);
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);
const isResult = (v: unknown): v is WycheproofResult => v === 'valid' || v === 'invalid' || v === 'acceptable';
const isArray = (v: unknown): v is unknown[] => Array.isArray(v);

function baseCase(raw: Record<string, unknown>, where: string): WycheproofCase {
  return {
    tcId: field(raw, 'tcId', isNumber, where),
    comment: field(raw, 'comment', isString, where),
    flags: field(raw, 'flags', isStringArray, where),
    result: field(raw, 'result', isResult, where),
  };
}

function toAeadCase(raw: unknown, where: string): AeadCase {
  if (!isRecord(raw)) throw new Error(`${where}: test is not an object`);
  return {
    ...baseCase(raw, where),
    key: field(raw, 'key', isHex, where),
    iv: field(raw, 'iv', isHex, where),
    aad: field(raw, 'aad', isHex, where),
    msg: field(raw, 'msg', isHex, where),
    ct: field(raw, 'ct', isHex, where),
    tag: field(raw, 'tag', isHex, where),
  };
}

function toHkdfCase(raw: unknown, where: string): HkdfCase {
  if (!isRecord(raw)) throw new Error(`${where}: test is not an object`);
  return {
    ...baseCase(raw, where),
    ikm: field(raw, 'ikm', isHex, where),
    salt: field(raw, 'salt', isHex, where),
    info: field(raw, 'info', isHex, where),
    size: field(raw, 'size', isNumber, where),
    okm: field(raw, 'okm', isHex, where),
  };
}

function loadWycheproof<T>(file: string, toCase: (raw: unknown, where: string) => T): WycheproofFile<T> {
  const path = join(VECTOR_DIR, file);
  const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (!isRecord(parsed)) throw new Error(`${file}: not a JSON object`);
  const testGroups = field(parsed, 'testGroups', isArray, file);
  return {
    algorithm: field(parsed, 'algorithm', isString, file),
    numberOfTests: field(parsed, 'numberOfTests', isNumber, file),
    groups: testGroups.map((group, g) => {
      const where = `${file} group ${g}`;
      if (!isRecord(group)) throw new Error(`${where}: not an object`);
      return field(group, 'tests', isArray, where).map((raw, t) => toCase(raw, `${where} test ${t}`));
    }),
  };
}

// ---------------------------------------------------------------------------
// running

function fromHex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'hex'));
}

function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Hex for a failure message, cut short (an HKDF okm can be 8160 bytes). */
function short(hex: string): string {
  return hex.length > 80 ? `${hex.slice(0, 80)}… (${hex.length / 2} bytes)` : hex;
}

/** What a call did, as a comparable string: the output in hex, or "throw". */
function outcome(run: () => Uint8Array): string {
  try {
    return toHex(run());
  } catch {
    return 'throw';
  }
}

function describeCase(c: WycheproofCase): string {
  return `tcId ${c.tcId} (${c.result}${c.comment ? `, ${c.comment}` : ''}${c.flags.length ? `, ${c.flags.join(' ')}` : ''})`;
}

interface Aead {
  nonceLength: number;
  seal: (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array) => Uint8Array;
  open: (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array) => Uint8Array;
}

/** null when the case behaved as its result says; otherwise what went wrong. */
function checkAeadCase(aead: Aead, c: AeadCase): string | null {
  const key = fromHex(c.key);
  const iv = fromHex(c.iv);
  const aad = fromHex(c.aad);
  const sealedHex = c.ct + c.tag;
  const seal = (): string => outcome(() => aead.seal(key, iv, aad, fromHex(c.msg)));
  const open = (): string => outcome(() => aead.open(key, iv, aad, fromHex(sealedHex)));

  switch (c.result) {
    case 'valid': {
      const sealed = seal();
      if (sealed !== sealedHex) return `seal gave ${short(sealed)}, expected ${short(sealedHex)}`;
      const opened = open();
      if (opened !== c.msg) return `open gave ${short(opened)}, expected ${short(c.msg)}`;
      return null;
    }
    case 'invalid': {
      const opened = open();
      if (opened !== 'throw') return `open accepted an invalid ciphertext and gave ${short(opened)}`;
      const sealed = seal();
      if (iv.length !== aead.nonceLength) {
        if (sealed !== 'throw') return `seal accepted a ${iv.length}-byte nonce`;
      } else if (sealed === sealedHex) {
        return 'seal produced the ciphertext that is supposed to be invalid';
      }
      return null;
    }
    case 'acceptable': {
      const first = `${seal()} / ${open()}`;
      const second = `${seal()} / ${open()}`;
      return first === second ? null : `not deterministic: ${short(first)} then ${short(second)}`;
    }
  }
}

function checkHkdfCase(c: HkdfCase): string | null {
  const derive = (): string => outcome(() => hkdfSha256(fromHex(c.ikm), fromHex(c.salt), fromHex(c.info), c.size));
  switch (c.result) {
    case 'valid': {
      const okm = derive();
      return okm === c.okm ? null : `okm ${short(okm)}, expected ${short(c.okm)}`;
    }
    case 'invalid': {
      const okm = derive();
      return okm === 'throw' ? null : `accepted an invalid request and gave ${short(okm)}`;
    }
    case 'acceptable': {
      const first = derive();
      const second = derive();
      return first === second ? null : 'not deterministic';
    }
  }
}

/**
 * Runs every case of the file, then asserts: no failures, and exactly numberOfTests cases
 * run. Returns nothing; prints one summary line for CI logs.
 */
function runFile<T extends WycheproofCase>(
  file: string,
  algorithm: string,
  toCase: (raw: unknown, where: string) => T,
  check: (c: T) => string | null,
): void {
  const data = loadWycheproof(file, toCase);
  expect(data.algorithm).toBe(algorithm);
  const failures: string[] = [];
  const seen = new Set<number>();
  let run = 0;
  for (const group of data.groups) {
    for (const c of group) {
      run++;
      if (seen.has(c.tcId)) failures.push(`tcId ${c.tcId} appears twice`);
      seen.add(c.tcId);
      const problem = check(c);
      if (problem !== null) failures.push(`${describeCase(c)}: ${problem}`);
    }
  }
  const declared = run === data.numberOfTests ? '' : ` (the file declares ${data.numberOfTests})`;
  console.log(`wycheproof ${file}: ${run} tests, ${run - failures.length} as expected${declared}`);
  expect(failures).toEqual([]);
  expect(run).toBe(data.numberOfTests);
  expect(run).toBeGreaterThan(0);
}

// ---------------------------------------------------------------------------

const xchacha: Aead = { nonceLength: 24, seal: xchachaSeal, open: xchachaOpen };
const chacha: Aead = { nonceLength: 12, seal: chachaSeal, open: chachaOpen };

if (!HAVE_VECTORS) console.warn(`Wycheproof vectors not found at ${VECTOR_DIR}; skipped`);

describe.skipIf(!HAVE_VECTORS)('Wycheproof', () => {
  it('xchacha20_poly1305_test.json: every test, through xchachaSeal / xchachaOpen', () => {
    runFile('xchacha20_poly1305_test.json', 'XCHACHA20-POLY1305', toAeadCase, (c) => checkAeadCase(xchacha, c));
  });

  it('chacha20_poly1305_test.json: every test, through chachaSeal / chachaOpen', () => {
    runFile('chacha20_poly1305_test.json', 'CHACHA20-POLY1305', toAeadCase, (c) => checkAeadCase(chacha, c));
  });

  it('hkdf_sha256_test.json: every test, through hkdfSha256', () => {
    runFile('hkdf_sha256_test.json', 'HKDF-SHA-256', toHkdfCase, checkHkdfCase);
  });
});
