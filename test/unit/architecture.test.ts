import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
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
/**
 * Node's own globals: a pure layer reaches I/O through them without an import
 * (the type-check can't tell, since every file is compiled with Node's types).
 * The web platform's (TextEncoder, crypto.getRandomValues, setTimeout) are allowed.
 */
const NODE_GLOBALS = new Set([
  'process',
  'Buffer',
  'require',
  'module',
  'global',
  '__dirname',
  '__filename',
  'setImmediate',
]);

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

/** Whether `id` names something by itself (not a property, not a declaration's own name). */
function isReference(id: ts.Identifier): boolean {
  const p = id.parent;
  if (ts.isPropertyAccessExpression(p) && p.name === id) return false;
  if (ts.isQualifiedName(p) && p.right === id) return false;
  if ((ts.isPropertyAssignment(p) || ts.isPropertyDeclaration(p) || ts.isPropertySignature(p)) && p.name === id) {
    return false;
  }
  if ((ts.isMethodDeclaration(p) || ts.isMethodSignature(p)) && p.name === id) return false;
  if ((ts.isImportSpecifier(p) || ts.isExportSpecifier(p)) && p.propertyName === id) return false;
  return true;
}

/**
 * What in `text` (the source of `path`, a file of src/) breaks its layer's
 * rules: every import, re-export, `import()`, `require()` and `import x =`
 * whatever its form, a specifier that is not written out, and, in a pure
 * layer, Node's globals. Parsed, so no way of writing an import is missed.
 */
function violations(path: string, text: string): string[] {
  const layer = layerOf(path);
  const name = relative(src, path);
  const found: string[] = [];
  const check = (spec: string): void => {
    if (spec.startsWith('.')) {
      const target = layerOf(resolve(path, '..', spec));
      if (target !== layer && !(ALLOWED[layer] ?? []).includes(target)) {
        found.push(`${name} imports ${spec} (layer ${target})`);
      }
    } else if (PURE.has(layer) && !(layer === 'crypto' && CRYPTO_PACKAGES.test(spec))) {
      found.push(`${name} is pure (${layer}) but imports ${spec}`);
    }
  };
  const specifier = (node: ts.Node | undefined, what: string): void => {
    if (node !== undefined && ts.isStringLiteralLike(node)) check(node.text);
    else found.push(`${name}: ${what} of a specifier that is not written out`);
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined)) {
      specifier(node.moduleSpecifier, 'an import');
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      specifier(node.moduleReference.expression, 'an import');
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      specifier(node.arguments[0], 'import()');
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      specifier(node.argument.literal, 'import()');
    } else if (ts.isIdentifier(node) && PURE.has(layer) && NODE_GLOBALS.has(node.text) && isReference(node)) {
      found.push(`${name} is pure (${layer}) but uses Node's ${node.text}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS));
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
    it(`${relative(src, file)} imports only what its layer (${layer}) may`, () => {
      expect(violations(file, readFileSync(file, 'utf8'))).toEqual([]);
    });
  }

  it('catches every way of writing a violation (the checker itself works)', () => {
    const protocol = join(src, 'protocol', 'x.ts');
    const crypto = join(src, 'crypto', 'x.ts');
    const server = join(src, 'server', 'x.ts');
    const bad: [string, string][] = [
      [protocol, "import { readFileSync } from 'node:fs';"],
      [protocol, "import 'node:fs';"],
      [protocol, "import * as fs from 'fs';"],
      [protocol, "export { readFileSync } from 'node:fs';"],
      [protocol, "export * from 'node:fs';"],
      [protocol, 'const fs = await import(`node:fs`);'],
      [protocol, "const fs = await import('node' + ':fs');"],
      [protocol, "import fs = require('node:fs');"],
      [protocol, "type T = typeof import('node:fs');"],
      [protocol, 'export const t = process.hrtime();'],
      [protocol, "export const b = Buffer.from('x');"],
      [protocol, "const m = require('node:fs');"],
      [protocol, "import { x } from '../client/index.js';"],
      [crypto, "import { x } from 'tweetnacl';"],
      [crypto, "import { x } from '../protocol/index.js';"],
      [server, "import '../crypto/index.js';"],
      [server, "import { seal } from '../crypto/index.js';"],
      [server, "const c = await import('../crypto/envelope.js');"],
    ];
    for (const [path, text] of bad) expect(violations(path, text), text).not.toEqual([]);
    const good: [string, string][] = [
      [protocol, "import { x } from './bytes.js';"],
      [protocol, 'const o = { process: 1 }; export const p = o.process; export const e = new TextEncoder();'],
      [crypto, "import { sha256 } from '@noble/hashes/sha2.js';"],
      [server, "import { readFileSync } from 'node:fs'; import { x } from '../protocol/index.js';"],
      [join(src, 'client', 'x.ts'), "import { seal } from '../crypto/index.js';"],
    ];
    for (const [path, text] of good) expect(violations(path, text), text).toEqual([]);
  });
});
