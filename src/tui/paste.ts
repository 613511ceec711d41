import { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type { ReadStream } from 'node:tty';
import { MAX_TEXT } from '../client/index.js';

/** Terminal modes: bracketed paste on and off (xterm; most terminals and tmux follow). */
export const BRACKETED_PASTE_ON = '\u001b[?2004h';
export const BRACKETED_PASTE_OFF = '\u001b[?2004l';
export const PASTE_START = '\u001b[200~';
export const PASTE_END = '\u001b[201~';

/**
 * How a line break of a paste shows in the input line (U+2424 SYMBOL FOR
 * NEWLINE). readline edits one line, so a paste's breaks become this mark and
 * turn back into line breaks when the line is sent.
 */
export const LINE_BREAK = '␤';

/**
 * Longest paste kept, in characters: readline edits one line. It is also cut
 * to the longest message, MAX_TEXT (60,000) bytes of UTF-8, which 16,000
 * characters of four bytes each (emoji) pass.
 */
export const MAX_PASTE = 16_000;

/** `text` cut to at most `bytes` bytes of UTF-8, between two characters. */
function cutToBytes(text: string, bytes: number): string {
  const encoded = Buffer.from(text, 'utf8');
  if (encoded.length <= bytes) return text;
  let end = bytes;
  while (end > 0 && ((encoded[end] ?? 0) & 0xc0) === 0x80) end--; // not inside a character
  return encoded.subarray(0, end).toString('utf8');
}

export type Segment = { kind: 'keys'; text: string } | { kind: 'paste'; text: string; truncated: boolean };

/** The longest end of `text` that is a proper beginning of `marker`. */
function partial(text: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(marker.slice(0, n))) return n;
  }
  return 0;
}

/**
 * Splits terminal input into keys and bracketed pastes (`ESC[200~ ... ESC[201~`),
 * for input cut anywhere: a marker split across chunks is held until the next
 * one (or `release`). Pure, so it is tested byte by byte.
 */
export class PasteParser {
  private held = '';
  private paste: string | null = null;
  private truncated = false;

  /** Whether a paste has started and not ended. */
  get pasting(): boolean {
    return this.paste !== null;
  }

  /** Whether something is held back, waiting for more input. */
  get waiting(): boolean {
    return this.held !== '' || this.paste !== null;
  }

  feed(chunk: string): Segment[] {
    const out: Segment[] = [];
    let text = this.held + chunk;
    this.held = '';
    while (text !== '') {
      if (this.paste === null) {
        const i = text.indexOf(PASTE_START);
        if (i < 0) {
          const keep = partial(text, PASTE_START);
          if (text.length > keep) out.push({ kind: 'keys', text: text.slice(0, text.length - keep) });
          this.held = text.slice(text.length - keep);
          break;
        }
        if (i > 0) out.push({ kind: 'keys', text: text.slice(0, i) });
        this.paste = '';
        this.truncated = false;
        text = text.slice(i + PASTE_START.length);
      } else {
        const j = text.indexOf(PASTE_END);
        if (j < 0) {
          const keep = partial(text, PASTE_END);
          this.add(text.slice(0, text.length - keep));
          this.held = text.slice(text.length - keep);
          break;
        }
        this.add(text.slice(0, j));
        out.push(this.end());
        text = text.slice(j + PASTE_END.length);
      }
    }
    return out;
  }

  /**
   * Input went quiet: let go of what is held. A lone ESC is a key after all;
   * a paste whose end never came ends here.
   */
  release(): Segment[] {
    const held = this.held;
    this.held = '';
    if (this.paste === null) return held === '' ? [] : [{ kind: 'keys', text: held }];
    this.add(held);
    return [this.end()];
  }

  private add(text: string): void {
    if (this.paste === null) return;
    const room = MAX_PASTE * 2 - this.paste.length;
    if (text.length > room) this.truncated = true;
    this.paste += text.slice(0, Math.max(0, room));
  }

  private end(): Segment {
    const raw = this.paste ?? '';
    this.paste = null;
    const text = pasteText(raw);
    const chars = [...text].length > MAX_PASTE ? [...text].slice(0, MAX_PASTE).join('') : text;
    const kept = cutToBytes(chars, MAX_TEXT);
    return { kind: 'paste', text: kept, truncated: this.truncated || kept !== text };
  }
}

/**
 * A paste as one line of input: line breaks as LINE_BREAK (none at the end),
 * tabs as spaces, escape sequences and other control characters dropped (a
 * paste is text, never keys).
 */
export function pasteText(raw: string): string {
  return (
    raw
      .replace(/\r\n?/g, '\n')
      // eslint-disable-next-line no-control-regex -- removing escape sequences is the point
      .replace(/\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|\u001b[@-_]?/g, '')
      .replace(/\t/g, '    ')
      // eslint-disable-next-line no-control-regex -- as above
      .replace(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g, '')
      .replace(/\n+$/, '')
      .replaceAll('\n', LINE_BREAK)
  );
}

/** A line as typed, with its pasted line breaks back. */
export function unpaste(line: string): string {
  return line.replaceAll(LINE_BREAK, '\n');
}

export type Paste = Extract<Segment, { kind: 'paste' }>;

export type KeyRun = { kind: 'keys'; text: string } | { kind: 'text'; text: string };

/**
 * Where `KeyRuns` is in an escape sequence, counted as Node's readline counts
 * (its `emitKeys`), so that both end each sequence at the same character:
 * `ESC [ [ A` (the Linux console's F1) and `ESC O 2 P` (Shift+F1) included.
 */
const Escape = {
  NONE: 0,
  /** After ESC. */
  ESC: 1,
  /** After ESC ESC (Alt and a sequence). */
  ESC2: 2,
  /** After ESC O: one key, or a modifier digit and a key. */
  SS3: 3,
  SS3_KEY: 4,
  /** After ESC [: a second [, or the first of up to three digits. */
  CSI: 5,
  /** After ESC [ [, or among the digits (`KeyRuns.digitsRead` of them). */
  CSI_DIGITS: 6,
  /** After `;`: a modifier digit, then the final character. */
  CSI_MODIFIER: 7,
  CSI_FINAL: 8,
} as const;
type EscapeState = (typeof Escape)[keyof typeof Escape];

/** How long readline waits for the rest of an escape sequence before it takes what came as keys (its default). */
export const ESCAPE_TIMEOUT_MS = 500;

const isDigit = (ch: string): boolean => ch >= '0' && ch <= '9';

/**
 * Splits keys into runs of plain characters typed together (`text`) and the
 * rest (`keys`: control keys and escape sequences, which may be cut anywhere:
 * where one is in the middle of is kept from one chunk to the next). Node 20's
 * readline appends every character of a chunk but its last to the end of the
 * line, wherever the cursor is, so `abc` typed fast (an input method's commit,
 * a slow link) in mid-line came out scrambled; a `text` run goes to readline
 * as one insertion at the cursor instead, as a paste does. Pure, so it is
 * tested character by character.
 */
export class KeyRuns {
  private state: EscapeState = Escape.NONE;
  /** Digits of the CSI under way read so far (readline reads at most three). */
  private digitsRead = 0;

  /**
   * Input went quiet for ESCAPE_TIMEOUT_MS after a read that ended in ESC:
   * readline takes that ESC for a key then, and so does this. Only then:
   * readline waits for the rest of `ESC [` or `ESC O` however long it takes.
   */
  reset(): void {
    if (this.awaitingEscape) this.state = Escape.NONE;
  }

  /** Whether the last character was ESC (or ESC ESC), which readline lets go of after ESCAPE_TIMEOUT_MS. */
  get awaitingEscape(): boolean {
    return this.state === Escape.ESC || this.state === Escape.ESC2;
  }

  feed(chunk: string): KeyRun[] {
    const out: KeyRun[] = [];
    let run = '';
    let kind: KeyRun['kind'] = 'keys';
    const put = (k: KeyRun['kind'], ch: string): void => {
      if (k !== kind && run !== '') {
        out.push({ kind, text: run });
        run = '';
      }
      kind = k;
      run += ch;
    };
    let at = 0;
    for (const ch of chunk) {
      at += ch.length;
      if (this.state === Escape.NONE) {
        const code = ch.codePointAt(0) ?? 0;
        if (code === 0x1b) this.state = Escape.ESC;
        // A Tab with more after it in the read is part of text (a paste without
        // brackets), as readline takes it: only the last key of a read completes.
        const tabInText = ch === '\t' && at < chunk.length;
        put((code < 0x20 && !tabInText) || (code >= 0x7f && code < 0xa0) ? 'keys' : 'text', ch);
        continue;
      }
      this.state = this.next(ch);
      put('keys', ch);
    }
    if (run !== '') out.push({ kind, text: run });
    // One character alone is a key like any other; but a Tab with more after it in the read stays text.
    return out.map((r) =>
      r.kind === 'text' && r.text !== '\t' && [...r.text].length === 1 ? { kind: 'keys', text: r.text } : r,
    );
  }

  /** Where `ch`, part of the sequence under way, leaves it. */
  private next(ch: string): EscapeState {
    switch (this.state) {
      case Escape.ESC:
      case Escape.ESC2:
        if (ch === '[') return Escape.CSI;
        if (ch === 'O') return Escape.SS3;
        return ch === '\u001b' && this.state === Escape.ESC ? Escape.ESC2 : Escape.NONE; // Alt and a key
      case Escape.SS3:
        return isDigit(ch) ? Escape.SS3_KEY : Escape.NONE;
      case Escape.CSI:
        this.digitsRead = 0;
        return ch === '[' ? Escape.CSI_DIGITS : this.digits(ch);
      case Escape.CSI_DIGITS:
        return this.digits(ch);
      case Escape.CSI_MODIFIER:
        return isDigit(ch) ? Escape.CSI_FINAL : Escape.NONE;
      default:
        return Escape.NONE; // SS3_KEY, CSI_FINAL: the last character
    }
  }

  /** A character of a CSI after `digitsRead` digits: up to three digits, then `;` and a modifier, or the final character. */
  private digits(ch: string): EscapeState {
    if (isDigit(ch) && this.digitsRead < 3) {
      this.digitsRead++;
      return Escape.CSI_DIGITS;
    }
    return ch === ';' ? Escape.CSI_MODIFIER : Escape.NONE;
  }
}

/** The terminal's answer to "where is the cursor". */
// eslint-disable-next-line no-control-regex -- the terminal's answer starts with ESC
const REPLY = /\u001b\[(\d+);(\d+)R/;
/** The start of an answer at the end of a read (from `ESC[` and a digit: a lone ESC is the user's). */
// eslint-disable-next-line no-control-regex -- as above
const REPLY_START = /\u001b\[\d+(?:;\d*)?$/;
/** How long after a question its answer is still taken out of the keys, however late. */
const LATE_REPLY_MS = 10_000;
/** How long the start of an answer cut between reads waits for its rest. */
const REPLY_TAIL_MS = 300;

/** Where the terminal says the cursor is, 1-based. */
export interface CursorReport {
  row: number;
  col: number;
}

/**
 * What readline reads instead of the terminal: the terminal's keys, minus
 * bracketed pastes, which it reports as `paste` events instead (readline alone
 * would take each pasted line break for Enter). Keys are emitted synchronously
 * as they arrive, so a paste lands exactly between the keys typed around it.
 */
export class TtyInput extends Readable {
  readonly isTTY = true;
  private readonly source: ReadStream;
  private readonly parser = new PasteParser();
  private readonly runs = new KeyRuns();
  private readonly decoder = new StringDecoder('utf8');
  private timer: NodeJS.Timeout | null = null;
  private cursorWaiter: ((pos: CursorReport | null) => void) | null = null;
  private cursorTimer: NodeJS.Timeout | null = null;
  /**
   * Questions whose answers have not come, and until when one may: an answer
   * later than its waiter (a slow link) is still taken out of the keys, or
   * readline took its `R` for a key and put the rest in the line.
   */
  private repliesDue = 0;
  private repliesUntil = 0;
  /** The start of an answer cut between two reads, held for the rest. */
  private replyTail = '';
  private replyTailTimer: NodeJS.Timeout | null = null;
  private readonly onData = (chunk: Buffer | string): void => {
    this.deliver(this.parser.feed(typeof chunk === 'string' ? chunk : this.decoder.write(chunk)));
  };
  private readonly onEnd = (): void => {
    this.deliver(this.parser.release());
    this.emit('end');
  };

  private readonly now: () => number;
  private lastKeysAt = 0;

  /** `now`: the clock that tells a sequence begun from one given up on (ESCAPE_TIMEOUT_MS). */
  constructor(source: ReadStream, now: () => number = Date.now) {
    super();
    this.source = source;
    this.now = now;
  }

  override _read(): void {
    // Data is pushed by the terminal, through `deliver`.
  }

  get isRaw(): boolean {
    return this.source.isRaw;
  }

  setRawMode(mode: boolean): this {
    this.source.setRawMode(mode);
    return this;
  }

  onPaste(listener: (paste: Paste) => void): void {
    this.on('paste', listener);
  }

  /** Plain characters that arrived together, to insert at the cursor in one go (see `KeyRuns`). */
  onText(listener: (text: string) => void): void {
    this.on('text', listener);
  }

  /**
   * Asks the terminal where the cursor is (DSR 6, written to `output`). Its
   * answer (`ESC[row;colR`) is taken out of the keys and given to `answer`;
   * null if none comes within `ms`.
   */
  askCursor(output: NodeJS.WritableStream, answer: (pos: CursorReport | null) => void, ms = 300): void {
    // An earlier question still open is dropped: only the latest answer counts.
    if (this.cursorTimer !== null) clearTimeout(this.cursorTimer);
    this.cursorWaiter = answer;
    this.cursorTimer = setTimeout(() => this.settleCursor(null), ms);
    this.repliesDue++;
    this.repliesUntil = this.now() + LATE_REPLY_MS;
    output.write('\u001b[6n');
  }

  private settleCursor(pos: CursorReport | null): void {
    const waiter = this.cursorWaiter;
    if (this.cursorTimer !== null) clearTimeout(this.cursorTimer);
    this.cursorTimer = null;
    this.cursorWaiter = null;
    waiter?.(pos);
  }

  /** Starts reading the terminal. */
  attach(): void {
    this.source.on('data', this.onData);
    this.source.on('end', this.onEnd);
    this.source.resume();
  }

  /** Stops reading it, so the process can exit. */
  detach(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.cursorTimer !== null) clearTimeout(this.cursorTimer);
    this.cursorTimer = null;
    this.cursorWaiter = null;
    if (this.replyTailTimer !== null) clearTimeout(this.replyTailTimer);
    this.replyTailTimer = null;
    this.source.off('data', this.onData);
    this.source.off('end', this.onEnd);
    this.source.pause();
  }

  /** `text` without the answers to our questions, which settle them. */
  private withoutReplies(chunk: string): string {
    if (this.repliesDue > 0 && this.now() > this.repliesUntil) this.repliesDue = 0;
    if (this.repliesDue === 0) return chunk;
    if (this.replyTailTimer !== null) clearTimeout(this.replyTailTimer);
    this.replyTailTimer = null;
    let text = this.replyTail + chunk;
    this.replyTail = '';
    for (let report = REPLY.exec(text); report !== null && this.repliesDue > 0; report = REPLY.exec(text)) {
      text = text.slice(0, report.index) + text.slice(report.index + report[0].length);
      this.repliesDue--;
      // A late one finds no waiter: it only comes out of the keys.
      if (this.cursorWaiter !== null) this.settleCursor({ row: Number(report[1]), col: Number(report[2]) });
    }
    const tail = this.repliesDue > 0 ? REPLY_START.exec(text) : null;
    if (tail !== null) {
      this.replyTail = tail[0];
      text = text.slice(0, tail.index);
      // Keys after all if the rest does not come.
      this.replyTailTimer = setTimeout(() => {
        this.replyTailTimer = null;
        const held = this.replyTail;
        this.replyTail = '';
        this.keys(held);
      }, REPLY_TAIL_MS);
    }
    return text;
  }

  private keys(text: string): void {
    const at = this.now();
    if (this.runs.awaitingEscape && at - this.lastKeysAt > ESCAPE_TIMEOUT_MS) this.runs.reset();
    this.lastKeysAt = at;
    for (const run of this.runs.feed(text)) {
      if (run.kind === 'text') this.emit('text', run.text);
      else this.emit('data', Buffer.from(run.text, 'utf8'));
    }
  }

  private deliver(segments: Segment[]): void {
    for (const s of segments) {
      if (s.kind === 'paste') {
        this.emit('paste', s);
        continue;
      }
      this.keys(this.withoutReplies(s.text));
    }
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.parser.waiting) {
      // A held ESC is let go at once if nothing follows; a paste gets longer, since
      // a big one can arrive in pieces over a slow link.
      this.timer = setTimeout(
        () => {
          this.timer = null;
          this.deliver(this.parser.release());
        },
        this.parser.pasting ? 1000 : 30,
      );
    }
  }
}
