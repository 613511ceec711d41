import type { Readable, Writable } from 'node:stream';
import {
  ClientError,
  ConfabClient,
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
import type { Identity, Invite, Member } from '../client/index.js';
import type { ChatEvent, Who } from './events.js';
import { inert } from './sanitize.js';

/** What `confab join` was asked to do. */
export interface JoinOptions {
  /** An invite link, or HOST[:PORT] to create a new room there. */
  target: string;
  nick?: string;
  json: boolean;
  home?: string;
  /** Ring the terminal bell when someone mentions you (interactive mode only). */
  bell?: boolean;
  /** Past messages to show on a first visit (default 100, at most 1,000). */
  backlog?: number;
  /**
   * Line mode, at the end of input: how long to wait without a connection for
   * what is still unacknowledged before giving up (it stays in the outbox), ms.
   * 0 waits for ever. Default GIVE_UP_MS.
   */
  giveUpMs?: number;
  /**
   * Takes an exclusive lock on a file for the rest of the process, false if
   * another process holds it; throws, naming the file, if it can't be made
   * (the CLI passes one; without it nothing is locked).
   * The room's `rooms/<id>.lock` in the home: two runs of one home in one room
   * would number their messages alike, and the others would reject one's as
   * replays of the other's while both exited 0.
   */
  lock?: (path: string) => boolean;
}

/** The process's streams and environment, injected so tests can drive them. */
export interface JoinIO {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

/** Line mode's default `giveUpMs`: a minute without a server at the end of input. */
export const GIVE_UP_MS = 60_000;

export const ExitCode = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  /**
   * Could not connect, or the server refused the join: nothing of the input
   * was read, kept or sent, so running it again sends it (exit 1 can mean
   * messages were kept for the next run, and must not be sent again).
   */
  NOT_JOINED: 3,
  /** 128 + SIGHUP */
  HANGUP: 129,
  /** 128 + SIGINT */
  INTERRUPTED: 130,
  /** 128 + SIGTERM */
  TERMINATED: 143,
} as const;

/** Everything `confab join` settles before it touches the network. */
export interface Session {
  invite: Invite;
  /** The invite link, `confab://HOST:PORT/#SECRET`. */
  link: string;
  /** The room id the server knows (derived from the secret), as hex. */
  roomHex: string;
  /** True when the target was HOST[:PORT]: a new room, whose link we print. */
  created: boolean;
  nick: string;
  home: string;
  identity: Identity;
  backlog: number | undefined;
}

/** The connection and the room, once joined. */
export interface Entered {
  client: ConfabClient;
  room: SecureRoom;
}

/**
 * `m` as shown, between `head`'s fields and `tail`'s. Its fingerprint is read
 * from `m` when first shown (see SecureRoom's Member): spreading `m`, or a Who,
 * would compute it for every member, shown or not.
 */
function shown<H extends object, T extends object>(head: H, m: Member, tail: T): H & Who & T {
  // Built up in order, not as one literal with spreads: V8 puts an accessor
  // defined among spreads last, and the JSON keys would change order.
  const out = Object.assign({}, head, { nick: m.nick });
  Object.defineProperty(out, 'fingerprint', { get: () => m.fingerprint, enumerable: true, configurable: true });
  return Object.assign(out, { verified: m.verified, trust: m.trust }, tail) as H & Who & T;
}

/** A member as shown. */
export const who = (m: Member): Who => shown({}, m, {});

/** Prints one `confab: ...` line on stderr, inert. */
export function complain(stderr: Writable, line: string): void {
  stderr.write(`confab: ${inert(line)}\n`);
}

/**
 * Parses the target, checks the nick, makes the home and loads the identity.
 * On a problem, prints it on stderr and returns the exit code.
 */
export function prepare(options: JoinOptions, io: Pick<JoinIO, 'stderr' | 'env'>): Session | number {
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
      complain(io.stderr, e.message);
      return ExitCode.USAGE;
    }
    throw e;
  }
  const nick = options.nick ?? defaultNick(io.env);
  if (!isValidNick(nick)) {
    complain(io.stderr, `invalid nick "${nick}": use 1 to 24 of A-Z a-z 0-9 _ . -`);
    return ExitCode.USAGE;
  }
  const home = resolveHome(options.home, io.env);
  let identity: Identity;
  try {
    identity = loadIdentity(ensureHome(home));
  } catch (e) {
    if (e instanceof IdentityFileError) {
      complain(io.stderr, e.message);
      return ExitCode.FAILURE;
    }
    throw e;
  }
  const roomHex = Buffer.from(inviteRoomId(invite)).toString('hex');
  if (options.lock !== undefined) {
    let locked: boolean;
    try {
      locked = options.lock(RoomState.fileOf(home, roomHex, '.lock'));
    } catch (e) {
      complain(io.stderr, e instanceof Error ? e.message : String(e)); // a read-only home: it names the file
      return ExitCode.FAILURE;
    }
    if (!locked) {
      complain(
        io.stderr,
        `this room is open in another confab join with this home (${home}): wait for it to end, or use another --home`,
      );
      return ExitCode.FAILURE;
    }
  }
  return {
    invite,
    link: formatInvite(invite),
    roomHex,
    created,
    nick,
    home,
    identity,
    backlog: options.backlog,
  };
}

/**
 * Connects, opens the room, forwards its events to `emit` as ChatEvents
 * (`invite` first for a new room, then `joined`) and joins. On failure, prints
 * why on stderr, closes what it opened and returns the exit code.
 */
export async function enter(
  session: Session,
  emit: (event: ChatEvent) => void,
  stderr: Writable,
  cancel?: AbortSignal,
): Promise<Entered | number> {
  if (cancel?.aborted === true) return ExitCode.FAILURE; // interrupted before it began
  const { invite, identity } = session;
  const client = new ConfabClient({ host: invite.host, port: invite.port, identity });
  // Ctrl-C while connecting or joining: closing the client ends either wait at once
  // (a server that accepts and never answers would otherwise hold it for good).
  const stop = (): void => void client.close();
  cancel?.addEventListener('abort', stop, { once: true });
  try {
    return await joinRoom(session, client, emit, stderr, cancel);
  } finally {
    cancel?.removeEventListener('abort', stop);
  }
}

async function joinRoom(
  session: Session,
  client: ConfabClient,
  emit: (event: ChatEvent) => void,
  stderr: Writable,
  cancel: AbortSignal | undefined,
): Promise<Entered | number> {
  const { invite, identity } = session;
  // A function, not a value: the signal changes under the awaits.
  const aborted = (): boolean => cancel?.aborted === true;
  // Read before connecting: a file that can't be read ends the run with nothing to undo.
  let state: RoomState;
  try {
    state = RoomState.load(session.home, session.roomHex);
  } catch (e) {
    complain(stderr, e instanceof Error ? e.message : String(e));
    await client.close();
    return ExitCode.FAILURE;
  }
  try {
    await client.open();
  } catch (e) {
    if (!aborted()) complain(stderr, e instanceof Error ? e.message : String(e));
    await client.close();
    return ExitCode.NOT_JOINED;
  }
  const room = new SecureRoom(client, {
    secret: invite.secret,
    nick: session.nick,
    state,
    ...(session.backlog !== undefined ? { backlog: session.backlog } : {}),
  });
  if (session.created) emit({ type: 'invite', link: session.link, ts: Date.now() });
  forward(client, room, emit);
  // Said as the answer is read, so that the joins and leaves read after it follow it.
  let announced = false;
  room.on('joined', (joined) => {
    if (announced) return;
    announced = true;
    emit({
      type: 'joined',
      nick: joined.nick,
      fingerprint: shortFingerprint(identity.publicKey),
      members: joined.members.map(who),
      seq: joined.seq,
      ts: Date.now(),
    });
  });
  try {
    await room.join();
  } catch (e) {
    const code = e instanceof ClientError ? `${e.code}: ` : '';
    if (!aborted()) complain(stderr, `could not join: ${code}${e instanceof Error ? e.message : String(e)}`);
    await client.close();
    return ExitCode.NOT_JOINED;
  }
  return { client, room };
}

/** The room's and the connection's events, as ChatEvents. */
function forward(client: ConfabClient, room: SecureRoom, emit: (event: ChatEvent) => void): void {
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
      history: m.history,
      own: m.own,
    }),
  );
  room.on('missed', (m) => emit({ type: 'missed', count: m.count, ts: Date.now() }));
  room.on('resent', (r) => emit({ type: 'resent', count: r.count, ts: Date.now() }));
  room.on('released', (r) => emit({ type: 'released', ...r, ts: Date.now() }));
  room.on('resend-kept', (e) =>
    emit({
      type: 'error',
      code: e.code,
      message: `a message left unsent by your last session is still not delivered; kept, and sent at the next join: ${e.message}`,
      ts: Date.now(),
    }),
  );
  room.on('resend-failed', (e) =>
    emit({
      type: 'error',
      code: e.code,
      message: `a message left unsent by your last session was refused, and is dropped: ${e.message}`,
      ts: Date.now(),
    }),
  );
  room.on('join', (m) => emit(shown({ type: 'join' as const }, m, { ts: Date.now() })));
  room.on('leave', (p) => emit({ type: 'leave', nick: p.nick, reason: p.reason, ts: Date.now() }));
  room.on('rejected', (r) => emit({ type: 'rejected', ...r, ts: Date.now() }));
  room.on('gap', (g) =>
    emit({ type: 'gap', nick: g.nick, fingerprint: g.fingerprint, missing: g.missing, ts: Date.now() }),
  );
  room.on('key-changed', (k) => emit({ type: 'key-changed', ...k, ts: Date.now() }));
  client.on('error', (e) => emit({ type: 'error', code: e.code, message: e.message, ts: Date.now() }));
  room.on('error', (e) => emit({ type: 'error', code: e.code, message: e.message, ts: Date.now() }));
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
}

function defaultNick(env: NodeJS.ProcessEnv): string {
  const user = (env['USER'] ?? env['USERNAME'] ?? '').replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 24);
  return user === '' ? 'guest' : user;
}
