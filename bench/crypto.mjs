// Cost of sealing and opening one message envelope (XChaCha20-Poly1305 +
// Ed25519 sign / strict verify), by text size. Prints one JSON object per size.
//
//   node bench/crypto.mjs [--iterations 2000]
import { parseArgs } from 'node:util';
import {
  MessageType,
  NO_PREVIOUS,
  newIdentity,
  newRoomSecret,
  openEnvelope,
  roomKeys,
  sealEnvelope,
} from '../dist/crypto/index.js';
import { round } from './lib.mjs';

const { values } = parseArgs({ options: { iterations: { type: 'string', default: '2000' } } });
const N = Number(values.iterations);
const keys = roomKeys(newRoomSecret());
const alice = newIdentity();

for (const size of [16, 256, 1024, 4096, 60_000]) {
  const msg = {
    type: MessageType.TEXT,
    nick: 'alice',
    seq: 1,
    sentAt: Date.now(),
    prevHash: NO_PREVIOUS,
    body: new Uint8Array(size).fill(0x61),
  };
  const n = size > 4096 ? Math.max(50, N / 20) : N;
  for (let i = 0; i < Math.min(200, n); i++) openEnvelope(keys, sealEnvelope(keys, alice, msg)); // warm-up (JIT)
  const envelopes = [];
  let t = performance.now();
  for (let i = 0; i < n; i++) envelopes.push(sealEnvelope(keys, alice, { ...msg, seq: i + 1 }));
  const sealUs = ((performance.now() - t) * 1000) / n;
  t = performance.now();
  for (const e of envelopes) openEnvelope(keys, e);
  const openUs = ((performance.now() - t) * 1000) / n;
  console.log(
    JSON.stringify({
      workload: 'envelope',
      textBytes: size,
      envelopeBytes: envelopes[0].length,
      iterations: n,
      sealMicroseconds: round(sealUs, 1),
      openMicroseconds: round(openUs, 1),
    }),
  );
}
