import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

// What a user gets from the registry: the packed tarball, installed by npm
// into a clean directory, run through `npm exec` (what `npx` does).
describe('npm pack', () => {
  it('gives a tarball that installs and runs confab', { timeout: 180_000 }, async () => {
    const out = mkdtempSync(join(tmpdir(), 'confab-pack-'));
    execFileSync('npm', ['pack', '--silent', '--pack-destination', out], { cwd: root, stdio: 'pipe' });
    const tgz = readdirSync(out).find((f) => /^confab-.*\.tgz$/.test(f));
    expect(tgz).toBeDefined();
    const listing = execFileSync('tar', ['-tzf', join(out, tgz as string)], { encoding: 'utf8' });
    expect(listing).toContain('package/dist/cli/main.js');
    expect(listing).not.toMatch(/package\/(src|test)\//);

    const work = mkdtempSync(join(tmpdir(), 'confab-exec-'));
    const npmExec = ['exec', '--yes', `--package=${join(out, tgz as string)}`, '--', 'confab'];
    const version = execFileSync('npm', [...npmExec, '--version'], { cwd: work, encoding: 'utf8' });
    expect(version.trim()).toBe('0.1.0');

    // The installed command serves for real.
    const server = spawn('npm', [...npmExec, 'serve', '--host', '127.0.0.1', '--port', '0'], {
      cwd: work,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let buf = '';
        server.stdout.setEncoding('utf8').on('data', (c: string) => {
          buf += c;
          const m = /listening on \S+/.exec(buf);
          if (m) resolve(m[0]);
        });
        server.on('exit', (code) => reject(new Error(`serve exited ${code}`)));
      });
      expect(line).toMatch(/^listening on 127\.0\.0\.1:\d+$/);
    } finally {
      if (server.pid !== undefined) process.kill(-server.pid, 'SIGTERM');
    }
  });
});
