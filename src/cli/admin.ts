import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { HISTORY_FILE, SqliteHistory } from '../server/index.js';

/** Exit codes of the admin commands (the same as everywhere in confab). */
const OK = 0;
const FAILURE = 1;

/**
 * `confab admin release-nick NICK --data DIR`: frees a nick in a server's
 * store, so the next key to join with it owns it. Safe while the server runs
 * (SQLite WAL: the server sees the change at its next join).
 */
export function releaseNick(
  nick: string,
  dataDir: string,
  stdout: NodeJS.WritableStream,
  stderr: NodeJS.WritableStream,
): number {
  const path = join(dataDir, HISTORY_FILE);
  if (!existsSync(path)) {
    stderr.write(`confab: no server data in ${dataDir} (${HISTORY_FILE} not found)\n`);
    return FAILURE;
  }
  const store = new SqliteHistory({ path, retention: { messages: 1, maxAgeMs: 1 } });
  try {
    if (store.releaseNick(nick)) {
      stdout.write(`released ${nick.toLowerCase()}: the next key to join as ${nick} owns it\n`);
      return OK;
    }
    stderr.write(`confab: nobody owns the nick ${nick} on this server\n`);
    return FAILURE;
  } finally {
    store.close();
  }
}
