import { expect } from 'vitest';
import { connect } from '../../src/client/index.js';
import type { ClientEvents, ConfabClient, ConnectOptions, JoinOptions, JoinResult } from '../../src/client/index.js';
import { until } from './net.js';

/** A connected client with every event it emitted, in order. */
export interface Recorder {
  client: ConfabClient;
  events: { [K in keyof ClientEvents]: ClientEvents[K][] };
  /** Bodies of received messages as text, `nick: text`. */
  texts(): string[];
}

const decoder = new TextDecoder();

export function room(n: number): Uint8Array {
  return new Uint8Array(16).fill(n);
}

export function text(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/** Connects a client that records its events. Reconnects fast, for tests. */
export async function recorder(port: number, options: Partial<ConnectOptions> = {}): Promise<Recorder> {
  const client = await connect({ host: '127.0.0.1', port, backoff: { baseMs: 20, maxMs: 100 }, ...options });
  const events: Recorder['events'] = {
    message: [],
    joined: [],
    join: [],
    leave: [],
    error: [],
    disconnect: [],
    reconnect: [],
    missed: [],
    cursor: [],
  };
  for (const name of Object.keys(events) as (keyof ClientEvents)[]) {
    client.on(name, (value) => (events[name] as unknown[]).push(value));
  }
  return {
    client,
    events,
    texts: () => events.message.map((m) => `${m.nick}: ${decoder.decode(m.body)}`),
  };
}

/** Connects and joins `r` as `nick`. */
export async function member(
  port: number,
  r: Uint8Array,
  nick: string,
  options: Partial<ConnectOptions> = {},
  join: JoinOptions = {},
): Promise<Recorder & { joined: JoinResult }> {
  const rec = await recorder(port, options);
  const joined = await rec.client.join(r, nick, join);
  return { ...rec, joined };
}

/**
 * Sends `count` messages at once from `from`, joined to `r` as `nick`
 * (`prefix0`, `prefix1`, ...), and checks that they are numbered 1 to `count`
 * and that `to` hears them all, in order: the room's first messages.
 */
export async function expectBurstInOrder(
  from: Recorder,
  nick: string,
  to: Recorder,
  r: Uint8Array,
  count: number,
  prefix: string,
): Promise<void> {
  const acks = await Promise.all(Array.from({ length: count }, (_, i) => from.client.send(r, text(`${prefix}${i}`))));
  expect(acks.map((a) => a.seq)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
  await until(() => to.events.message.length === count);
  expect(to.texts()).toEqual(Array.from({ length: count }, (_, i) => `${nick}: ${prefix}${i}`));
}
