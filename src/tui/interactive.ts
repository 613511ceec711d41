import type { ReadStream, WriteStream } from 'node:tty';
import {
  MAX_TEXT,
  ClientError,
  groupDigits,
  isValidNick,
  keptInOutbox,
  markVerified,
  safetyNumber,
  shortFingerprint,
} from '../client/index.js';
import type { ConfabClient, SecureRoom } from '../client/index.js';
import { complete, helpLines, parseInput } from './commands.js';
import { hereList, JoinBurst, moreJoinedText } from './events.js';
import type { ChatEvent } from './events.js';
import { MAX_PASTE, unpaste } from './paste.js';
import { colors, nickColor, renderEvent, renderNotice, renderOwn, styleNick, useColor } from './render.js';
import type { RenderContext } from './render.js';
import { inert } from './sanitize.js';
import { Screen } from './screen.js';
import { enter, ExitCode, prepare } from './session.js';
import type { JoinIO, JoinOptions, Session } from './session.js';

/** `confab join`'s streams when both ends are a terminal. */
export interface TtyIO extends JoinIO {
  stdin: ReadStream;
  stdout: WriteStream;
}

/** How long /quit and Ctrl-D wait for the server to acknowledge what was sent. */
const QUIT_WAIT_MS = 5000;
/** Members `/who` lists, each with its fingerprint; past them it counts. */
export const WHO_LINES = 50;

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64url');
const unb64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'base64url'));

/**
 * The interactive client: connects and joins like line mode, then runs a
 * Screen (the input line at the bottom, the room above it) until /quit,
 * Ctrl-D, Ctrl-C or a signal. Resolves with the exit code.
 */
export async function runInteractive(options: JoinOptions, io: TtyIO): Promise<number> {
  const session = prepare(options, io);
  if (typeof session === 'number') return session;
  const ctx: RenderContext = { c: colors(useColor(io.env, io.stdout)), me: session.nick };

  // Until the screen starts, the terminal is in its usual mode: Ctrl-C is a signal.
  let signalled: number | null = null;
  const entering = new AbortController();
  const onEarlySignal = (signal: NodeJS.Signals): void => {
    signalled = signal === 'SIGTERM' ? ExitCode.TERMINATED : ExitCode.INTERRUPTED;
    entering.abort();
  };
  process.once('SIGINT', onEarlySignal);
  process.once('SIGTERM', onEarlySignal);
  io.stdout.write(`${renderNotice(ctx, `connecting to ${inert(session.invite.host)}:${session.invite.port}`)}\n`);
  const early: ChatEvent[] = [];
  let show = (event: ChatEvent): void => {
    early.push(event);
  };
  const entered = await enter(session, (event) => show(event), io.stderr, entering.signal);
  process.off('SIGINT', onEarlySignal);
  process.off('SIGTERM', onEarlySignal);
  if (typeof entered === 'number') return signalled ?? entered;
  if (signalled !== null) {
    await entered.client.close();
    return signalled;
  }
  return new Chat(session, entered.client, entered.room, ctx, options, io).run(early, (s) => (show = s));
}

type Link = 'connected' | 'reconnecting' | 'offline';

/** One interactive session in a joined room. */
class Chat {
  private readonly session: Session;
  private readonly client: ConfabClient;
  private readonly room: SecureRoom;
  private readonly ctx: RenderContext;
  private readonly options: JoinOptions;
  private readonly screen: Screen;
  private readonly roomTag: string;
  private readonly joins = new JoinBurst((count) => this.info(moreJoinedText(count, ' (/who lists who is here)')));
  private link: Link = 'connected';
  private inRoom = true;
  /** The refusal that put us out of the room was just shown: the reconnect that follows needs no notice of its own. */
  private refusalShown = false;
  /** While /nick leaves and rejoins, sends wait for it (never rejects). */
  private renaming: Promise<void> | null = null;
  private quitting = false;
  private finish: (code: number) => void = () => {};
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    if (signal === 'SIGHUP') {
      // The terminal is gone: nothing to draw on, just leave.
      this.screen.abandon();
      void this.leave(ExitCode.HANGUP);
      return;
    }
    void this.quit(signal === 'SIGTERM' ? ExitCode.TERMINATED : ExitCode.INTERRUPTED, false);
  };

  constructor(
    session: Session,
    client: ConfabClient,
    room: SecureRoom,
    ctx: RenderContext,
    options: JoinOptions,
    io: TtyIO,
  ) {
    this.session = session;
    this.client = client;
    this.room = room;
    this.ctx = ctx;
    this.options = options;
    this.roomTag = `#${session.roomHex.slice(0, 6)}`;
    this.screen = new Screen({
      input: io.stdin,
      output: io.stdout,
      prompt: this.prompt(),
      completer: (line) =>
        complete(
          line,
          room.who().map((m) => m.nick),
        ),
      onLine: (line) => this.onLine(line),
      onQuit: (reason) => void this.quit(reason === 'interrupt' ? ExitCode.INTERRUPTED : ExitCode.OK, reason === 'eof'),
      onPaste: (paste) => {
        if (paste.truncated) {
          this.warn(`the paste was cut to the longest message: ${MAX_PASTE} characters or ${MAX_TEXT} bytes`);
        }
      },
    });
  }

  run(early: ChatEvent[], listen: (show: (event: ChatEvent) => void) => void): Promise<number> {
    return new Promise((resolve) => {
      this.finish = resolve;
      for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, this.onSignal);
      this.client.on('reconnect', (r) => {
        if (!r.rooms.some((x) => b64(x.room) === b64(this.room.keys.roomId))) {
          // Out of the room (a /nick cut off): the connection alone is back, and /nick is the way in.
          if (this.inRoom || this.renaming !== null) return;
          this.link = 'connected';
          if (!this.refusalShown) this.info('reconnected, but not in the room: /nick NAME joins it again');
          this.refusalShown = false;
          this.updatePrompt();
          return;
        }
        this.link = 'connected';
        const here = this.room.who();
        this.info(
          here.length === 0
            ? 'reconnected; nobody else is here'
            : `reconnected; here: ${hereList(here, (m) => styleNick(this.ctx.c, m.nick, m), ' (/who)')}`,
        );
        this.updatePrompt();
      });
      this.screen.start();
      for (const event of early) this.show(event);
      listen((event) => this.show(event));
      this.info('end-to-end encrypted: anyone with the invite link can read this room.');
      this.info('To remove someone, start a new room (this version has no re-keying).');
      this.info('/help lists the commands. Tab completes, ↑ recalls, Ctrl-D leaves.');
    });
  }

  private show(event: ChatEvent): void {
    // The notice of the lost connection that follows says it.
    if (event.type === 'error' && event.code === 'SERVER_SHUTDOWN') return;
    if (!this.joins.admit(event)) return;
    if (event.type === 'disconnect') {
      this.link = event.reconnecting ? 'reconnecting' : 'offline';
      this.refusalShown = false;
    }
    const shown = renderEvent(event, this.ctx);
    if (shown !== null) this.screen.print(shown.lines, this.options.bell === true && shown.mention);
    if (
      event.type === 'error' &&
      this.inRoom &&
      this.renaming === null &&
      !this.client.isMember(this.room.keys.roomId)
    ) {
      // The server would not take us back into the room after a reconnect: the client gave it up.
      this.inRoom = false;
      this.refusalShown = true;
      this.warn(
        'you are out of the room: the server refused to let you back in. /nick NAME joins as someone else; /quit leaves.',
      );
    }
    this.updatePrompt();
  }

  private prompt(): string {
    const { c } = this.ctx;
    const unsent = this.client.pending;
    let state: string;
    if (!this.inRoom) state = c.red('not in the room');
    else if (this.link === 'connected') state = c.green('connected');
    else state = this.link === 'reconnecting' ? c.yellow('reconnecting') : c.red('offline');
    const extra = this.link !== 'connected' && unsent > 0 ? `, ${unsent} unsent` : '';
    return `${c.dim(this.roomTag)} ${c[nickColor(this.room.nick)](c.bold(this.room.nick))} (${state}${extra})> `;
  }

  private updatePrompt(): void {
    this.screen.setPrompt(this.prompt());
  }

  private info(text: string): void {
    this.screen.print([renderNotice(this.ctx, text)]);
  }

  private warn(text: string): void {
    this.screen.print([renderNotice(this.ctx, text, 'warn')]);
  }

  /** Output of a command: indented, no timestamp. */
  private say(lines: readonly string[]): void {
    this.screen.print(lines.map((l) => `  ${l}`));
  }

  private onLine(line: string): void {
    if (this.quitting) return;
    const input = parseInput(unpaste(line));
    switch (input.kind) {
      case 'empty':
        return;
      case 'text':
        this.send(input.text, 'text');
        return;
      case 'unknown':
        this.warn(
          `unknown command /${inert(input.name)}${input.suggestion !== null ? ` (did you mean /${input.suggestion}?)` : ''}: ` +
            `not sent. /help lists commands; ${input.name === '' ? 'a line that starts with // is sent as text, without one /' : `//${inert(input.name)} sends it as text`}.`,
        );
        return;
      case 'usage':
        this.warn(`${input.usage} (not run: too many words)`);
        return;
      case 'command':
        void this.command(input.name, input.args, input.rest);
    }
  }

  private async command(name: string, args: string[], rest: string): Promise<void> {
    switch (name) {
      case 'help':
        this.say(helpLines(args[0]));
        return;
      case 'who':
        this.say(this.whoLines());
        return;
      case 'me':
        if (rest.trim() === '') this.say(['usage: /me ACTION, for example /me waves']);
        else this.send(rest, 'action');
        return;
      case 'nick':
        await this.rename(args[0]);
        return;
      case 'invite':
        this.say([
          `invite: ${this.ctx.c.bold(this.session.link)}`,
          'Anyone with this link can join and read the room: send it over a channel you trust.',
        ]);
        return;
      case 'verify':
        this.verify(args);
        return;
      case 'accept':
        this.accept(args[0]);
        return;
      case 'clear':
        this.screen.clear();
        return;
      case 'quit':
        await this.quit(ExitCode.OK, true);
        return;
    }
  }

  private send(text: string, kind: 'text' | 'action'): void {
    const blocked = this.room.blockedBy();
    if (blocked.length > 0) {
      const nick = inert(blocked[0] ?? '');
      this.warn(
        `not sent: the key of ${blocked.map(inert).join(', ')} changed. Compare it (/verify ${nick}) and accept it ` +
          `(/accept ${nick}) to send again; ↑ recalls your line.`,
      );
      return;
    }
    if (!this.inRoom) {
      this.warn('not sent: you are not in the room. /nick NAME joins it again; /quit leaves.');
      return;
    }
    // Before it is shown as sent: two pastes, each cut to the limit, or a paste
    // and typing, make a line over it, which was echoed and then refused.
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > MAX_TEXT) {
      this.warn(`not sent: the line is ${bytes} bytes of UTF-8, over the longest message (${MAX_TEXT}); ↑ recalls it`);
      return;
    }
    // During a /nick the line goes out under whichever nick the rename leaves us
    // with: shown then, under it (shown at once, it read as the old nick's while
    // the others got it from the new one).
    const echo = (): void => this.screen.print(renderOwn(this.ctx, text, kind === 'action', Date.now()));
    let sending: Promise<unknown>;
    if (this.renaming === null) {
      echo();
      sending = this.room.send(text, kind);
    } else {
      sending = this.renaming.then(() => {
        echo();
        return this.room.send(text, kind);
      });
    }
    this.updatePrompt();
    void sending.then(
      () => this.updatePrompt(),
      (e: unknown) => {
        if (e instanceof ClientError && e.code === 'CLOSED') return;
        const code = e instanceof ClientError ? `${e.code}: ` : '';
        const first = text.split('\n')[0] ?? '';
        const shown = first.length > 40 ? `${first.slice(0, 40)}…` : first;
        const why = `${code}${inert(e instanceof Error ? e.message : String(e))}`;
        // Still in the outbox (a /nick that left first, a lost connection): it goes out at the next join,
        // and "not sent" would have the user type it again, twice for everyone.
        // Offline: the client no longer reconnects, so not before the next confab join.
        const when = this.link === 'offline' ? 'when you next join this room' : 'when you are back in the room';
        if (keptInOutbox(e)) this.warn(`not delivered yet ("${inert(shown)}"): ${why}; kept, and sent ${when}`);
        else this.warn(`not sent ("${inert(shown)}"): ${why}`);
        this.updatePrompt();
      },
    );
  }

  private whoLines(): string[] {
    const { c } = this.ctx;
    // The last list heard is not the room's any more once we are out of it.
    if (!this.inRoom) return ['you are not in the room. /nick NAME joins it again; /quit leaves.'];
    const members = this.room.who().sort((a, b) => a.nick.localeCompare(b.nick));
    const lines = [
      `${members.length + 1} here:`,
      `${styleNick(c, this.room.nick)} ${c.dim(shortFingerprint(this.client.identity.publicKey))} (you)`,
    ];
    // Each line computes a fingerprint (tens of ms): a huge room is listed in part.
    for (const m of members.slice(0, WHO_LINES)) {
      const pin = this.room.state.pin(m.nick);
      const key = b64(m.key);
      let mark = c.dim('not verified');
      if (pin?.key === key && pin.verified) mark = c.green('✓ verified');
      else if (pin !== undefined && pin.key !== key) {
        const nick = inert(m.nick);
        mark = c.red(`! key changed: compare it (/verify ${nick}), then /accept ${nick}`);
      }
      lines.push(`${styleNick(c, m.nick)} ${c.dim(m.fingerprint)} ${mark}`);
    }
    if (members.length > WHO_LINES) lines.push(`and ${members.length - WHO_LINES} more, not listed`);
    return lines;
  }

  private verify(args: string[]): void {
    const [nick, answer] = args;
    // As the command names are: /VERIFY bob YES is the same.
    const yes = answer?.toLowerCase() === 'yes' || answer?.toLowerCase() === '--yes';
    if (nick === undefined || (answer !== undefined && !yes) || args.length > 2) {
      this.say(['usage: /verify NICK, then /verify NICK yes once the safety numbers match']);
      return;
    }
    const shown = inert(nick);
    const pin = this.room.state.pin(nick);
    if (pin === undefined) {
      this.say([`no key is known for ${shown} in this room (have they been here while you were?)`]);
      return;
    }
    if (yes) {
      if (!markVerified(this.room.state, nick)) {
        this.say([
          `the key of ${shown} changed and is not accepted: compare the new one (/verify ${shown}), then /accept ${shown}`,
        ]);
        return;
      }
      this.say([`marked the key of ${shown} (${shortFingerprint(unb64(pin.key))}) verified ${this.ctx.c.green('✓')}`]);
      return;
    }
    const key = unb64(pin.pending ?? pin.key);
    const groups = groupDigits(safetyNumber(this.client.identity.publicKey, key)).split(' ');
    const rows: string[] = [];
    for (let i = 0; i < groups.length; i += 4) rows.push(`  ${groups.slice(i, i + 4).join(' ')}`);
    if (pin.pending !== undefined) {
      this.say([
        `the key of ${shown} changed; the safety number for the NEW key (${shortFingerprint(key)}):`,
        ...rows,
        `Compare it with ${shown} in person or by voice: they see the same number.`,
        `If it matches: /accept ${shown}, then /verify ${shown} yes`,
      ]);
      return;
    }
    this.say([
      `safety number with ${shown} (${shortFingerprint(key)}, ${pin.verified ? 'verified ✓' : 'not verified'}):`,
      ...rows,
      `Compare it with ${shown} in person or by voice: they see the same number.`,
      pin.verified ? 'You marked this key verified already.' : `If it matches: /verify ${shown} yes`,
    ]);
  }

  private accept(nick: string | undefined): void {
    if (nick === undefined) {
      this.say(['usage: /accept NICK']);
      return;
    }
    const shown = inert(nick);
    const pending = this.room.state.pin(nick)?.pending;
    if (pending === undefined) {
      this.say([`no key change is waiting for ${shown}`]);
      return;
    }
    // Said first: accepting shows at once what the key sent while it waited.
    this.say([
      `accepted the new key of ${shown} (${shortFingerprint(unb64(pending))}); you can send again. It is not verified: compare safety numbers with /verify ${shown}`,
    ]);
    this.room.accept(nick);
  }

  private async rename(nick: string | undefined): Promise<void> {
    if (nick === undefined) {
      this.say(['usage: /nick NEW']);
      return;
    }
    const shown = inert(nick);
    if (!isValidNick(nick)) {
      this.say([`"${shown}" is not a nick: use 1 to 24 of A-Z a-z 0-9 _ . -`]);
      return;
    }
    if (this.inRoom && nick === this.room.nick) {
      this.say([`you are already ${shown}`]);
      return;
    }
    if (this.room.who().some((m) => m.nick.toLowerCase() === nick.toLowerCase())) {
      this.say([`${shown} is taken in this room`]);
      return;
    }
    // The connection is enough, rejoined or not: out of the room, or while
    // the rejoin is refused (NICK_TAKEN, maybe for good: the same key uses the
    // nick elsewhere), this is the way back in, and it ends the retries.
    if (this.renaming !== null || !this.client.connected) {
      this.say([this.renaming !== null ? 'already changing nick' : 'you can change nick once the connection is back']);
      return;
    }
    const old = this.room.nick;
    const work = (async (): Promise<void> => {
      // What the client has not written when we leave waits for the join and is
      // sealed again under the new nick: let it go out as it is first.
      if (this.client.pending > 0) await Promise.race([this.client.settled(), delay(QUIT_WAIT_MS)]);
      await this.room.rename(nick);
    })();
    this.renaming = work.catch(() => undefined);
    try {
      await work;
      this.ctx.me = this.room.nick;
      this.info(`you are now ${styleNick(this.ctx.c, this.room.nick)} (was ${inert(old)})`);
    } catch (e) {
      const code = e instanceof ClientError ? e.code : '';
      const why = e instanceof Error ? e.message : String(e);
      this.warn(
        code === 'NICK_TAKEN'
          ? `${shown} is taken in this room; you are still ${inert(this.room.nick)}`
          : `could not change nick: ${code === '' ? '' : `${code}: `}${inert(why)}`,
      );
    } finally {
      // In the room under the new nick, or refused and back under the old one
      // (joined just now, whatever a reconnect had said), or out of it.
      this.inRoom = this.client.isMember(this.room.keys.roomId);
      if (this.inRoom && this.client.connected) this.link = 'connected';
      this.renaming = null;
      this.updatePrompt();
    }
  }

  /**
   * Leaves: waits (a little) for unacknowledged messages if asked, says what
   * was not delivered, gives the terminal back, closes the connection (others
   * see us leave).
   */
  private async quit(code: number, wait: boolean): Promise<void> {
    if (this.quitting) return;
    this.quitting = true;
    if (wait && this.client.connected && this.client.pending > 0) {
      this.info(`delivering ${this.client.pending} message${this.client.pending === 1 ? '' : 's'}…`);
      await Promise.race([this.client.settled(), delay(QUIT_WAIT_MS)]);
    }
    // The outbox, not the client's count: once the client has stopped reconnecting
    // it holds no sends, and the room's unacknowledged messages are all kept there.
    const unsent = this.room.state.outbox().length;
    const lines: string[] = [];
    if (unsent > 0)
      lines.push(
        renderNotice(
          this.ctx,
          `${unsent} message${unsent === 1 ? ' is' : 's are'} not delivered yet: kept, and sent when you next join this room`,
          'warn',
        ),
      );
    lines.push(renderNotice(this.ctx, `left ${this.roomTag}`));
    this.joins.flush(); // while the screen still prints, after the wait for deliveries
    this.screen.close(lines);
    await this.leave(code);
  }

  private async leave(code: number): Promise<void> {
    this.quitting = true;
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(signal, this.onSignal);
    await this.client.close();
    this.room.state.flush();
    this.finish(code);
  }
}
