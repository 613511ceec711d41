import { createInterface } from 'node:readline';
import type { Interface, Key } from 'node:readline';
import type { ReadStream, WriteStream } from 'node:tty';
import { BRACKETED_PASTE_OFF, BRACKETED_PASTE_ON, TtyInput } from './paste.js';
import type { Paste } from './paste.js';
import { inert } from './sanitize.js';

const ESC = '\u001b';
const up = (rows: number): string => (rows > 0 ? `${ESC}[${rows}A` : '');
/** To the start of the row, then erase it and everything below. */
const CLEAR_DOWN = `\r${ESC}[J`;
const CLEAR_SCREEN = `${ESC}[H${ESC}[2J`;
const BELL = '\u0007';
/** Quiet time after a resize before the screen is redrawn. */
const RESIZE_SETTLE_MS = 80;
/**
 * Lines held while the input line fills the window (see `flush`): past this
 * many they are printed anyway, so what is held stays bounded.
 */
export const MAX_HELD_LINES = 1000;

export type QuitReason = 'eof' | 'interrupt';

export interface ScreenOptions {
  input: ReadStream;
  output: WriteStream;
  prompt: string;
  completer: (line: string) => [string[], string];
  /** A line the user entered (Enter). Its echo is already gone from the screen. */
  onLine: (line: string) => void;
  /** Ctrl-D on an empty line (or the terminal's end), or Ctrl-C. */
  onQuit: (reason: QuitReason) => void;
  /** A bracketed paste, after it went into the input line. */
  onPaste?: (paste: Paste) => void;
}

/**
 * The interactive terminal: one input line, edited by node:readline (history,
 * completion, wide characters, resize), and everything else printed above it.
 *
 * To print, it goes up to the first row of the prompt (the cursor's row in the
 * input is kept in readline's `prevRows`), erases from there down, writes the
 * lines, and has readline draw the prompt and the input again below them, with
 * the cursor where it was. Lines that arrive together go out in one write.
 */
export class Screen {
  private readonly rl: Interface;
  private readonly input: TtyInput;
  private readonly output: WriteStream;
  private readonly completer: (line: string) => [string[], string];
  private queue: string[] = [];
  /** Printing waits because the input line fills the window (see `flush`). */
  private holding = false;
  private ring = false;
  private clearFirst = false;
  private scheduled: NodeJS.Immediate | null = null;
  private prompt: string;
  private drawnPrompt: string;
  /** The cursor's row in the input when Enter moved it to the end. */
  private submitRows = 0;
  private closed = false;
  private readlineClosed = false;
  private readonly restore = (): void => {
    // Leaving without close() (a crash): at least give the terminal its paste mode back.
    this.output.write(BRACKETED_PASTE_OFF);
  };
  /** A resize is being sorted out: printing waits for it. */
  private resizing = false;
  private settleTimer: NodeJS.Timeout | null = null;
  private readonly onResize = (): void => {
    if (this.closed || this.readlineClosed) return;
    // Wait until the resizes stop (a window being dragged sends many) and the
    // terminal has rewrapped its screen (tmux does it a moment after it tells us).
    this.resizing = true;
    if (this.settleTimer !== null) clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => {
      this.settleTimer = null;
      this.locatePrompt();
    }, RESIZE_SETTLE_MS);
  };

  /**
   * Where is the prompt after a resize? Most terminals (tmux, VTE, iTerm2,
   * kitty, Windows Terminal) rewrap everything to the new width, the input
   * too, so the cursor's row in the input is the one at the new width. xterm.js
   * (VS Code) leaves the cursor's own lines as they were, and so do terminals
   * that don't rewrap: then it is the row last drawn. The cursor's column tells
   * which, so ask the terminal; if it does not answer, assume it rewraps.
   */
  private locatePrompt(): void {
    this.input.askCursor(this.output, (pos) => {
      if (this.closed || this.readlineClosed || this.settleTimer !== null) return;
      this.resizing = false;
      const now = this.rl.getCursorPos();
      if (pos === null || pos.col - 1 === now.cols) this.setDrawnRow(now.rows);
      this.flush();
    });
  }

  constructor(options: ScreenOptions) {
    this.output = options.output;
    this.prompt = options.prompt;
    this.drawnPrompt = options.prompt;
    this.completer = options.completer;
    this.input = new TtyInput(options.input);
    const others = new Set(this.output.listeners('resize'));
    this.rl = createInterface({
      input: this.input,
      output: this.output,
      terminal: true,
      prompt: options.prompt,
      completer: (line: string): [string[], string] => this.complete(line),
      historySize: 1000,
      removeHistoryDuplicates: true,
    });
    // Enter moves the cursor to the end of the input, then below it, and readline
    // forgets the input before it reports the line: measure it first.
    this.input.prependListener('keypress', (_s: unknown, key: Key | undefined) => {
      if (key?.name !== 'return' && key?.name !== 'enter') return;
      if (this.rl.cursor < this.rl.line.length) this.rl.write('', { name: 'end' });
      this.submitRows = this.rl.getCursorPos().rows;
    });
    // readline appends keys that arrive together (fast typing, a paste without
    // brackets) without counting the rows they wrap onto: count them after every
    // key, so its redraws, and ours, start from the prompt's real first row.
    this.input.on('keypress', () => this.edited());
    this.rl.on('line', (line) => {
      if (this.closed) return;
      this.output.write(up(this.submitRows + 1) + CLEAR_DOWN);
      this.submitRows = 0;
      options.onLine(line);
      this.flush();
    });
    this.rl.on('SIGINT', () => options.onQuit('interrupt'));
    this.rl.on('close', () => {
      this.readlineClosed = true;
      if (!this.closed) options.onQuit('eof');
    });
    this.rl.on('SIGTSTP', () => this.suspend());
    this.input.onText((text) => {
      if (this.readlineClosed) return;
      this.rl.write(text);
      this.edited();
    });
    this.input.onPaste((paste) => {
      if (this.readlineClosed) return;
      if (paste.text !== '') this.rl.write(paste.text);
      this.edited();
      options.onPaste?.(paste);
    });
    // readline redraws on resize from the row it last drew, which is wrong on
    // terminals that rewrap: this screen redraws instead (onResize).
    for (const listener of this.output.listeners('resize')) {
      if (!others.has(listener)) this.output.off('resize', listener as () => void);
    }
    this.output.on('resize', this.onResize);
  }

  /** Shows the prompt and starts reading keys. */
  start(): void {
    process.on('exit', this.restore);
    this.output.write(BRACKETED_PASTE_ON);
    this.input.attach();
    this.rl.prompt();
  }

  /** Prints lines above the input line; `bell` rings the terminal bell once. */
  print(lines: readonly string[], bell = false): void {
    if (this.closed) return;
    this.queue.push(...lines);
    this.ring ||= bell;
    this.schedule();
  }

  /** Changes the prompt (redrawn at once, the input and cursor kept). */
  setPrompt(prompt: string): void {
    if (prompt === this.prompt) return;
    this.prompt = prompt;
    this.schedule();
  }

  /** Clears the screen; the prompt goes back to the top. */
  clear(): void {
    this.clearFirst = true;
    this.queue = [];
    this.schedule();
  }

  /** Erases the input line, prints the last lines and gives the terminal back. */
  close(lines: readonly string[] = []): void {
    if (this.closed) return;
    const rows = this.readlineClosed ? 0 : this.drawnRow();
    this.closed = true;
    if (this.scheduled !== null) clearImmediate(this.scheduled);
    this.scheduled = null;
    let out = up(rows) + CLEAR_DOWN;
    for (const line of [...this.queue, ...lines]) out += `${line}\r\n`;
    this.queue = [];
    this.output.write(out + BRACKETED_PASTE_OFF);
    process.off('exit', this.restore);
    this.output.off('resize', this.onResize);
    if (this.settleTimer !== null) clearTimeout(this.settleTimer);
    if (!this.readlineClosed) this.rl.close();
    this.input.detach();
  }

  /** Stops without writing anything: the terminal is gone (SIGHUP). */
  abandon(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.scheduled !== null) clearImmediate(this.scheduled);
    if (this.settleTimer !== null) clearTimeout(this.settleTimer);
    process.off('exit', this.restore);
    this.output.off('resize', this.onResize);
    this.input.detach();
  }

  /**
   * Tab: readline inserts a single choice, or what several have in common. When
   * that adds nothing, the choices are listed above the input line (readline
   * would list them below it, and leave the old prompt behind in the room).
   */
  private complete(line: string): [string[], string] {
    const [hits, word] = this.completer(line);
    if (hits.length <= 1) return [hits, word];
    let common = hits[0] ?? '';
    for (const hit of hits) while (!hit.startsWith(common)) common = common.slice(0, -1);
    if (common.length > word.length) return [[common], word];
    // inert: the completer offers only valid nicks, but what is printed never relies on that alone.
    this.print([`  ${hits.map((h) => inert(h.trimEnd())).join('  ')}`]);
    return [[], word];
  }

  private schedule(): void {
    if (this.scheduled !== null || this.closed) return;
    this.scheduled = setImmediate(() => this.flush());
  }

  private flush(): void {
    if (this.scheduled !== null) clearImmediate(this.scheduled);
    this.scheduled = null;
    if (this.closed || this.resizing || this.resizedUnseen()) return;
    const lines = this.queue;
    this.queue = [];
    if (this.readlineClosed) {
      // Quitting (Ctrl-D): no prompt any more, just the lines.
      if (lines.length > 0) this.output.write(lines.map((l) => `${l}\r\n`).join(''));
      return;
    }
    // An input line as tall as the window (a long paste) has its first rows
    // above the screen, where the cursor can't go: every redraw would copy it
    // into the scrollback again. Lines wait until it fits (it is sent, or
    // shortened), or until too many are waiting.
    this.holding = !this.clearFirst && lines.length < MAX_HELD_LINES && this.inputRows() >= this.rowsOf();
    if (this.holding) {
      this.queue = lines;
      if (this.ring) this.output.write(BELL);
      this.ring = false;
      return;
    }
    const rows = this.drawnRow();
    let out = this.clearFirst ? CLEAR_SCREEN : up(rows) + CLEAR_DOWN;
    this.clearFirst = false;
    for (const line of lines) out += `${line}\r\n`;
    if (this.ring) out += BELL;
    this.ring = false;
    this.output.write(out);
    this.setDrawnRow(0); // the cursor is at the start of the prompt's row now
    if (this.prompt !== this.drawnPrompt) {
      this.rl.setPrompt(this.prompt);
      this.drawnPrompt = this.prompt;
    }
    this.rl.prompt(true);
  }

  private suspend(): void {
    // Ctrl-Z: give the shell a normal terminal, take it back on `fg`.
    this.output.write(up(this.drawnRow()) + CLEAR_DOWN + BRACKETED_PASTE_OFF);
    this.setDrawnRow(0);
    this.input.setRawMode(false);
    process.once('SIGCONT', () => {
      if (this.closed) return;
      this.input.setRawMode(true);
      this.output.write(BRACKETED_PASTE_ON);
      this.flush();
    });
    process.kill(process.pid, 'SIGTSTP');
  }

  /**
   * Whether the terminal has a new size that Node has not reported yet (its
   * SIGWINCH is still on the way): drawing for the old width now would land in
   * the wrong rows. If so, takes the new size, as Node would, and sorts it out
   * (printing resumes after).
   */
  private resizedUnseen(): boolean {
    let cols: number;
    let rows: number;
    try {
      [cols, rows] = this.output.getWindowSize();
    } catch {
      return false;
    }
    if (cols === this.output.columns && rows === this.output.rows) return false;
    this.output.columns = cols;
    this.output.rows = rows;
    this.output.emit('resize');
    return true;
  }

  /** After a key or a paste: counts the input's rows again, and prints what waited once it fits. */
  private edited(): void {
    this.syncRow();
    if (this.holding) this.schedule();
  }

  /** The rows the prompt and the whole input line take, at the window's width. */
  private inputRows(): number {
    // getCursorPos() measures up to the cursor: measure with it at the end, then put it back.
    const rl = this.rl as unknown as { cursor: number };
    const at = rl.cursor;
    rl.cursor = this.rl.line.length;
    try {
      return this.rl.getCursorPos().rows + 1;
    } finally {
      rl.cursor = at;
    }
  }

  private rowsOf(): number {
    return this.output.rows > 0 ? this.output.rows : 24;
  }

  private syncRow(): void {
    if (!this.readlineClosed && !this.resizing) this.setDrawnRow(this.rl.getCursorPos().rows);
  }

  /**
   * The cursor's row below the prompt's first row, as drawn: readline's
   * `prevRows`, a field it has had since Node 0.x but keeps out of its types
   * (it redraws by going up that many rows). Kept right by `syncRow`.
   */
  private drawnRow(): number {
    const rows: unknown = (this.rl as unknown as { prevRows?: unknown }).prevRows;
    return typeof rows === 'number' ? rows : this.rl.getCursorPos().rows;
  }

  private setDrawnRow(rows: number): void {
    (this.rl as unknown as { prevRows?: number }).prevRows = rows;
  }
}
