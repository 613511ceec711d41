import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { safetyNumber, shortFingerprint } from '../crypto/index.js';
import type { Identity } from '../crypto/index.js';
import { inviteRoomId, InviteError, parseInvite } from './invite.js';
import { RoomState } from './room-state.js';
import type { Pin } from './room-state.js';

/**
 * The room state a `confab trust` / `confab verify` acts on: the room of the
 * invite given, or the only room this home knows.
 * @throws InviteError when the room can't be told
 */
export function roomStateFor(home: string, invite: string | undefined): RoomState {
  if (invite !== undefined) return RoomState.load(home, Buffer.from(inviteRoomId(parseInvite(invite))).toString('hex'));
  let rooms: string[] = [];
  try {
    rooms = readdirSync(join(home, 'rooms')).filter((f) => /^[0-9a-f]{32}\.json$/.test(f));
  } catch {
    // no rooms yet
  }
  if (rooms.length === 1) return RoomState.load(home, (rooms[0] as string).slice(0, 32));
  throw new InviteError(
    rooms.length === 0
      ? 'this home has joined no room yet'
      : `this home knows ${rooms.length} rooms: name one with --room INVITE`,
  );
}

const unb64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64url'));

/** What `confab verify` shows for one pinned nick. */
export interface VerifyInfo {
  pin: Pin;
  /** The key to compare: the new one while a change waits (the one accepting would take), else the pinned one. */
  fingerprint: string;
  safetyNumber: string;
  /** While a change waits: the pinned key's fingerprint, which the new one would replace. */
  replaces?: string;
}

export function verifyInfo(state: RoomState, me: Identity, nick: string): VerifyInfo | undefined {
  const pin = state.pin(nick);
  if (pin === undefined) return undefined;
  // Not the pinned key while a change waits: its number is the one the old
  // key's holder reads out, and a match would then vouch for an impostor's.
  const key = unb64(pin.pending ?? pin.key);
  const info: VerifyInfo = { pin, fingerprint: shortFingerprint(key), safetyNumber: safetyNumber(me.publicKey, key) };
  if (pin.pending !== undefined) info.replaces = shortFingerprint(unb64(pin.key));
  return info;
}

/** Marks a pinned key verified (after comparing safety numbers). */
export function markVerified(state: RoomState, nick: string): boolean {
  const pin = state.pin(nick);
  if (pin === undefined || pin.pending !== undefined) return false;
  state.setPin({ ...pin, verified: true });
  return true;
}

/** Accepts a changed key; the new key starts unverified. Returns its fingerprint, or undefined if none pending. */
export function acceptKeyChange(state: RoomState, nick: string): string | undefined {
  const pin = state.pin(nick);
  if (pin?.pending === undefined) return undefined;
  state.setPin({ nick: pin.nick, key: pin.pending, verified: false });
  return shortFingerprint(unb64(pin.pending));
}

/** Refuses a changed key: keeps the pinned one and unblocks sending. Returns false if none was pending. */
export function rejectKeyChange(state: RoomState, nick: string): boolean {
  const pin = state.pin(nick);
  if (pin?.pending === undefined) return false;
  state.setPin({ nick: pin.nick, key: pin.key, verified: pin.verified });
  return true;
}
