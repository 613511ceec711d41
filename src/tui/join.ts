import { fstatSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ReadStream, WriteStream } from 'node:tty';
import { ClientError, MAX_TEXT, Outcomes } from '../client/index.js';
import type { ConfabClient } from '../client/index.js';
import { formatLine, formatNotice, JoinBurst, moreJoinedText } from './events.js';
import type { ChatEvent } from './events.js';
import { runInteractive } from './interactive.js';
import { LineCap } from './line-cap.js';
import { inert } from './sanitize.js';
import { complain, enter, ExitCode, GIVE_UP_MS, prepare } from './session.js';
import type { JoinIO, JoinOptions } from './session.js';

export { ExitCode } from './session.js';
export type { JoinIO, JoinOptions } from './session.js';

// Line mode keeps at most this many messages in flight before it waits.
const WINDOW = 256;

/**
 * Runs `confab join`. With a terminal on both stdin and stdout (and no
 * `--json`) that is the interactive client; otherwise line mode: stdin lines
 * are messages, events go to stdout (plain or JSON lines), notices and errors
 * to stderr. A `TERM=dumb` terminal (an editor's shell buffer) can't move its
 * cursor, so it gets line mode too. Resolves with the exit code.
 */
export async function runJoin(options: JoinOptions, io: JoinIO): Promise<number> {
  const { stdin, stdout } = io;
  if (!options.json && stdin instanceof ReadStream && stdout instanceof WriteStream && io.env['TERM'] !== 'dumb') {
    return runInteractive(options, { ...io, stdin, stdout });
  }
  return runLines(options, io);
}

/**
 * Settles once the server has answered nothing the end of a run waits for
 * (an acknowledgement, a message of the catch-up) for `ms` straight, counting
 * from now: whether it is unreachable, or connected and never answering (a
 * reconnect is not progress, or a server that takes connections and answers
 * nothing would be waited on for ever). Never for 0.
 */
function stalledFor(client: ConfabClient, ms: number): { done: Promise<void>; stop(): void } {
  let fire: () => void = () => {};
  const done = new Promise<void>((resolve) => (fire = resolve));
  if (ms <= 0) return { done, stop: () => {} };
  let last = Date.now();
  let pending = client.pending;
  const moved = (): void => void (last = Date.now());
  // Every message of the room, history or live, moves the cursor.
  client.on('cursor', moved);
  const timer = setInterval(
    () => {
      if (client.pending < pending) moved();
      pending = client.pending;
      if (Date.now() - last >= ms) fire();
    },
    Math.min(1000, Math.max(50, ms / 4)),
  );
  return {
    done,
    stop: () => {
      clearInterval(timer);
      client.off('cursor', moved);
    },
  };
}

function isDirectory(fd: number): boolean {
  try {
    return fstatSync(fd).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Line mode. Resolves once input has ended and every message sent is
 * acknowledged.
 */
async function runLines(options: JoinOptions, io: JoinIO): Promise<number> {
  const session = prepare(options, io);
  if (typeof session === 'number') return session;
  // Node reads a directory on stdin (`< /tmp`) as empty input: say so rather than join and send nothing.
  if (io.stdin === process.stdin && isDirectory(0)) {
    complain(io.stderr, 'could not read the input: standard input is a directory');
    return ExitCode.FAILURE;
  }
  const { nick } = session;
  // Ctrl-C / SIGTERM at any point: stop reading, don't wait for
  // acknowledgements, leave cleanly. Listening from the start, so a signal
  // during connect or join is handled too.
  let interrupted: number | null = null;
  let wake: () => void = () => {};
  const interruption = new Promise<void>((resolve) => (wake = resolve));
  let stopReading = (): void => {};
  const entering = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted = signal === 'SIGTERM' ? ExitCode.TERMINATED : ExitCode.INTERRUPTED;
    entering.abort();
    wake();
    stopReading();
    io.stdin.destroy();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const joins = new JoinBurst((count) => io.stdout.write(`* ${moreJoinedText(count)}\n`));
  const finish = async (code: number, client?: ConfabClient): Promise<number> => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await client?.close();
    joins.flush(); // last: joins read while leaving are counted too
    return interrupted ?? code;
  };

  // Whoever read our output has gone (`| head -1`, taking the invite link):
  // nothing more is shown, but the input is still sent, as it would be into
  // /dev/null, and the exit code still says whether all of it was delivered.
  let outputGone = false;
  // Output that fails otherwise (a full disk under a logger's `>> room.jsonl`)
  // ends the run, cleanly: it stops reading and exits 1. Before, it was thrown
  // from the stream, and the process died with a stack trace.
  const output: { failed: Error | null } = { failed: null };
  const onOutputError = (err: NodeJS.ErrnoException): void => {
    outputGone = true;
    if (err.code === 'EPIPE' || output.failed !== null) return;
    output.failed = err;
    stopReading();
  };
  // Left in place when the run ends: a write's EPIPE can come after it.
  io.stdout.on('error', onOutputError);

  const emit = (event: ChatEvent): void => {
    if (outputGone) return;
    if (options.json) {
      io.stdout.write(`${JSON.stringify(event)}\n`);
      return;
    }
    if (!joins.admit(event)) return;
    const line = formatLine(event, inert);
    if (line !== null) io.stdout.write(`${line}\n`);
    const notice = formatNotice(event, inert);
    if (notice !== null) io.stderr.write(`${notice}\n`);
  };

  const entered = await enter(session, emit, io.stderr, entering.signal);
  if (typeof entered === 'number') return finish(entered);
  const { client, room } = entered;
  if (!options.json) {
    io.stderr.write(
      'confab: end-to-end encrypted. Anyone with the invite link can read this room; to remove someone, start a new room.\n',
    );
  }

  // Input that fails while read (ECONNRESET on a socket): readline passes the
  // error on to its lines, which end the loop below; kept here for the exit code.
  // Not closed on it: closing drops the loop's own listener before readline has
  // passed the error on, and an error nobody listens for ends the process.
  const input: { failed: Error | null } = { failed: null };
  const capped = new LineCap(MAX_TEXT + 1);
  io.stdin.on('error', (err) => capped.destroy(err));
  io.stdin.pipe(capped);
  const lines = createInterface({ input: capped, crlfDelay: Infinity, terminal: false });
  // Closed, readline pauses what it reads, which is not stdin: stdin is paused here, as it
  // was when readline read it, or a pipe still open kept the process alive.
  lines.on('close', () => {
    io.stdin.unpipe(capped);
    io.stdin.pause();
  });
  lines.on('error', (err: Error) => {
    input.failed ??= err;
  });
  // The connection lost for good (the client stops reconnecting: a protocol
  // error, an unsupported server), or the room (a rejoin refused for good):
  // nothing more read could be sent. Reading on would leave a logger fed by
  // `sleep infinity` running for ever, connected to nothing.
  let lost = false;
  const loseRoom = (): void => {
    if (lost) return;
    lost = true;
    lines.close();
  };
  const onDisconnect = (d: { willReconnect: boolean }): void => {
    if (!d.willReconnect) loseRoom();
  };
  const onClientError = (): void => {
    if (!client.isMember(room.keys.roomId)) loseRoom();
  };
  client.on('disconnect', onDisconnect);
  client.on('error', onClientError);
  // A readline closed before its iteration starts is never done iterating: not started at all then.
  const reading = interrupted === null && !client.gone && client.isMember(room.keys.roomId);
  if (!reading) {
    lost = interrupted === null;
    lines.close();
  }
  stopReading = () => lines.close();

  let failed = 0;
  /** A failure of the run: an `error` event, and exit 1. */
  const fail = (code: string, message: string, text?: string): void => {
    failed++;
    emit({ type: 'error', code, message, ...(text !== undefined ? { text } : {}), ts: Date.now() });
  };
  // Each line's own outcome, counted: the client's settled() can resolve before
  // the rejection of the last one has reached its handler here (it passes
  // through SecureRoom), and the exit code would miss it.
  const outcomes = new Outcomes();
  // A server that answers nothing for longer than giveUpMs ends the wait: a script does not hang on it.
  const giveUpMs = options.giveUpMs ?? GIVE_UP_MS;
  /** Waits for `done`; true if the server answered nothing for giveUpMs first (the run gives up). */
  const givesUpBefore = async (done: Promise<unknown>): Promise<boolean> => {
    const stall = stalledFor(client, giveUpMs);
    const stalled = await Promise.race([
      done.then(() => false),
      interruption.then(() => false),
      stall.done.then(() => true),
    ]);
    stall.stop();
    return stalled;
  };
  /** Whether the run gave up, waiting with the window full (below) or at the end of the input. */
  let gaveUp = false;
  try {
    for await (const line of reading ? lines : []) {
      if (line.trim() === '') continue;
      if (client.pending >= WINDOW) {
        // Counted here too: with the window full and no server, `seq 1 1000 |` never reached
        // the end of its input, where the give-up was counted, and waited for ever.
        gaveUp = await givesUpBefore(client.settled());
      }
      if (interrupted !== null || gaveUp) break;
      const outcome = room.send(line).then(
        (ack) => {
          if (options.json) emit({ type: 'sent', nick, text: line, seq: ack.seq, ts: ack.ts });
        },
        (e: unknown) => {
          if (e instanceof ClientError && e.code === 'CLOSED') return;
          // Not a ClientError: the outbox entry could not be written (a full disk), so it was not sent.
          // With the line: a script can't tell which one failed from the order, since a
          // refusal can come before the `sent` of an earlier line.
          if (e instanceof ClientError) fail(e.code, e.message, line);
          else fail('SAVE_FAILED', `not sent: ${e instanceof Error ? e.message : String(e)}`, line);
        },
      );
      outcomes.add(outcome);
    }
  } catch {
    // stdin destroyed by a signal: fall through to a clean leave
  }
  if (output.failed !== null) {
    failed++;
    io.stderr.write(`confab: could not write the output: ${inert(output.failed.message)}; stopped reading\n`);
  }
  if (input.failed !== null) {
    // Input that could not be read is a run that did not send what it was given:
    // the lines read before are still delivered, and it exits 1.
    fail('INPUT_FAILED', `could not read the input: ${input.failed.message}`);
  }
  // Every send of this run is a line's or a resend's: once both have settled, so has the client.
  // And the history the join fetched (the backlog, or what was said while away) is all
  // printed before leaving: `confab join LINK --backlog 1000 < /dev/null` dumps the room.
  gaveUp ||= await givesUpBefore(
    Promise.all([outcomes.settled(), room.resendsSettled(), client.caughtUp(room.keys.roomId)]),
  );
  client.off('disconnect', onDisconnect);
  client.off('error', onClientError);
  if (gaveUp && interrupted === null) {
    const kept = room.state.outbox().length;
    fail(
      'DISCONNECTED',
      `gave up after ${Math.round(giveUpMs / 1000)} s ` +
        (client.connected ? 'without an answer from the server' : 'without a connection to the server') +
        (kept > 0 ? `; ${kept} message${kept === 1 ? '' : 's'} kept, sent at the next confab join of this room` : ''),
    );
  }
  room.state.flush();
  // A message of an earlier session refused when sent again fails this run as a new one would.
  // ... and so does one kept again, not delivered this run either. And a run that lost
  // its connection or its room for good did not do what it was asked.
  const bad = failed + room.resendsRefused + room.resendsKept > 0 || lost;
  return finish(bad ? ExitCode.FAILURE : ExitCode.OK, client);
}
