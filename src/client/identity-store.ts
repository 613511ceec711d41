import { closeSync, existsSync, lstatSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { identityFromSecret, newIdentity } from '../crypto/index.js';
import type { Identity } from '../crypto/index.js';

/** The identity file is missing, unreadable, malformed, or readable by others; or the home to hold it can't be made. */
export class IdentityFileError extends Error {
  override readonly name = 'IdentityFileError';
}

const FILE = 'identity.json';

interface IdentityFile {
  v: 1;
  /** Ed25519 secret seed, base64url. */
  secretKey: string;
}

/** Path of the identity file in a home directory. */
export function identityPath(home: string): string {
  return join(home, FILE);
}

/**
 * Loads the user's Ed25519 identity from `home`, making one on first run. The
 * file is created with mode 0600; one that group or others can read is refused,
 * because a copied key lets anyone speak as this user.
 * @throws IdentityFileError with what is wrong and how to fix it
 */
export function loadIdentity(home: string): Identity {
  const path = identityPath(home);
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return createIdentity(path);
    throw new IdentityFileError(`cannot read ${path}: ${(err as Error).message}`);
  }
  // A directory's mode is 755 and would be reported as a key readable by others.
  if (!stats.isFile()) throw new IdentityFileError(`${path} is not a file: move it away, or use another --home`);
  const mode = stats.mode;
  if ((mode & 0o077) !== 0) {
    throw new IdentityFileError(
      `${path} is readable by others (mode ${(mode & 0o777).toString(8)}); your key may be exposed. ` +
        `If only you could read it, fix it with: chmod 600 ${path}`,
    );
  }
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new IdentityFileError(`cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new IdentityFileError(`${path} is not a confab identity file: ${(err as Error).message}`);
  }
  const secret =
    typeof parsed === 'object' && parsed !== null ? (parsed as Partial<IdentityFile>).secretKey : undefined;
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'base64url') : Buffer.alloc(0);
  if (bytes.length !== 32) throw new IdentityFileError(`${path} does not hold a 32-byte key`);
  return identityFromSecret(new Uint8Array(bytes));
}

function createIdentity(path: string): Identity {
  const identity = newIdentity();
  const file: IdentityFile = { v: 1, secretKey: Buffer.from(identity.secretKey).toString('base64url') };
  // 'wx': never overwrite a key another process just made; 0600 from the first byte.
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (err) {
    // Another process made it just now; or a symbolic link to nowhere, which
    // `stat` takes for no file (loading again would go round for ever).
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      if (lstatSync(path).isSymbolicLink() && !existsSync(path)) {
        throw new IdentityFileError(`${path} is a symbolic link to nothing: move it away, or use another --home`);
      }
      return loadIdentity(path.slice(0, -FILE.length - 1));
    }
    throw new IdentityFileError(`cannot create ${path}: ${(err as Error).message}`);
  }
  try {
    writeSync(fd, `${JSON.stringify(file)}\n`);
  } finally {
    closeSync(fd);
  }
  return identity;
}
