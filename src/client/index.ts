export { connect, ConfabClient, CLIENT_AGENT, SEND_QUEUE_BYTES } from './client.js';
export { MAX_HEARTBEAT_MS, MIN_HEARTBEAT_MS } from '../protocol/index.js';
export type {
  ClientEvents,
  ConnectOptions,
  CursorEvent,
  DisconnectEvent,
  JoinOptions,
  JoinResult,
  MissedEvent,
  LeaveEvent,
  MessageEvent,
  JoinEvent,
  ReconnectEvent,
} from './client.js';
export { ClientError, ClientErrorCode } from './errors.js';
export type { ClientErrorCodeName } from './errors.js';
export { backoffDelay } from './backoff.js';
export type { BackoffOptions } from './backoff.js';
export { formatInvite, inviteRoomId, InviteError, newInvite, parseAddress, parseInvite } from './invite.js';
export type { Invite } from './invite.js';
export { ensureHome, resolveHome } from './home.js';
export { isValidNick } from './nick.js';
export { keptInOutbox, SecureRoom, WITHHELD_MAX } from './secure-room.js';
export { Outcomes } from './outcomes.js';
export type {
  Gap,
  KeyChange,
  Member,
  Missed,
  Rejection,
  SecureMessage,
  SecureRoomEvents,
  SecureRoomOptions,
  Trust,
} from './secure-room.js';
export { RoomState } from './room-state.js';
export type { OutboxEntry, RoomStateEvents } from './room-state.js';
export { DEFAULT_BACKLOG, MAX_BACKLOG } from '../protocol/index.js';
export { IdentityFileError, identityPath, loadIdentity } from './identity-store.js';
export { fingerprint, groupDigits, MAX_TEXT, safetyNumber, shortFingerprint } from '../crypto/index.js';
export { acceptKeyChange, markVerified, rejectKeyChange, roomStateFor, verifyInfo } from './trust.js';
export type { VerifyInfo } from './trust.js';
export type { Identity } from '../crypto/index.js';
