import { spawn } from '@lydell/node-pty';
import type { IPty } from '@lydell/node-pty';
import headless from '@xterm/headless';
import type { IBufferLine, Terminal as XTerm } from '@xterm/headless';
import { CLI } from './cli.js';

const { Terminal } = headless;

export interface TtyOptions {
  cols?: number;
  rows?: number;
  /** Added to the environment; `undefined` removes a variable. */
  env?: NodeJS.ProcessEnv;
}

/**
 * The built CLI in a pseudo-terminal (@lydell/node-pty), drawing on a headless
 * xterm.js (@xterm/headless) that stands in for the user's screen. Tests read
 * the screen, never the raw bytes, and wait for it by polling.
 *
 * By default NO_COLOR is set (plain text to compare) and so is CI=true: the
 * interactive client must not depend on it.
 */
export class Tty {
  readonly pty: IPty;
  readonly term: XTerm;
  readonly exited: Promise<number>;
  /** Everything the program wrote, raw. */
  output = '';
  /** Window titles the program set (OSC 0/2): must stay empty. */
  readonly titles: string[] = [];
  bells = 0;
  private exitCode: number | null = null;

  constructor(args: string[], options: TtyOptions = {}) {
    const cols = options.cols ?? 80;
    const rows = options.rows ?? 24;
    this.term = new Terminal({
      cols,
      rows,
      scrollback: 1000,
      allowProposedApi: true,
    });
    const env: Record<string, string> = {};
    const merged: NodeJS.ProcessEnv = {
      ...process.env,
      NO_COLOR: '1',
      CI: 'true',
      CONFAB_LOG: 'warn',
      TERM: 'xterm-256color',
      ...options.env,
    };
    for (const [k, v] of Object.entries(merged)) if (v !== undefined) env[k] = v;
    this.pty = spawn(process.execPath, [CLI, ...args], { name: env['TERM'] ?? 'xterm-256color', cols, rows, env });
    this.pty.onData((data) => {
      this.output += data;
      this.term.write(data);
    });
    // The terminal's answers to queries (cursor position, attributes) go back, as a real one's would.
    this.term.onData((data) => {
      if (this.exitCode === null) this.pty.write(data);
    });
    this.term.onTitleChange((title) => this.titles.push(title));
    this.term.onBell(() => this.bells++);
    this.exited = new Promise((resolve) =>
      this.pty.onExit(({ exitCode }) => {
        this.exitCode = exitCode;
        resolve(exitCode);
      }),
    );
  }

  /** Keys, as the terminal would send them (`\r` for Enter, `\t` for Tab, `\x1b[A` for ↑). */
  type(keys: string): void {
    this.pty.write(keys);
  }

  /** A bracketed paste of `text`, line breaks as a terminal sends them (CR). */
  paste(text: string): void {
    this.pty.write(`\u001b[200~${text.replace(/\r?\n/g, '\r')}\u001b[201~`);
  }

  /** Resizes the screen, then tells the program (SIGWINCH), as a terminal window does. */
  resize(cols: number, rows: number): void {
    this.term.resize(cols, rows);
    this.pty.resize(cols, rows);
  }

  /** Rows of the screen, right-trimmed. */
  screen(): string[] {
    const b = this.term.buffer.active;
    return Array.from({ length: this.term.rows }, (_, i) => b.getLine(b.baseY + i)?.translateToString(true) ?? '');
  }

  /** Every row, scrollback included, without the empty ones at the end. */
  rows(): string[] {
    const b = this.term.buffer.active;
    const all = Array.from({ length: b.length }, (_, i) => b.getLine(i)?.translateToString(true) ?? '');
    while (all.length > 0 && all[all.length - 1] === '') all.pop();
    return all;
  }

  /** Like rows(), with rows the terminal wrapped joined back into the line they belong to. */
  lines(): string[] {
    const b = this.term.buffer.active;
    const out: string[] = [];
    for (let i = 0; i < b.length; i++) {
      const line = b.getLine(i) as IBufferLine;
      const text = line.translateToString(true);
      if (line.isWrapped && out.length > 0) out[out.length - 1] = `${out[out.length - 1] ?? ''}${text}`;
      else out.push(text);
    }
    while (out.length > 0 && out[out.length - 1] === '') out.pop();
    return out;
  }

  text(): string {
    return this.lines().join('\n');
  }

  /** The cursor, on the visible screen. */
  cursor(): { x: number; y: number } {
    const b = this.term.buffer.active;
    return { x: b.cursorX, y: b.cursorY };
  }

  /** The screen row the cursor is on. */
  cursorRow(): string {
    return this.screen()[this.cursor().y] ?? '';
  }

  /** Cells of one screen row (for colours). */
  row(y: number): IBufferLine | undefined {
    const b = this.term.buffer.active;
    return b.getLine(b.baseY + y);
  }

  /** Polls until `ok()` holds (the terminal parses asynchronously); fails with the screen. */
  async until(ok: () => boolean, what: string, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    for (;;) {
      await new Promise<void>((resolve) => this.term.write('', resolve));
      if (ok()) return;
      if (Date.now() > end) {
        throw new Error(`timed out waiting for ${what}; screen:\n${this.rows().join('\n')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
  }

  /** Waits for a line (wrapped rows joined) matching `pattern`; returns it. */
  async line(pattern: RegExp, ms?: number): Promise<string> {
    let found: string | undefined;
    await this.until(() => (found = this.lines().find((l) => pattern.test(l))) !== undefined, String(pattern), ms);
    return found as string;
  }

  /**
   * Waits until the cursor's row is the prompt (showing `state`) followed by
   * `input`, with the cursor right after the input and nothing after it.
   */
  async prompt(input: string, state = 'connected', ms?: number): Promise<string> {
    const pattern = new RegExp(`^#[0-9a-f]{6} \\S+ \\(${state}[^)]*\\)> `);
    let before = '';
    await this.until(
      () => {
        const b = this.term.buffer.active;
        const line = b.getLine(b.baseY + b.cursorY);
        before = line?.translateToString(false, 0, b.cursorX) ?? '';
        const after = line?.translateToString(true, b.cursorX) ?? '';
        return pattern.test(before) && before.endsWith(input) && after === '';
      },
      `the prompt (${state}) with input ${JSON.stringify(input)} and the cursor after it`,
      ms,
    );
    return before;
  }

  kill(): void {
    if (this.exitCode === null) this.pty.kill('SIGKILL');
  }
}
