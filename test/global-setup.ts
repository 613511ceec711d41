import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The e2e tier runs the built CLI, so build it once before any test. Every
 * temporary folder the tests make (homes, data directories, packs) goes into
 * one folder of the run's, through TMPDIR, which the test processes and the
 * CLIs they start inherit; it is removed at the end, so a run leaves nothing in
 * /tmp.
 */
export default function setup(): () => void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
    cwd: root,
    stdio: 'inherit',
  });
  const outer = process.env['TMPDIR'];
  const run = mkdtempSync(join(tmpdir(), 'confab-tests-'));
  process.env['TMPDIR'] = run;
  return () => {
    if (outer === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = outer;
    try {
      rmSync(run, { recursive: true, force: true, maxRetries: 3 });
    } catch (err) {
      // A file system a test left mounted there: say so, and leave it.
      console.warn(`could not remove ${run}: ${String(err)}`);
    }
  };
}
