import type {
  AppendResult,
  HistoryPage,
  HistoryStore,
  PendingMessage,
  PruneStep,
  RoomLookup,
  SeqSource,
} from './history.js';

const NO_ROOM: RoomLookup = Object.freeze({ latest: 0, stored: false });

/**
 * The store of a relay run with `--no-history`: keeps nothing, so there is no
 * backlog, no resume, no resend detection and no nick ownership. Sequence
 * numbers come from the relay alone and start again when a room empties.
 */
export class NoHistory implements HistoryStore {
  readonly persistent = false;
  readonly numbering = null;

  lookupRoom(): RoomLookup {
    return NO_ROOM;
  }

  addRoom(): void {}

  append(batch: readonly PendingMessage[], seqs: SeqSource): AppendResult[] {
    return batch.map((m, i) => ({ seq: seqs.next(i), ts: m.ts, duplicate: false }));
  }

  read(): HistoryPage {
    // Nothing is stored: "oldest" lies past any sequence number.
    return { messages: [], oldest: Number.MAX_SAFE_INTEGER };
  }

  nickOwner(): Uint8Array | undefined {
    return undefined;
  }

  claimNick(_nick: string, key: Uint8Array): Uint8Array {
    return key;
  }

  releaseNick(): boolean {
    return false;
  }

  prune(): number {
    return 0;
  }

  pruneSome(): PruneStep {
    return { removed: 0, done: true };
  }

  check(): string {
    return 'ok';
  }

  close(): void {}
}
