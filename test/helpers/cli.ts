import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built CLI, as `npm install` would put it on PATH. */
export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** A running `confab` process with its output collected line by line. */
export class Proc {
  readonly child: ChildProcessWithoutNullStreams;
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;
  private partial = { stdout: '', stderr: '' };

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, NO_COLOR: '1', CONFAB_LOG: 'warn', ...env },
      stdio: 'pipe',
    });
    for (const name of ['stdout', 'stderr'] as const) {
      this.child[name].setEncoding('utf8');
      this.child[name].on('data', (chunk: string) => {
        const text = this.partial[name] + chunk;
        const lines = text.split('\n');
        this.partial[name] = lines.pop() ?? '';
        this[name].push(...lines);
      });
    }
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  /** Waits for a stdout (or stderr) line matching `pattern`; returns it. */
  async line(pattern: RegExp, stream: 'stdout' | 'stderr' = 'stdout', ms = 10_000): Promise<string> {
    const end = Date.now() + ms;
    for (;;) {
      const found = this[stream].find((l) => pattern.test(l));
      if (found !== undefined) return found;
      if (Date.now() > end) {
        throw new Error(
          `no ${stream} line matching ${String(pattern)}; stdout: ${JSON.stringify(this.stdout)} stderr: ${JSON.stringify(this.stderr)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  write(text: string): void {
    this.child.stdin.write(text);
  }

  end(): void {
    this.child.stdin.end();
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null) this.child.kill(signal);
  }
}

export function tempHome(): string {
  return mkdtempSync(join(tmpdir(), 'confab-home-'));
}

/** `confab serve --port 0` on loopback; resolves with the process and its port. */
export async function serve(extra: string[] = []): Promise<{ proc: Proc; port: number }> {
  const proc = new Proc(['serve', '--host', '127.0.0.1', '--port', '0', ...extra]);
  let line: string;
  try {
    line = await proc.line(/^listening on /);
  } catch (err) {
    // The caller never gets it to stop: stop it here.
    proc.kill('SIGKILL');
    throw err;
  }
  const port = Number(/:(\d+)$/.exec(line)?.[1]);
  return { proc, port };
}

/** Runs the built CLI to completion (for short commands: id, trust, verify, admin). */
export function confab(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 10_000 });
}
