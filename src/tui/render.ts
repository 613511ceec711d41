import type { WriteStream } from 'node:tty';
import pc from 'picocolors';
import { hereList, missedText, releasedText, resentText } from './events.js';
import type { ChatEvent, Who } from './events.js';
import { inert } from './sanitize.js';

/** picocolors' formatters, all of them plain when colour is off. */
export type Colors = ReturnType<typeof pc.createColors>;
type ColorName =
  'green' | 'yellow' | 'blue' | 'magenta' | 'cyan' | `${'green' | 'yellow' | 'blue' | 'magenta' | 'cyan'}Bright`;

/**
 * Whether to colour a terminal: never with NO_COLOR set (https://no-color.org),
 * always with FORCE_COLOR (other than 0/false), else when the terminal has
 * colours by Node's detection (TERM and friends), minus its rule about `CI`:
 * with CI=true and no known CI vendor it says "no colour", and the client must
 * look the same whether or not CI is set.
 */
export function useColor(env: NodeJS.ProcessEnv, terminal: Pick<WriteStream, 'getColorDepth'> | null): boolean {
  const no = env['NO_COLOR'];
  if (no !== undefined && no !== '') return false;
  const force = env['FORCE_COLOR'];
  if (force !== undefined) return force !== '0' && force !== 'false';
  if (terminal === null) return false;
  return terminal.getColorDepth(Object.fromEntries(Object.entries(env).filter(([k]) => k !== 'CI'))) > 1;
}

export function colors(enabled: boolean): Colors {
  return pc.createColors(enabled);
}

// Red is kept for warnings; plain blue is hard to read on a dark background.
const NICK_COLORS: readonly ColorName[] = [
  'green',
  'yellow',
  'magenta',
  'cyan',
  'greenBright',
  'yellowBright',
  'blueBright',
  'magentaBright',
  'cyanBright',
];

/**
 * A nick's colour: FNV-1a of the lowercased nick picks from the palette, so a
 * nick has the same colour in every session and for every member (the server
 * treats nicks case-insensitively, and so do the colours).
 */
export function nickColor(nick: string): ColorName {
  let h = 0x811c9dc5;
  for (const ch of nick.toLowerCase()) {
    h ^= ch.codePointAt(0) ?? 0;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return NICK_COLORS[h % NICK_COLORS.length] ?? 'cyan';
}

/** Local `HH:MM`. */
export function clock(ts: number): string {
  const d = new Date(ts);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

const NICK_CHAR = 'A-Za-z0-9_.-';

/** Matches `nick` as a word of its own (not inside a longer nick), any case. */
export function mentionPattern(nick: string): RegExp {
  const escaped = nick.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  return new RegExp(`(?<![${NICK_CHAR}])${escaped}(?![${NICK_CHAR}])`, 'gi');
}

export function mentions(text: string, nick: string): boolean {
  return mentionPattern(nick).test(text);
}

/** What the renderer needs to know about us. */
export interface RenderContext {
  c: Colors;
  /** Our nick, for mentions. */
  me: string;
}

/** Lines to print (styled, every piece from a peer inert), and whether one mentions us. */
export interface Rendered {
  lines: string[];
  mention: boolean;
}

/** A peer's name as shown: inert, in its colour, with ✓ once verified. */
export function styleNick(c: Colors, nick: string, w?: Pick<Who, 'trust'>): string {
  const mark = w?.trust === 'verified' ? c.green(' ✓') : w?.trust === 'changed' ? c.red(' !') : '';
  return `${c[nickColor(nick)](c.bold(inert(nick)))}${mark}`;
}

function tag(c: Colors, w: Who): string {
  return `${styleNick(c, w.nick, w)} ${c.dim(w.fingerprint)}`;
}

// Continuation lines of a multi-line message hang under a bar: no line of a
// peer's text can start at the left edge and pass for a message of its own.
const CONTINUATION = '      │ ';

/**
 * The lines of one message: the first after its header, the rest as
 * continuation lines; each line inert, our nick highlighted in others' text.
 */
function body(ctx: RenderContext, head: string, text: string, highlight: boolean): string[] {
  const { c } = ctx;
  const pattern = highlight ? mentionPattern(ctx.me) : null;
  const lines = text.split('\n').map((line) => {
    const safe = inert(line);
    return pattern === null ? safe : safe.replace(pattern, (m) => c.bold(c.inverse(m)));
  });
  return lines.map((line, i) => (i === 0 ? `${head}${line}` : `${c.dim(CONTINUATION)}${line}`));
}

/** One of our own messages, as we show it when it is sent. */
export function renderOwn(ctx: RenderContext, text: string, action: boolean, ts: number): string[] {
  const { c } = ctx;
  const name = c[nickColor(ctx.me)](c.bold(inert(ctx.me)));
  const head = action ? `${c.dim(clock(ts))} * ${name} ` : `${c.dim(clock(ts))} <${name}> `;
  return body(ctx, head, text, false);
}

/** A local notice: `HH:MM * text` (or `!` and red for warnings). */
export function renderNotice(
  ctx: RenderContext,
  text: string,
  level: 'info' | 'warn' = 'info',
  ts = Date.now(),
): string {
  const { c } = ctx;
  return level === 'warn' ? `${c.dim(clock(ts))} ${c.red(`! ${text}`)}` : `${c.dim(clock(ts))} ${c.dim('*')} ${text}`;
}

/**
 * One event as the interactive client shows it, or null for events it shows
 * another way (`reconnect`: the prompt and a notice of its own). Everything that
 * came from the network (nicks, texts, server messages) is made inert here.
 */
export function renderEvent(event: ChatEvent, ctx: RenderContext): Rendered | null {
  const { c } = ctx;
  const one = (line: string): Rendered => ({ lines: [line], mention: false });
  const warn = (text: string): Rendered => one(renderNotice(ctx, text, 'warn', event.ts));
  const info = (text: string): Rendered => one(renderNotice(ctx, text, 'info', event.ts));
  switch (event.type) {
    case 'invite':
      return {
        lines: [
          renderNotice(ctx, `invite: ${c.bold(inert(event.link))}`, 'info', event.ts),
          renderNotice(ctx, 'send it over a channel you trust: anyone with it can read this room', 'info', event.ts),
        ],
        mention: false,
      };
    case 'joined': {
      const me = `${styleNick(c, event.nick)} ${c.dim(event.fingerprint)}`;
      return info(
        event.members.length === 0
          ? `joined as ${me}; nobody else is here yet`
          : `joined as ${me}; here: ${hereList(event.members, (m) => tag(c, m), ' (/who)')}`,
      );
    }
    case 'message': {
      const fromOther = !event.own && event.nick.toLowerCase() !== ctx.me.toLowerCase();
      // History is marked, and never rings the bell: it was said while you were away.
      const time = event.history ? c.dim(`${clock(event.ts)} ·`) : c.dim(clock(event.ts));
      // Under our nick but not signed by us (the nick's earlier owner, in history): the
      // fingerprint tells it from our own lines, which look the same otherwise.
      const name = event.own || fromOther ? styleNick(c, event.nick, event) : tag(c, event);
      const head = event.action ? `${time} * ${name} ` : `${time} <${name}> `;
      const lines = body(ctx, head, event.text, fromOther);
      if (event.warning === 'history-mismatch') {
        lines.push(renderNotice(ctx, `${inert(event.nick)} showed others a different history`, 'warn', event.ts));
      }
      return { lines, mention: fromOther && !event.history && mentions(event.text, ctx.me) };
    }
    case 'sent':
      return { lines: renderOwn(ctx, event.text, false, event.ts), mention: false };
    case 'missed':
      return warn(missedText(event.count));
    case 'resent':
      return info(resentText(event.count));
    case 'released':
      return info(releasedText(inert(event.nick), event.count, event.dropped));
    case 'join':
      return info(`${tag(c, event)} joined`);
    case 'leave':
      return info(`${styleNick(c, event.nick)} left${event.reason === 'left' ? '' : ' (connection lost)'}`);
    case 'rejected':
      return warn(
        `rejected a message relayed as ${inert(event.nick)} (#${event.seq}): ${event.reason}: ${inert(event.message)}`,
      );
    case 'gap':
      return warn(
        `${event.missing} message${event.missing === 1 ? '' : 's'} from ${inert(event.nick)} ${event.fingerprint} never reached you (sent while you were away, or dropped by the relay)`,
      );
    case 'key-changed': {
      const nick = inert(event.nick);
      return {
        lines: [
          renderNotice(
            ctx,
            `WARNING: the key of ${nick} changed (was ${event.oldFingerprint}, now ${event.newFingerprint}). ` +
              `It may be a new install, or someone posing as ${nick}.`,
            'warn',
            event.ts,
          ),
          renderNotice(
            ctx,
            `Sending here is blocked until you decide: /verify ${nick} to compare the new key, /accept ${nick} to accept it, or /quit.`,
            'warn',
            event.ts,
          ),
        ],
        mention: false,
      };
    }
    case 'disconnect': {
      const why = event.message !== null ? ` (${inert(event.message)})` : '';
      return warn(
        event.reconnecting
          ? `connection lost${why}; reconnecting. What you type is sent once it is back.`
          : `connection lost${why}; not reconnecting. /quit and join again.`,
      );
    }
    case 'reconnect':
      return null;
    case 'error':
      return warn(`${event.code}: ${inert(event.message)}`);
  }
}
