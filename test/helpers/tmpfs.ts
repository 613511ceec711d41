import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A small tmpfs of our own, for a real full disk; null where mounting needs a root we are not. */
export interface Tmpfs {
  path: string;
  /** Fills it but for about `leave` bytes, in `chunk`-byte writes; returns the filler's size. */
  fill(chunk: number, leave: number): number;
  /** Gives the filled space back. */
  empty(): void;
  /** Mounts it again read-only. */
  readOnly(): void;
  unmount(): void;
}

export function mountTmpfs(size: string): Tmpfs | null {
  const path = mkdtempSync(join(tmpdir(), 'confab-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', path], { stdio: 'ignore' });
  } catch {
    console.log('tmpfs test skipped: mounting a tmpfs needs root (CAP_SYS_ADMIN)');
    rmSync(path, { recursive: true, force: true });
    return null;
  }
  const filler = join(path, 'filler');
  return {
    path,
    fill(chunk, leave) {
      let written = 0;
      try {
        for (;;) {
          writeFileSync(filler, Buffer.alloc(chunk), { flag: 'a' });
          written += chunk;
        }
      } catch {
        // ENOSPC: full. Give back a little.
        written -= leave;
        truncateSync(filler, written);
      }
      return written;
    },
    empty: () => rmSync(filler, { force: true }),
    readOnly: () => execFileSync('mount', ['-o', 'remount,ro', path]),
    unmount() {
      execFileSync('umount', ['-l', path]);
      rmSync(path, { recursive: true, force: true });
    },
  };
}
