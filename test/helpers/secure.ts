import { connect, SecureRoom } from '../../src/client/index.js';
import type { ConfabClient, Gap, KeyChange, Member, Rejection, SecureMessage } from '../../src/client/index.js';
import type { Identity } from '../../src/crypto/index.js';
import type { RoomState } from '../../src/client/index.js';

/** An end-to-end member over a real connection, recording what it sees. */
export interface SecureMember {
  room: SecureRoom;
  client: ConfabClient;
  identity: Identity;
  close: () => Promise<void>;
  messages: SecureMessage[];
  rejected: Rejection[];
  gaps: Gap[];
  keyChanges: KeyChange[];
  joins: Member[];
  /** Every event in arrival order, as `kind` strings, for ordering checks. */
  log: string[];
  texts: () => string[];
}

export async function secureMember(
  port: number,
  secret: Uint8Array,
  nick: string,
  options: { identity?: Identity; state?: RoomState; before?: (room: SecureRoom) => void } = {},
): Promise<SecureMember> {
  const client = await connect({
    host: '127.0.0.1',
    port,
    backoff: { baseMs: 20, maxMs: 100 },
    ...(options.identity !== undefined ? { identity: options.identity } : {}),
  });
  const room = new SecureRoom(client, {
    secret,
    nick,
    ...(options.state !== undefined ? { state: options.state } : {}),
  });
  const m: SecureMember = {
    room,
    client,
    identity: client.identity,
    close: () => client.close(),
    messages: [],
    rejected: [],
    gaps: [],
    keyChanges: [],
    joins: [],
    log: [],
    texts: () => m.messages.map((x) => `${x.nick}: ${x.text}`),
  };
  room.on('message', (x) => {
    m.messages.push(x);
    m.log.push(`message:${x.text}`);
  });
  room.on('rejected', (x) => {
    m.rejected.push(x);
    m.log.push(`rejected:${x.reason}`);
  });
  room.on('gap', (x) => {
    m.gaps.push(x);
    m.log.push(`gap:${x.missing}`);
  });
  room.on('key-changed', (x) => {
    m.keyChanges.push(x);
    m.log.push(`key-changed:${x.nick}`);
  });
  room.on('join', (x) => m.joins.push(x));
  options.before?.(room);
  await room.join();
  return m;
}
