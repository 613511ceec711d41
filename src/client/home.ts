import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import envPaths from 'env-paths';
import { IdentityFileError } from './identity-store.js';

/**
 * Where a client keeps its files: `--home DIR`, else `CONFAB_HOME`, else the
 * platform's data directory (`$XDG_DATA_HOME/confab` on Linux).
 */
export function resolveHome(home: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (home !== undefined && home !== '') return resolve(home);
  const fromEnv = env['CONFAB_HOME'];
  if (fromEnv !== undefined && fromEnv !== '') return resolve(fromEnv);
  return envPaths('confab', { suffix: '' }).data;
}

/**
 * Creates the home directory if missing, readable only by its owner.
 * @throws IdentityFileError naming the directory and why it can't be made
 */
export function ensureHome(dir: string): string {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new IdentityFileError(`cannot make the confab home ${dir}: ${whyNoHome(dir, err)}`, { cause: err });
  }
  return dir;
}

/**
 * A recursive mkdir on a read-only file system reports ENOENT for the
 * directory it could not make (Node 20), which reads as a typo: name the
 * closest directory that exists, and whether it can be written.
 */
function whyNoHome(dir: string, err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code !== 'ENOENT') return e.message;
  let parent = dirname(dir);
  while (!existsSync(parent) && dirname(parent) !== parent) parent = dirname(parent);
  try {
    accessSync(parent, constants.W_OK);
  } catch {
    return `${parent} can't be written (a read-only file system?)`;
  }
  return e.message;
}
