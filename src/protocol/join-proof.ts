import { utf8 } from './bytes.js';

const JOIN_CONTEXT = utf8('confab/join/v1');

/**
 * The bytes a client signs with its identity key in JOIN (doc/PROTOCOL.md §4):
 * "confab/join/v1" ‖ challenge ‖ room ‖ nick. The server's per-connection
 * challenge makes a proof useless on any other connection; the label keeps it
 * from ever being confused with a message signature.
 */
export function joinProofMessage(challenge: Uint8Array, room: Uint8Array, nick: string): Uint8Array {
  const nickBytes = utf8(nick);
  const out = new Uint8Array(JOIN_CONTEXT.length + challenge.length + room.length + nickBytes.length);
  out.set(JOIN_CONTEXT, 0);
  out.set(challenge, JOIN_CONTEXT.length);
  out.set(room, JOIN_CONTEXT.length + challenge.length);
  out.set(nickBytes, JOIN_CONTEXT.length + challenge.length + room.length);
  return out;
}
