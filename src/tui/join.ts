import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import {
  ClientError,
  connect,
  ensureHome,
  formatInvite,
  inviteRoomId,
  InviteError,
  isValidNick,
  newInvite,
  parseAddress,
  parseInvite,
  resolveHome,
} from '../client/index.js';
import type { ConfabClient, Invite } from '../client/index.js';
import { formatLine, formatNotice } from './events.js';
import type { ChatEvent } from './events.js';
import { inert } from './sanitize.js';

/** What `confab join` was asked to do. */
export interface JoinOptions {
  /** An invite link, or HOST[:PORT] to create a new room there. */
  target: string;
  nick?: string;
  json: boolean;
  home?: string;
}

/** The process's streams and environment, injected so tests can drive them. */
export interface JoinIO {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

export const ExitCode = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  INTERRUPTED: 130,
} as const;

// Line mode keeps at most this many messages in flight before it waits.
const WINDOW = 256;

const textDecoder = new TextDecoder();
const textEncoder = new TextEncoder();

/**
 * Runs `confab join` in line mode: stdin lines are messages, events go to
 * stdout (plain or JSON lines), notices and errors to stderr. Resolves with the
 * exit code once input has ended and every message sent is acknowledged.
 */
export async function runJoin(options: JoinOptions, io: JoinIO): Promise<number> {
  const err = (line: string): void => {
    io.stderr.write(`confab: ${line}\n`);
  };
  let invite: Invite;
  let created = false;
  try {
    if (options.target.startsWith('confab://')) {
      invite = parseInvite(options.target);
    } else {
      const { host, port } = parseAddress(options.target);
      invite = newInvite(host, port);
      created = true;
    }
  } catch (e) {
    if (e instanceof InviteError) {
      err(e.message);
      return ExitCode.USAGE;
    }
    throw e;
  }
  const nick = options.nick ?? defaultNick(io.env);
  if (!isValidNick(nick)) {
    err(`invalid nick "${inert(nick)}": use 1 to 24 of A-Z a-z 0-9 _ . -`);
    return ExitCode.USAGE;
  }
  ensureHome(resolveHome(options.home, io.env));

  const emit = (event: ChatEvent): void => {
    if (options.json) {
      io.stdout.write(`${JSON.stringify(event)}\n`);
      return;
    }
    const line = formatLine(event, inert);
    if (line !== null) io.stdout.write(`${line}\n`);
    const notice = formatNotice(event);
    if (notice !== null) io.stderr.write(`${notice}\n`);
  };

  let client: ConfabClient;
  try {
    client = await connect({ host: invite.host, port: invite.port });
  } catch (e) {
    err(e instanceof Error ? e.message : String(e));
    return ExitCode.FAILURE;
  }
  const room = inviteRoomId(invite);
  if (created) emit({ type: 'invite', link: formatInvite(invite), ts: Date.now() });

  client.on('message', (m) => {
    emit({ type: 'message', nick: m.nick, text: textDecoder.decode(m.body), seq: m.seq, ts: m.ts });
  });
  client.on('join', (p) => emit({ type: 'join', nick: p.nick, ts: Date.now() }));
  client.on('leave', (p) => emit({ type: 'leave', nick: p.nick, reason: p.reason, ts: Date.now() }));
  client.on('error', (e) => emit({ type: 'error', code: e.code, message: e.message, ts: Date.now() }));
  client.on('disconnect', (d) =>
    emit({
      type: 'disconnect',
      code: d.error?.code ?? null,
      message: d.error?.message ?? null,
      reconnecting: d.willReconnect,
      ts: Date.now(),
    }),
  );
  client.on('reconnect', (r) =>
    emit({ type: 'reconnect', members: r.rooms.flatMap((j) => j.members), ts: Date.now() }),
  );

  try {
    const joined = await client.join(room, nick);
    emit({ type: 'joined', nick: joined.nick, members: joined.members, seq: joined.seq, ts: Date.now() });
  } catch (e) {
    const code = e instanceof ClientError ? `${e.code}: ` : '';
    err(`could not join: ${code}${e instanceof Error ? e.message : String(e)}`);
    await client.close();
    return ExitCode.FAILURE;
  }

  // Ctrl-C / SIGTERM: stop reading, don't wait for acknowledgements, leave cleanly.
  let interrupted = false;
  let wake: () => void = () => {};
  const interruption = new Promise<void>((resolve) => (wake = resolve));
  const lines = createInterface({ input: io.stdin, crlfDelay: Infinity, terminal: false });
  const onSignal = (): void => {
    interrupted = true;
    wake();
    lines.close();
    io.stdin.destroy();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let failed = 0;
  try {
    for await (const line of lines) {
      if (line.trim() === '') continue;
      if (client.pending >= WINDOW) await Promise.race([client.settled(), interruption]);
      if (interrupted) break;
      client.send(room, textEncoder.encode(line)).then(
        (ack) => {
          if (options.json) emit({ type: 'sent', nick, text: line, seq: ack.seq, ts: ack.ts });
        },
        (e: unknown) => {
          if (!(e instanceof ClientError) || e.code === 'CLOSED') return;
          failed++;
          emit({ type: 'error', code: e.code, message: e.message, ts: Date.now() });
        },
      );
    }
  } catch {
    // stdin destroyed by a signal: fall through to a clean leave
  }
  await Promise.race([client.settled(), interruption]);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  await client.close();
  if (interrupted) return ExitCode.INTERRUPTED;
  return failed > 0 ? ExitCode.FAILURE : ExitCode.OK;
}

function defaultNick(env: NodeJS.ProcessEnv): string {
  const user = (env['USER'] ?? env['USERNAME'] ?? '').replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 24);
  return user === '' ? 'guest' : user;
}
