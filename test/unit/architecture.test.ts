import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The layer rules of DESIGN.md: the arrows are the only imports allowed between
// folders of src/. `index.ts` at the root is the package entry.
const ALLOWED: Record<string, string[]> = {
  cli: ['tui', 'server'],
  tui: ['client'],
  client: ['crypto', 'protocol'],
  server: ['protocol'],
  protocol: [],
  crypto: [],
  '.': ['client', 'server'],
};
const PURE = new Set(['protocol', 'crypto']);
const CRYPTO_PACKAGES = /^@noble\/(ciphers|curves|hashes)(\/|$)/;

const src = fileURLToPath(new URL('../../src', import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
  });
}

function layerOf(path: string): string {
  const rel = relative(src, path).split(sep);
  return rel.length === 1 ? '.' : (rel[0] as string);
}

function imports(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  const found: string[] = [];
  for (const m of text.matchAll(
    /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g,
  )) {
    found.push((m[1] ?? m[2]) as string);
  }
  return found;
}

const all = files(src);

describe('architecture: the import rules of DESIGN.md', () => {
  it('finds the source tree', () => {
    expect(all.length).toBeGreaterThan(10);
    expect(new Set(all.map(layerOf))).toEqual(new Set(Object.keys(ALLOWED)));
  });

  for (const file of all) {
    const layer = layerOf(file);
    const name = relative(src, file);
    it(`${name} imports only what its layer (${layer}) may`, () => {
      for (const spec of imports(file)) {
        if (spec.startsWith('.')) {
          const target = layerOf(resolve(file, '..', spec));
          if (target !== layer) {
            expect(ALLOWED[layer], `${name} imports ${spec} (layer ${target})`).toContain(target);
          }
        } else if (PURE.has(layer)) {
          expect(spec.startsWith('node:'), `${name} is pure but imports ${spec}`).toBe(false);
          expect(
            layer === 'crypto' && CRYPTO_PACKAGES.test(spec),
            `${name} may only import @noble/*, not ${spec}`,
          ).toBe(true);
        }
      }
    });
  }

  it('catches a violation (the checker itself works)', () => {
    expect(ALLOWED['server']).not.toContain('crypto');
    expect(layerOf(join(src, 'server', 'x.ts'))).toBe('server');
    expect(imports(join(src, 'server', 'relay.ts')).some((s) => s.includes('../protocol/'))).toBe(true);
  });
});
