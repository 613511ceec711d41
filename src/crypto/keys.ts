import { hkdfSha256 } from './primitives.js';
import { roomIdFromSecret } from './room.js';

/** What a member holds for one room: its id and the message key of the current epoch. */
export interface RoomKeys {
  readonly roomId: Uint8Array;
  readonly epoch: number;
  readonly messageKey: Uint8Array;
}

const MSG_KEY_INFO = new TextEncoder().encode('msg-key');

/**
 * The message key of an epoch: HKDF-SHA256(secret, salt=room_id,
 * info="msg-key" ‖ epoch as u32 big-endian), 32 bytes. Phase 1 uses epoch 0 only.
 */
export function messageKey(secret: Uint8Array, roomId: Uint8Array, epoch: number): Uint8Array {
  const info = new Uint8Array(MSG_KEY_INFO.length + 4);
  info.set(MSG_KEY_INFO, 0);
  new DataView(info.buffer).setUint32(MSG_KEY_INFO.length, epoch);
  return hkdfSha256(secret, roomId, info, 32);
}

/** Everything a member derives from the invite secret. */
export function roomKeys(secret: Uint8Array, epoch = 0): RoomKeys {
  const roomId = roomIdFromSecret(secret);
  return { roomId, epoch, messageKey: messageKey(secret, roomId, epoch) };
}
