import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import envPaths from 'env-paths';

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

/** Creates the home directory if missing, readable only by its owner. */
export function ensureHome(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}
