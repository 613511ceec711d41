import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import {
  ClientError,
  connect,
  ensureHome,
  formatInvite,
  IdentityFileError,
  inviteRoomId,
  InviteError,
  isValidNick,
  loadIdentity,
  newInvite,
  parseAddress,
  parseInvite,
  resolveHome,
  RoomState,
  SecureRoom,
  shortFingerprint,
} from '../client/index.js';
import type { ConfabClient, Invite, Member } from '../client/index.js';
import { formatLine, formatNotice } from './events.js';
import type { ChatEvent, Who } from './events.js';
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
  /** 128 + SIGINT */
  INTERRUPTED: 130,
  /** 128 + SIGTERM */
  TERMINATED: 143,
} as const;

// Line mode keeps at most this many messages in flight before it waits.
const WINDOW = 256;

const who = (m: Member): Who => ({ nick: m.nick, fingerprint: m.fingerprint, verified: m.verified, trust: m.trust });

/**
 * Runs `confab join` in line mode: stdin lines are messages, events go to
 * stdout (plain or JSON lines), notices and errors to stderr. Resolves with the
 * exit code once input has ended and every message sent is acknowledged.
 */
export async function runJoin(options: JoinOptions, io: JoinIO): Promise<number> {
  const err = (line: string): void => {
    io.stderr.write(`confab: ${inert(line)}\n`);
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
    err(`invalid nick "${nick}": use 1 to 24 of A-Z a-z 0-9 _ . -`);
    return ExitCode.USAGE;
  }
  const home = ensureHome(resolveHome(options.home, io.env));
  let identity;
  try {
    identity = loadIdentity(home);
  } catch (e) {
    if (e instanceof IdentityFileError) {
      err(e.message);
      return ExitCode.FAILURE;
    }
    throw e;
  }
  // Ctrl-C / SIGTERM at any point: stop reading, don't wait for
  // acknowledgements, leave cleanly. Listening from the start, so a signal
  // during connect or join is handled too.
  let interrupted: number | null = null;
  let wake: () => void = () => {};
  const interruption = new Promise<void>((resolve) => (wake = resolve));
  let stopReading = (): void => {};
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted = signal === 'SIGTERM' ? ExitCode.TERMINATED : ExitCode.INTERRUPTED;
    wake();
    stopReading();
    io.stdin.destroy();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const finish = async (code: number, client?: ConfabClient): Promise<number> => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await client?.close();
    return interrupted ?? code;
  };

  const link = formatInvite(invite);
  const roomHex = Buffer.from(inviteRoomId(invite)).toString('hex');

  const emit = (event: ChatEvent): void => {
    if (options.json) {
      io.stdout.write(`${JSON.stringify(event)}\n`);
      return;
    }
    const line = formatLine(event, inert, `'${link}'`);
    if (line !== null) io.stdout.write(`${line}\n`);
    const notice = formatNotice(event, inert);
    if (notice !== null) io.stderr.write(`${notice}\n`);
  };

  let client: ConfabClient;
  try {
    client = await connect({ host: invite.host, port: invite.port, identity });
  } catch (e) {
    err(e instanceof Error ? e.message : String(e));
    return finish(ExitCode.FAILURE);
  }
  const room = new SecureRoom(client, { secret: invite.secret, nick, state: RoomState.load(home, roomHex) });
  if (created) emit({ type: 'invite', link, ts: Date.now() });

  room.on('message', (m) =>
    emit({
      type: 'message',
      ...who(m),
      text: m.text,
      action: m.kind === 'action',
      seq: m.seq,
      senderSeq: m.senderSeq,
      ts: m.ts,
      ...(m.warning !== undefined ? { warning: m.warning } : {}),
    }),
  );
  room.on('join', (m) => emit({ type: 'join', ...who(m), ts: Date.now() }));
  room.on('leave', (p) => emit({ type: 'leave', nick: p.nick, reason: p.reason, ts: Date.now() }));
  room.on('rejected', (r) => emit({ type: 'rejected', ...r, ts: Date.now() }));
  room.on('gap', (g) =>
    emit({ type: 'gap', nick: g.nick, fingerprint: g.fingerprint, missing: g.missing, ts: Date.now() }),
  );
  room.on('key-changed', (k) => emit({ type: 'key-changed', ...k, ts: Date.now() }));
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
  client.on('reconnect', () => emit({ type: 'reconnect', members: room.who().map(who), ts: Date.now() }));

  try {
    const joined = await room.join();
    emit({
      type: 'joined',
      nick: joined.nick,
      fingerprint: shortFingerprint(identity.publicKey),
      members: joined.members.map(who),
      seq: joined.seq,
      ts: Date.now(),
    });
  } catch (e) {
    const code = e instanceof ClientError ? `${e.code}: ` : '';
    err(`could not join: ${code}${e instanceof Error ? e.message : String(e)}`);
    return finish(ExitCode.FAILURE, client);
  }
  if (!options.json) {
    io.stderr.write(
      'confab: end-to-end encrypted. Anyone with the invite link can read this room; to remove someone, start a new room.\n',
    );
  }

  const lines = createInterface({ input: io.stdin, crlfDelay: Infinity, terminal: false });
  if (interrupted !== null) lines.close();
  stopReading = () => lines.close();

  let failed = 0;
  try {
    for await (const line of lines) {
      if (line.trim() === '') continue;
      if (client.pending >= WINDOW) await Promise.race([client.settled(), interruption]);
      if (interrupted !== null) break;
      room.send(line).then(
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
  room.state.flush();
  return finish(failed > 0 ? ExitCode.FAILURE : ExitCode.OK, client);
}

function defaultNick(env: NodeJS.ProcessEnv): string {
  const user = (env['USER'] ?? env['USERNAME'] ?? '').replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 24);
  return user === '' ? 'guest' : user;
}
