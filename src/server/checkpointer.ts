import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

// The worker's own code, run with `eval` so that it works the same from
// src/ (tests) and dist/: it opens the database a second time and checkpoints
// it on a timer. A PASSIVE checkpoint never waits for, or blocks, the writer.
// It reports only the checkpoints that copied something: an idle server's
// event loop is not woken ten times a second to count no-ops.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { fileMustExist: true });
let last = -1;
const timer = setInterval(() => {
  try {
    const { checkpointed } = db.pragma('wal_checkpoint(PASSIVE)')[0];
    if (checkpointed > 0 && checkpointed !== last) parentPort.postMessage({ ok: true });
    last = checkpointed;
  } catch (err) {
    // A full disk (the database file can't grow to take the log's pages) passes
    // once space returns: tried again at the next tick. Given up on, the log
    // grew until it filled the space freed, and every message was refused again.
    if (err && (err.code === 'SQLITE_FULL' || err.code === 'SQLITE_BUSY')) return;
    parentPort.postMessage({ error: String(err && err.message) });
  }
}, workerData.intervalMs);
parentPort.on('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Checkpoints a WAL-mode SQLite database from a thread of its own. SQLite's
 * automatic checkpoint runs inside whichever commit crosses its threshold: on
 * the relay's event loop, where copying the log into the database and its two
 * fsyncs held up every message of that turn by milliseconds. While this runs
 * the writer raises its own threshold to a backstop: the log only starts over
 * from its beginning after a checkpoint that copied all of it, and under steady
 * commits one from this thread rarely can (newer frames arrive while it copies),
 * so the writer's occasional checkpoint, which nothing can overtake, bounds it.
 */
export class Checkpointer {
  private readonly worker: Worker;
  /** Checkpoints so far that copied pages into the database. */
  checkpoints = 0;
  /** Settles once the thread has gone (closed, or failed). */
  private readonly exited: Promise<void>;

  /** `onFailure` runs once if the thread fails; the writer then checkpoints by itself again. */
  constructor(path: string, intervalMs: number, onFailure: (message: string) => void) {
    const module = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(WORKER, { eval: true, workerData: { module, path, intervalMs } });
    this.worker.unref();
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    let failed = false;
    // One failure ends the thread: two checkpointers would only contend.
    const fail = (message: string): void => {
      if (failed) return;
      failed = true;
      void this.worker.terminate();
      onFailure(message);
    };
    this.worker.on('message', (m: { ok?: true; error?: string }) => {
      if (m.error !== undefined) fail(m.error);
      else this.checkpoints++;
    });
    this.worker.on('error', (err) => fail(err.message));
  }

  /**
   * Stops the timer and closes the thread's connection; settles once the
   * thread has gone. Until then its connection holds the write-ahead log's
   * files open, and the last connection to close is the one that removes them.
   */
  close(): Promise<void> {
    // Unref'd so that it never keeps a server alive by itself; but once asked to
    // close, the process waits for it (else the loop could drain first, and a
    // `confab serve` awaiting this exits 13, an unsettled top-level await).
    this.worker.ref();
    this.worker.postMessage('close');
    return this.exited;
  }
}
