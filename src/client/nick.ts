import { NICK_PATTERN } from '../protocol/index.js';

/** Whether the server will accept `nick` (1–24 of `A-Z a-z 0-9 _ . -`). */
export function isValidNick(nick: string): boolean {
  return NICK_PATTERN.test(nick);
}
