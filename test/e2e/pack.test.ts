import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { until } from '../helpers/net.js';
import { fanoutAddon } from '../../src/server/direct-write.js';

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
    expect(listing).not.toMatch(/package\/(src|test|native\/build)\//);
    // The native fan-out ships as source and is compiled by the install.
    for (const f of ['native/fanout.c', 'native/binding.gyp', 'native/build.mjs'])
      expect(listing).toContain(`package/${f}`);

    const work = mkdtempSync(join(tmpdir(), 'confab-exec-'));
    const npmExec = ['exec', '--yes', `--package=${join(out, tgz as string)}`, '--', 'confab'];
    const env = { ...process.env, ...localPrebuild() };
    const version = execFileSync('npm', [...npmExec, '--version'], { cwd: work, encoding: 'utf8', env });
    expect(version.trim()).toBe('0.1.0');

    // The installed command serves for real.
    const server = spawn('npm', [...npmExec, 'serve', '--host', '127.0.0.1', '--port', '0'], {
      cwd: work,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let log = '';
    server.stderr.setEncoding('utf8').on('data', (c: string) => (log += c));
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
      // The install built the addon, and the installed server writes through it.
      await until(() => log.includes('"msg":"listening"'));
      expect(log).toContain('"nativeWrites":true');
      expect(log).toContain(`"ioUring":${String(fanoutAddon?.ringReady() === true)}`);
    } finally {
      // npm and the server under it are one process group: end it, and wait for it.
      const exited = new Promise((resolve) => server.once('exit', resolve));
      if (server.exitCode === null && server.pid !== undefined) {
        process.kill(-server.pid, 'SIGTERM');
        const timer = setTimeout(() => process.kill(-(server.pid as number), 'SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
    }
  });
});

/**
 * better-sqlite3 installs through prebuild-install, which looks for a binary
 * on GitHub (out of reach here) and else compiles for a minute. `npm ci` has
 * already compiled it for this machine; packed as the prebuilt tarball that
 * prebuild-install takes from a local folder, the install below uses it, as a
 * user's install uses the downloaded one.
 */
function localPrebuild(): NodeJS.ProcessEnv {
  const pkg = JSON.parse(readFileSync(join(root, 'node_modules/better-sqlite3/package.json'), 'utf8')) as {
    version: string;
  };
  const dir = mkdtempSync(join(tmpdir(), 'confab-prebuilds-'));
  const name = `better-sqlite3-v${pkg.version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  execFileSync('tar', [
    '-czf',
    join(dir, name),
    '-C',
    join(root, 'node_modules/better-sqlite3'),
    'build/Release/better_sqlite3.node',
  ]);
  return { npm_config_better_sqlite3_local_prebuilds: dir };
}
