import { newRoomSecret, ROOM_SECRET_LEN, roomIdFromSecret } from '../crypto/index.js';
import type { Rng } from '../crypto/index.js';
import { DEFAULT_PORT } from '../protocol/index.js';

/** A parsed invite: where the server is and the room's secret. */
export interface Invite {
  host: string;
  port: number;
  /** 32 bytes; never sent to the server. */
  secret: Uint8Array;
}

/** Thrown for a malformed address or invite link; `confab` maps it to exit code 2. */
export class InviteError extends Error {
  override readonly name = 'InviteError';
}

const SCHEME = 'confab://';

/** `confab://HOST:PORT/#SECRET`, with IPv6 hosts in brackets. */
export function formatInvite(invite: Invite): string {
  const host = invite.host.includes(':') ? `[${invite.host}]` : invite.host;
  return `${SCHEME}${host}:${invite.port}/#${Buffer.from(invite.secret).toString('base64url')}`;
}

/** Parses an invite link. @throws InviteError with what is wrong. */
export function parseInvite(link: string): Invite {
  if (!link.startsWith(SCHEME)) throw new InviteError(`an invite starts with ${SCHEME}`);
  const hash = link.indexOf('#');
  if (hash < 0) throw new InviteError('the invite has no secret (the part after #)');
  const authority = link.slice(SCHEME.length, hash).replace(/\/$/, '');
  const { host, port } = parseAddress(authority);
  const encoded = link.slice(hash + 1);
  if (!/^[A-Za-z0-9_-]{43}$/.test(encoded)) {
    throw new InviteError(`the invite's secret must be ${ROOM_SECRET_LEN} bytes of base64url (43 characters)`);
  }
  return { host, port, secret: new Uint8Array(Buffer.from(encoded, 'base64url')) };
}

/** Text this long, with nothing to cut it at, could be a secret pasted alone (43 characters): never quoted. */
const SECRET_LIKE = 40;

/** Parses `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`. @throws InviteError */
export function parseAddress(text: string): { host: string; port: number } {
  // A room's secret pasted alone (43 characters of base64url) would pass for a host name half
  // the time: it would be looked up in DNS and printed in the connection's error.
  if (/^[A-Za-z0-9_-]{43}$/.test(text)) {
    throw new InviteError('that is a room secret, not a host: give the whole invite link, confab://HOST:PORT/#SECRET');
  }
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/.exec(text);
  if (m === null) {
    // A mistyped invite (`CONFAB://`, a leading space, `%23` for `#`, a bare
    // secret) lands here: it is quoted only up to where a secret could start.
    const cut = text.search(/[/#%?]/);
    const head = cut < 0 ? text : text.slice(0, Math.max(cut, 1));
    if (cut < 0 && head.length < SECRET_LIKE) throw new InviteError(`"${text}" is not HOST or HOST:PORT`);
    const shown = head.length < SECRET_LIKE ? `"${head}…"` : 'that';
    throw new InviteError(`${shown} is neither HOST[:PORT] nor an invite link (confab://HOST:PORT/#SECRET)`);
  }
  const host = m[1] ?? m[2] ?? '';
  const port = m[3] === undefined ? DEFAULT_PORT : Number(m[3]);
  if (port < 1 || port > 65535) throw new InviteError(`port ${port} is out of range 1-65535`);
  return { host, port };
}

/** A new room on the given server. */
export function newInvite(host: string, port: number, rng?: Rng): Invite {
  return { host, port, secret: newRoomSecret(rng) };
}

/** The opaque room id the server knows this room by. */
export function inviteRoomId(invite: Invite): Uint8Array {
  return roomIdFromSecret(invite.secret);
}
