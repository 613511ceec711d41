export { connect, ConfabClient, CLIENT_AGENT } from './client.js';
export type {
  ClientEvents,
  ConnectOptions,
  DisconnectEvent,
  JoinResult,
  LeaveEvent,
  MessageEvent,
  PresenceEvent,
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
