import { join } from 'node:path';
import Database from 'better-sqlite3';

/** The file in `--data` whose lock says a server is using the directory. */
export const LOCK_FILE = 'server.lock';

/** Another server holds the data directory. */
export class DataDirInUseError extends Error {
  override readonly name = 'DataDirInUseError';
}

/** A lock this process holds; `release` gives it up. */
export interface HeldLock {
  release(): void;
}

/**
 * Takes an exclusive lock on `path` (a small SQLite file, created if missing)
 * for this process, until `release` or the process's end: the kernel drops it
 * however the process goes, so a crash leaves nothing stale to clean up.
 * Returns null if another process holds it.
 * @throws Error naming `path` if it can't be opened (a read-only directory)
 */
export function holdLock(path: string): HeldLock | null {
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: 0 });
  } catch (err) {
    throw new Error(`cannot open ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  try {
    // In exclusive locking mode a connection keeps the lock of its first write until it closes.
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE; COMMIT');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') return null;
    // A full disk (SQLITE_FULL) said only "database or disk is full": name the file.
    throw new Error(`cannot lock ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return {
    release: () => {
      if (db.open) db.close();
    },
  };
}

/**
 * Takes the data directory for this server: `server.lock` inside it. Two
 * servers on one store each numbered the same rooms from their own memory: the
 * second's commits broke the first's (SQLITE_CONSTRAINT), which then refused
 * every message to those rooms until it was restarted. `confab admin` does not
 * take it: it works beside a running server.
 * @throws DataDirInUseError if another process holds it
 */
export function lockDataDir(dir: string): HeldLock {
  const lock = holdLock(join(dir, LOCK_FILE));
  if (lock === null) throw new DataDirInUseError(`another confab server is using the data directory ${dir}`);
  return lock;
}
