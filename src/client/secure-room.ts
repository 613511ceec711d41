import {
  EnvelopeError,
  equalBytes,
  MAX_TEXT,
  MessageType,
  NO_PREVIOUS,
  openEnvelope,
  RejectReason,
  roomKeys,
  safetyNumber,
  sealEnvelope,
  secureRandom,
  shortFingerprint,
  envelopeHash,
} from '../crypto/index.js';
import type { MessageTypeValue, RejectReasonValue, RoomKeys, Rng } from '../crypto/index.js';
import { MSG_ID_LEN } from '../protocol/index.js';
import type { MemberInfo } from '../protocol/index.js';
import type { ConfabClient, JoinEvent, LeaveEvent, MessageEvent } from './client.js';
import { Emitter } from './emitter.js';
import { Outcomes } from './outcomes.js';
import { ClientError, ReportOnce } from './errors.js';
import { isValidNick } from './nick.js';
import { RoomState } from './room-state.js';
import type { OutboxEntry, Pin } from './room-state.js';
import { acceptKeyChange } from './trust.js';

/** How far a sender's key is trusted here. */
export type Trust = 'new' | 'known' | 'verified' | 'changed';

/** A member as this client sees it. */
export interface Member {
  nick: string;
  key: Uint8Array;
  /** The start of the key's fingerprint (`12345-67890`), computed when first read and kept per key. */
  readonly fingerprint: string;
  verified: boolean;
  trust: Trust;
}

/** A message that opened, verified and passed every check. */
export interface SecureMessage extends Member {
  kind: 'text' | 'action';
  text: string;
  /** The server's sequence number for it. */
  seq: number;
  /** Server receive time. */
  ts: number;
  /** The sender's own counter. */
  senderSeq: number;
  sentAt: number;
  /** Set when it follows its predecessor but names another one: the sender showed people different histories. */
  warning?: 'history-mismatch';
  /** From the server's history (backlog, or caught up after being away), not live. */
  history: boolean;
  /** Sent by this identity (seen in history: from an earlier session or another device). */
  own: boolean;
}

/** Room messages that can't be had: pruned by the server, or lost with its history. */
export interface Missed {
  /** How many; 0 when unknown (the server's numbering restarted). */
  count: number;
}

/** A message that was refused, and why. Never silent. */
export interface Rejection {
  reason: RejectReasonValue;
  /** The nick the relay gave it (unauthenticated when the reason says so). */
  nick: string;
  seq: number;
  ts: number;
  message: string;
}

/** Messages from one sender that never arrived: the relay dropped or held them. */
export interface Gap {
  nick: string;
  fingerprint: string;
  missing: number;
  /** The sender's last sequence number seen before, and the one just seen. */
  after: number;
  before: number;
}

/** A known nick came with another key. Sending is blocked until it is accepted. */
export interface KeyChange {
  nick: string;
  oldFingerprint: string;
  newFingerprint: string;
}

export interface SecureRoomEvents extends Record<string, unknown> {
  message: SecureMessage;
  rejected: Rejection;
  gap: Gap;
  'key-changed': KeyChange;
  /**
   * Our join, or our rejoin after a reconnect, was answered: the members then.
   * Emitted as the answer is read, before any `join` or `leave` read after it.
   */
  joined: { nick: string; members: Member[]; seq: number };
  join: Member;
  leave: LeaveEvent;
  missed: Missed;
  /** Messages left unacknowledged by an earlier session, sent again at join. */
  resent: { count: number };
  /** One of those was refused for good (too large for this server, say), and is dropped from the outbox. */
  'resend-failed': ClientError;
  /** One of those failed again in a way that keeps it in the outbox (the connection lost, NICK_OWNED...): it goes out at the next join. */
  'resend-kept': ClientError;
  /** Something went wrong that stops nothing: the room's state could not be written (SAVE_FAILED). */
  error: ClientError;
  /**
   * A changed key was accepted (here, or by `confab trust` in another process):
   * the messages it signed while it waited, kept in memory, follow as `message`
   * events, in order. `dropped`: those past WITHHELD_MAX, not kept.
   */
  released: { nick: string; count: number; dropped: number };
}

/** Messages signed by `key`, a changed key of `nick` not decided yet, kept to show if it is accepted. */
interface Withheld {
  nick: string;
  key: string;
  messages: MessageEvent[];
  /** Those past WITHHELD_MAX, not kept. */
  dropped: number;
  /** The senders' numbers of `messages`: a copy relayed again takes no second place. */
  seqs: Set<number>;
}

/** Most messages signed by unaccepted keys kept to show once a key is accepted (all nicks together). */
export const WITHHELD_MAX = 100;

export interface SecureRoomOptions {
  /** The invite secret (32 bytes). */
  secret: Uint8Array;
  nick: string;
  /** Trust state, cursor and outbox; kept in memory if omitted. */
  state?: RoomState;
  /** Past messages to fetch on a first visit (default 100). */
  backlog?: number;
  /** Nonces. */
  rng?: Rng;
  now?: () => number;
}

/** Why an outbox entry of ours no longer opens, when it is damage (and not a newer version's). */
const DAMAGED = new Set<RejectReasonValue>([
  RejectReason.MALFORMED,
  RejectReason.DECRYPT_FAILED,
  RejectReason.BAD_SIGNATURE,
  RejectReason.WRONG_ROOM,
]);

const KEEP_IN_OUTBOX = new Set<string>(['DISCONNECTED', 'CLOSED', 'STORE_FAILED', 'CONNECT_FAILED', 'NICK_OWNED']);

type Copy = { seq: number; hash: string };

/** An outbox entry's earlier copies, those well formed (the file may be damaged or edited by hand). */
function earlierCopies(e: OutboxEntry): Copy[] {
  if (!Array.isArray(e.was)) return [];
  return (e.was as unknown[]).filter(
    (w): w is Copy =>
      typeof w === 'object' &&
      w !== null &&
      Number.isSafeInteger((w as Partial<Copy>).seq) &&
      typeof (w as Partial<Copy>).hash === 'string' &&
      unb64((w as Copy).hash).length === 32,
  );
}

/** Whether a send that failed with `err` stays in the outbox, to be sent at the next join. */
function keptForLater(err: unknown, resend: boolean): boolean {
  return err instanceof ClientError && (KEEP_IN_OUTBOX.has(err.code) || (resend && err.code === 'OUTBOX_FULL'));
}

/**
 * Whether a message whose `send` failed with `err` is still in the room's
 * outbox, and goes out at the next join (this session's, after a rename or a
 * reconnect, or the next one's): not delivered yet, rather than not sent.
 */
export function keptInOutbox(err: unknown): boolean {
  return keptForLater(err, false);
}

/** `missed` ranges a room remembers to explain senders' gaps (see `missedRanges`). */
const MISSED_RANGES = 256;

/** Keys whose fingerprint a room keeps before it starts over (doc/LIMITS.md). */
export const FINGERPRINT_CACHE = 4096;

/**
 * New keys reported for one nick in one session, each with its fingerprint
 * (5,200 SHA-512s, tens of milliseconds): a server announcing bob under a new
 * key again and again froze the client for 30 ms each (15 s for 500). Past it,
 * one warning, and the later keys are neither reported nor made the pending
 * one, so `/accept` can only take a key that was shown.
 */
export const KEY_CHANGES_SHOWN = 4;

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64url');
const unb64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'base64url'));
const decoder = new TextDecoder();

/**
 * One end-to-end encrypted room over a ConfabClient: seals what we send, opens
 * and checks what arrives (AEAD, signature, signed nick, pinned key, replay,
 * gaps), pins keys on first sight, and blocks sending while a key change is
 * unaccepted. Everything refused is reported as a `rejected` event.
 */
export class SecureRoom extends Emitter<SecureRoomEvents> {
  readonly keys: RoomKeys;
  readonly state: RoomState;
  private currentNick: string;
  private readonly client: ConfabClient;
  private readonly rng: Rng;
  private readonly now: () => number;
  private readonly members = new Map<string, Member>();
  /** While join() waits: the members its JOIN was answered with, once read. */
  private joinedMembers: Member[] | null = null;
  private joining = false;
  /**
   * Short fingerprints by key (base64). Each takes 5,200 SHA-512s (Signal's
   * computation, tens of milliseconds in JavaScript) and every message names
   * its sender's, so a key's is computed once; emptied past FINGERPRINT_CACHE keys.
   */
  private readonly fingerprints = new Map<string, string>();
  /** New keys reported this session, by nick (lower case); see KEY_CHANGES_SHOWN. */
  private readonly keyChanges = new Map<string, number>();
  /** A member announced under our own nick. */
  private readonly once = new ReportOnce((err) => this.emit('error', err));
  private readonly backlog: number | undefined;
  /** Outbox entries (by message id) the client is sending now. */
  private readonly inFlight = new Set<string>();
  private refusedResends = 0;
  private keptResends = 0;
  /** What became of the resends of an earlier session's messages, each reported. */
  private readonly resendOutcomes = new Outcomes();
  /**
   * Settles when the join or rename under way is done: a message sent
   * meanwhile waits for it, so that it follows what the join sends again,
   * under the number after theirs.
   */
  private busy: Promise<unknown> | null = null;
  /**
   * The room's numbers `missed` reports said are gone (after < seq < before),
   * the latest MISSED_RANGES: a sender's gap in history across one of them is
   * already explained. Kept by number, not as a flag until the next live
   * message: a relay that sent everything as history after one faked report
   * hid every gap it made after it.
   */
  private readonly missedRanges: { after: number; before: number }[] = [];
  /**
   * The room numbers the client reads again after the server's numbering
   * started again or went back (a restart without its data, a store replaced or
   * restored from an older copy): messages we had among them are dropped
   * without a rejection each. 0 when there is no such reading.
   */
  private rereadUpTo = 0;
  private rereading = false;
  /**
   * Nicks first pinned from a JOINED's member list (lower-cased), with that
   * JOINED's room number: the key each uses as of that number. A message from
   * history up to that number signed by another key predates it (a member who
   * lost a key and came back with a new one), and is no news of a key change;
   * one past it is.
   */
  private readonly pinnedAtJoin = new Map<string, number>();
  /**
   * Messages signed by a changed key not accepted yet, by nick (lower-cased)
   * and that key: shown if it is accepted, forgotten if it is refused.
   */
  private readonly withheld = new Map<string, Withheld>();
  /** A release under way (see `release`). */
  private releasing = false;

  constructor(client: ConfabClient, options: SecureRoomOptions) {
    super();
    this.client = client;
    this.keys = roomKeys(options.secret);
    this.currentNick = options.nick;
    this.state = options.state ?? RoomState.memory();
    this.rng = options.rng ?? secureRandom;
    this.now = options.now ?? Date.now;
    this.backlog = options.backlog;
    this.state.on('error', (err) => this.emit('error', err));
    client.on('message', (m) => this.mine(m.room) && this.receive(m));
    client.on('cursor', (c) => {
      if (!this.mine(c.room)) return;
      this.state.setCursor(c.seq);
      this.state.ownAheadUpTo(c.seq);
    });
    client.on('missed', (m) => {
      if (!this.mine(m.room)) return;
      if (m.count === 0) {
        // Numbers started again or went back: the JOINED that follows says up
        // to where the client reads again, and what we noted by room number
        // (from the old numbering) says nothing of the new.
        this.rereading = true;
        this.pinnedAtJoin.clear();
        this.missedRanges.length = 0;
      } else if (this.missedRanges.push({ after: m.after, before: m.before }) > MISSED_RANGES) {
        this.missedRanges.shift();
      }
      this.emit('missed', { count: m.count });
    });
    client.on('join', (j) => this.mine(j.room) && !this.posingAsUs(j.nick, j.key) && this.emit('join', this.see(j)));
    client.on('leave', (l) => {
      if (!this.mine(l.room)) return;
      this.members.delete(l.nick.toLowerCase());
      this.emit('leave', l);
    });
    // The member list is taken as the answer to our JOIN is read: joins and
    // leaves read after it (in the same chunk, before join() resolves) then
    // apply to it instead of being overwritten by it.
    client.on('joined', (j) => {
      if (!this.mine(j.room)) return;
      // The cursor moved to this numbering as the JOINED was read: both are in the turn's save.
      this.state.setNumbering(j.numbering);
      this.rereadUpTo = this.rereading ? j.seq : 0;
      this.rereading = false;
      const members = this.resetMembers(j.members);
      // 'new': pinned just now, from this list.
      for (const m of members) if (m.trust === 'new') this.pinnedAtJoin.set(m.nick.toLowerCase(), j.seq);
      if (this.joining) this.joinedMembers = members;
      this.emit('joined', { nick: j.nick, members, seq: j.seq });
    });
  }

  /**
   * Joins the room, resuming after the last message this home has seen (or
   * fetching the backlog on a first visit), and resends what an earlier
   * session left unacknowledged. Returns the other members with their
   * fingerprints and trust.
   */
  async join(): Promise<{ nick: string; members: Member[]; seq: number }> {
    return this.exclusive(() => this.joinNow());
  }

  private async joinNow(): Promise<{ nick: string; members: Member[]; seq: number }> {
    const cursor = this.state.cursor();
    const numbering = this.state.numbering();
    this.joining = true;
    this.joinedMembers = null;
    let joined;
    try {
      joined = await this.client.join(this.keys.roomId, this.nick, {
        ...(cursor !== undefined ? { cursor } : {}),
        ...(cursor !== undefined && numbering !== undefined ? { numbering } : {}),
        ...(this.backlog !== undefined ? { backlog: this.backlog } : {}),
      });
    } finally {
      this.joining = false;
    }
    const members = this.joinedMembers ?? this.resetMembers(joined.members);
    this.joinedMembers = null;
    this.resend(
      this.state.outbox().filter((e) => !this.inFlight.has(e.mid)),
      joined.seq,
    );
    return { nick: joined.nick, members, seq: joined.seq };
  }

  /** Runs a join or a rename, which `send` waits for. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const running = work();
    // Settles with what the work failed with, if it did.
    const done = running.then(
      () => undefined,
      (err: unknown) => err,
    );
    this.busy = done;
    void done.then(() => {
      if (this.busy === done) this.busy = null;
    });
    return running;
  }

  /** Sends outbox entries again, in order, sealed again if signed under another nick; `after`: the JOINED's room number. */
  private resend(entries: readonly OutboxEntry[], after: number): void {
    let resent = 0;
    // Once one is sealed again, every later one is too: each names the hash of
    // the one before. Once one takes a new number, every later one does too.
    const pass = { resealed: false, renumbered: false, after };
    for (const e of entries) {
      let body: Uint8Array;
      try {
        const signedAsNow = (e.nick ?? this.nick).toLowerCase() === this.nick.toLowerCase();
        body = signedAsNow && !pass.resealed ? unb64(e.body) : this.reseal(e, pass);
      } catch (err) {
        // We are in the room by now (and said so): a message that can't be signed
        // again is not a failed join. One damaged so that it no longer opens can
        // never be sent, and goes; one from a newer version (another envelope
        // version, suite or epoch) stays for it. If the disk would not take the
        // new copy, it and the rest wait for the next join, in their order.
        if (!(err instanceof EnvelopeError)) break;
        if (DAMAGED.has(err.reason)) this.state.outboxDone(e.mid);
        continue;
      }
      resent++;
      const outcome = this.track(e.mid, this.client.send(this.keys.roomId, body, unb64(e.mid)), true).then(
        () => undefined,
        (err: unknown) => {
          // Nobody awaits a resend: one that is gone for good must still be told,
          // and so must one still not delivered (unless the owner closed the client).
          if (!(err instanceof ClientError) || err.code === 'CLOSED') return;
          if (keptForLater(err, true)) {
            this.keptResends++;
            this.emit('resend-kept', err);
            return;
          }
          this.refusedResends++;
          this.emit('resend-failed', err);
        },
      );
      this.resendOutcomes.add(outcome);
    }
    if (resent > 0) this.emit('resent', { count: resent });
  }

  /** Messages left by an earlier session that were refused for good when sent again (each also a `resend-failed`). */
  get resendsRefused(): number {
    return this.refusedResends;
  }

  /**
   * Messages left by an earlier session, sent again, that failed again in a
   * way that keeps them in the outbox for the next join (each also a `resend-kept`).
   */
  get resendsKept(): number {
    return this.keptResends;
  }

  /** Settles once every resend of an earlier session's message under way has been acknowledged, refused or kept, and reported. */
  resendsSettled(): Promise<void> {
    return this.resendOutcomes.settled();
  }

  /** Our nick in the room (what we sign as). */
  get nick(): string {
    return this.currentNick;
  }

  /**
   * Leaves the room and joins it again as `nick`: members see us leave and come
   * back under the new name, with the same key and sequence numbers. If the new
   * nick is refused (NICK_TAKEN, BAD_NICK), joins again as before and rethrows;
   * if that fails too, we are out of the room and it throws NOT_IN_ROOM (call
   * `rename` or `join` again to come back). Messages already written are
   * answered before we leave; those still waiting to be written stay in the
   * outbox and are sent, signed under the new nick, once we are back.
   */
  rename(nick: string): Promise<{ nick: string; members: Member[]; seq: number }> {
    return this.exclusive(() => this.renameNow(nick));
  }

  private async renameNow(nick: string): Promise<{ nick: string; members: Member[]; seq: number }> {
    const old = this.currentNick;
    await this.client.leave(this.keys.roomId);
    this.members.clear();
    this.currentNick = nick;
    try {
      return await this.joinNow();
    } catch (err) {
      this.currentNick = old;
      try {
        await this.joinNow();
      } catch (again) {
        const why = again instanceof Error ? again.message : String(again);
        throw new ClientError('NOT_IN_ROOM', `left the room, and could not join again as ${old}: ${why}`, false, {
          cause: err,
        });
      }
      throw err;
    }
  }

  /** Members currently in the room, as last reported. */
  who(): Member[] {
    return [...this.members.values()];
  }

  /** Nicks whose key changed and was not accepted: sending is blocked while any remain. */
  blockedBy(): string[] {
    return this.state
      .pins()
      .filter((p) => p.pending !== undefined)
      .map((p) => p.nick);
  }

  /**
   * Seals and sends a message; resolves with the server's sequence number.
   * @throws ClientError KEY_CHANGED while a key change is unaccepted
   */
  async send(text: string, kind: 'text' | 'action' = 'text'): Promise<{ seq: number; ts: number }> {
    let joinFailed: unknown;
    while (this.busy !== null) joinFailed = await this.busy;
    this.release(); // a key accepted by `confab trust` meanwhile: what it signed is shown before ours
    const blocked = this.blockedBy();
    if (blocked.length > 0) {
      throw new ClientError(
        'KEY_CHANGED',
        `sending is blocked: the key of ${blocked.join(', ')} changed; accept it (confab trust NICK) or leave`,
      );
    }
    const body = new TextEncoder().encode(text);
    if (body.length > MAX_TEXT) {
      // Refused before a sequence number is spent, so receivers see no false gap.
      throw new ClientError('BODY_TOO_LARGE', `message of ${body.length} bytes; the limit is ${MAX_TEXT}`);
    }
    // Refused before a number is spent (as above), unless it is kept for the
    // next join: the client is closed, or the join it waited for was cut off
    // (as a message sent just before would be). Not in the room otherwise (the
    // join was refused), it is refused, and not written down.
    const refused = this.client.refusal(this.keys.roomId);
    let keptBy: ClientError | undefined;
    if (refused !== undefined) {
      if (keptForLater(refused, false)) keptBy = refused;
      else if (joinFailed instanceof ClientError && keptForLater(joinFailed, false)) keptBy = joinFailed;
      else throw refused;
    }
    const type: MessageTypeValue = kind === 'action' ? MessageType.ACTION : MessageType.TEXT;
    let mid: Uint8Array = new Uint8Array(0);
    const envelope = this.sealNext((seq, prevHash) => {
      const sealed = sealEnvelope(
        this.keys,
        this.client.identity,
        { type, nick: this.nick, seq, sentAt: this.now(), prevHash, body },
        this.rng,
      );
      // Refused before a number is spent, as above, by the server's limit too.
      const tooLarge = this.client.tooLarge(sealed.length);
      if (tooLarge !== undefined) throw tooLarge;
      mid = this.rng(MSG_ID_LEN);
      return { envelope: sealed, mid: b64(mid) };
    });
    if (keptBy !== undefined) throw keptBy; // in the outbox now
    return this.track(b64(mid), this.client.send(this.keys.roomId, envelope, mid));
  }

  /**
   * Spends our next sequence number on the envelope `make` seals after
   * `prevHash` (or, for a message sealed again, keeps `again`'s), and writes
   * it to the outbox before it is sent. All or nothing: if sealing or the
   * write fails (a full disk), no number is spent and the state is as it was;
   * otherwise the next message would follow one nobody received, and a resend
   * of this one would reuse a number.
   */
  private sealNext(
    make: (seq: number, prevHash: Uint8Array) => { envelope: Uint8Array; mid: string },
    again?: { was: Copy[]; after: number; at?: { seq: number; prevHash: Uint8Array } },
  ): Uint8Array {
    const undo = this.state.undoPoint();
    try {
      let at = again?.at;
      if (at === undefined) {
        const next = this.state.nextSeq();
        at = { seq: next.seq, prevHash: next.prev === '' ? NO_PREVIOUS : unb64(next.prev) };
      }
      const { seq } = at;
      const { envelope, mid } = make(seq, at.prevHash);
      const hash = envelopeHash(envelope);
      const entry: OutboxEntry = { mid, body: b64(envelope), nick: this.nick, seq, hash };
      if (again !== undefined) {
        entry.was = again.was;
        entry.after = again.after;
      }
      this.state.sealed(hash, entry);
      return envelope;
    } catch (err) {
      undo();
      throw err;
    }
  }

  /**
   * An unsent message signed under an earlier nick (or chained to one sealed
   * again), sealed again as who we are now: receivers refuse a message signed
   * as one nick and relayed as another. Same message id: if the old copy did
   * reach the server, this one is recognised as its resend (and the old
   * copy, should the history bring it back, as ours). It keeps its number,
   * chained to what the others will have as the message before it, so they
   * see no gap; unless something of ours after it was acknowledged already,
   * when it, and every later one of the `pass`, takes the next.
   */
  private reseal(entry: OutboxEntry, pass: { resealed: boolean; renumbered: boolean; after: number }): Uint8Array {
    const old = openEnvelope(this.keys, unb64(entry.body));
    const was = [...earlierCopies(entry), { seq: old.seq, hash: b64(old.hash) }];
    const mark = this.state.sender(b64(this.client.identity.publicKey));
    if (mark !== undefined && old.seq <= mark.seq) pass.renumbered = true;
    const envelope = this.sealNext(
      (seq, prevHash) => ({
        envelope: sealEnvelope(this.keys, this.client.identity, { ...old, nick: this.nick, seq, prevHash }, this.rng),
        mid: entry.mid,
      }),
      {
        was,
        after: pass.after,
        ...(!pass.renumbered && { at: { seq: old.seq, prevHash: this.copyBefore(old.seq, mark) ?? old.prevHash } }),
      },
    );
    pass.resealed = true;
    return envelope;
  }

  /**
   * The hash of our message `seq - 1` as the others will have it, when it may
   * not be the one the message names: the copy waiting in the outbox (sealed
   * again, maybe at an earlier join), or the acknowledged one.
   */
  private copyBefore(seq: number, mark: { seq: number; hash: string } | undefined): Uint8Array | undefined {
    const before = this.state.outbox().find((e) => e.seq === seq - 1);
    const hash = before?.hash ?? (mark?.seq === seq - 1 ? mark.hash : undefined);
    return hash === undefined ? undefined : unb64(hash);
  }

  /** Keeps an outbox entry until its message is acknowledged, or refused for good. */
  private track(
    mid: string,
    sending: Promise<{ seq: number; ts: number }>,
    resend = false,
  ): Promise<{ seq: number; ts: number }> {
    this.inFlight.add(mid);
    return sending.then(
      (ack) => {
        this.inFlight.delete(mid);
        this.ownAcked(mid, ack.seq);
        this.state.outboxDone(mid);
        return ack;
      },
      (err: unknown) => {
        this.inFlight.delete(mid);
        // Still deliverable later (closed, cut off, server disk full): it stays for the next session.
        if (!keptForLater(err, resend)) this.state.outboxDone(mid);
        throw err;
      },
    );
  }

  /**
   * Our message `mid` was stored as room message `roomSeq`: it is now the
   * replay mark for our own key, as another sender's latest message is for
   * theirs. A server that later hands it (or an older one of ours) back as
   * history under another number is then caught like any other replay.
   */
  private ownAcked(mid: string, roomSeq: number): void {
    const entry = this.state.outbox().find((e) => e.mid === mid);
    if (entry === undefined) return;
    const copies = earlierCopies(entry);
    const earlier = copies[0];
    if (typeof entry.after === 'number' && roomSeq <= entry.after && copies.length === 1 && earlier !== undefined) {
      // Stored before the join this copy was sealed after: the server had the
      // earlier one (its ACK lost), and that is what the others have. (Of two
      // or more earlier copies we can't tell which.)
      this.state.delivered(mid, earlier.seq, earlier.hash);
    }
    let { seq, hash } = entry;
    if (seq === undefined || hash === undefined) {
      // Written down by a version that did not keep them: read them from the envelope.
      try {
        const opened = openEnvelope(this.keys, unb64(entry.body));
        seq = opened.seq;
        hash = b64(opened.hash);
      } catch {
        return;
      }
    }
    const key = b64(this.client.identity.publicKey);
    const mark = this.state.sender(key);
    if (mark === undefined || seq > mark.seq) this.state.markSender(key, { seq, hash, at: roomSeq });
    if (roomSeq > (this.state.cursor() ?? 0)) this.state.ownAheadAdd(roomSeq, hash);
  }

  /** Accepts the new key of `nick` after a key change; false if none is pending. The messages it signed meanwhile follow (`released`). */
  accept(nick: string): boolean {
    const accepted = acceptKeyChange(this.state, nick) !== undefined;
    if (accepted) this.keyChanges.delete(nick.toLowerCase());
    this.release();
    return accepted;
  }

  /**
   * Shows what was withheld under keys now accepted, and forgets what was
   * withheld under keys now refused. The pins may have been decided by another
   * process (`confab trust`): checked at each message and send while any wait.
   */
  private release(): void {
    // Each message released passes through receive(), which calls this again:
    // every decided key is taken out of the map first, so none is released twice.
    if (this.withheld.size === 0 || this.releasing) return;
    const accepted: Withheld[] = [];
    for (const [id, w] of this.withheld) {
      const pin = this.state.pin(w.nick);
      if (pin?.pending === w.key) continue; // still undecided
      this.withheld.delete(id);
      if (pin?.key === w.key) accepted.push(w); // else refused, or changed again: forgotten
    }
    this.releasing = true;
    try {
      for (const w of accepted) {
        this.emit('released', { nick: w.nick, count: w.messages.length, dropped: w.dropped });
        for (const m of w.messages) this.receive(m);
      }
    } finally {
      this.releasing = false;
    }
  }

  /** Keeps `m` to show if `key` is accepted for `nick`; false past WITHHELD_MAX. */
  private withhold(m: MessageEvent, nick: string, key: string, senderSeq: number): boolean {
    const id = `${nick.toLowerCase()} ${key}`;
    let w = this.withheld.get(id);
    if (w === undefined) {
      w = { nick, key, messages: [], dropped: 0, seqs: new Set() };
      this.withheld.set(id, w);
    }
    // A copy relayed again (its sender's number kept already) takes no second place.
    if (w.seqs.has(senderSeq)) return true;
    // Counted, not kept in a counter: a few nicks at most, and nothing to fall out of step.
    let kept = 0;
    for (const other of this.withheld.values()) kept += other.messages.length;
    if (kept >= WITHHELD_MAX) {
      w.dropped++;
      return false;
    }
    w.seqs.add(senderSeq);
    w.messages.push(m);
    return true;
  }

  /** The 60-digit safety number with `nick`'s pinned key, or undefined if none. */
  safetyNumber(nick: string): string | undefined {
    const pin = this.state.pin(nick);
    return pin === undefined ? undefined : safetyNumber(this.client.identity.publicKey, unb64(pin.key));
  }

  /** Whether a `missed` report covered any room number between `from` (unknown: no) and `to`. */
  private missedBetween(from: number | undefined, to: number): boolean {
    if (from === undefined) return false;
    // Both open intervals of room numbers; they share one if the larger start is 2 below the smaller end.
    return this.missedRanges.some((r) => Math.max(r.after, from) + 2 <= Math.min(r.before, to));
  }

  private mine(room: Uint8Array): boolean {
    return equalBytes(room, this.keys.roomId);
  }

  private resetMembers(list: MemberInfo[]): Member[] {
    this.members.clear();
    return list
      .filter((m) => !this.posingAsUs(m.nick, m.key))
      .map((m) => this.see({ room: this.keys.roomId, nick: m.nick, key: m.key }));
  }

  /**
   * A member the server announces under our own nick with another key: an
   * honest server admits one member per nick in a room, and we are it. Left
   * out (pinned, it would make a forged message under our name look genuine),
   * and reported once.
   */
  private posingAsUs(nick: string, key: Uint8Array): boolean {
    if (nick.toLowerCase() !== this.currentNick.toLowerCase() || equalBytes(key, this.client.identity.publicKey)) {
      return false;
    }
    this.once.protocol(
      'posing-as-us',
      `the server announced another member under your own nick ${nick}, with a key that is not yours: ignored (and any more like it)`,
    );
    return true;
  }

  /** A member's key as announced by the server: pin it, or notice a change. */
  private see(j: JoinEvent): Member {
    const member = this.judge(j.nick, j.key);
    this.members.set(j.nick.toLowerCase(), member);
    return member;
  }

  /**
   * Trust-on-first-use for `nick` and `key` (`keyText`: its base64url form);
   * reports a change once per new key. `own`: the key is ours.
   */
  private judge(nick: string, key: Uint8Array, keyText = b64(key), own = false): Member {
    const pin: Pin | undefined = this.state.pin(nick);
    if (pin === undefined) {
      this.state.setPin({ nick, key: keyText, verified: false }, true);
      return this.member(nick, key, keyText, false, 'new');
    }
    if (pin.key === keyText) {
      return this.member(nick, key, keyText, pin.verified, pin.verified ? 'verified' : 'known');
    }
    // Our own key is ours whatever the pin of its nick says: the backlog of a
    // nick we took back (a key lost, the nick released) pinned the old key,
    // and our own messages must not read as a change away from it.
    if (own) return this.member(nick, key, keyText, false, 'known');
    if (pin.pending !== keyText) {
      const lower = nick.toLowerCase();
      const shown = this.keyChanges.get(lower) ?? 0;
      if (shown <= KEY_CHANGES_SHOWN) this.keyChanges.set(lower, shown + 1);
      if (shown < KEY_CHANGES_SHOWN) {
        this.state.setPin({ ...pin, pending: keyText }, true);
        const oldFingerprint = this.fingerprintOf(pin.key, unb64(pin.key));
        this.emit('key-changed', { nick, oldFingerprint, newFingerprint: this.fingerprintOf(keyText, key) });
      } else if (shown === KEY_CHANGES_SHOWN) {
        this.emit(
          'error',
          new ClientError(
            'KEY_CHANGED',
            `the key of ${nick} keeps changing (${shown + 1} new keys this session): later ones are not shown, and only one shown can be accepted. A server may be forging keys; compare safety numbers with ${nick}`,
          ),
        );
      }
    }
    return this.member(nick, key, keyText, false, 'changed');
  }

  /**
   * A member whose fingerprint is computed when first read: at 5,200 SHA-512s
   * a key, computing it for each name of a 1,000-member room's list took 25 s
   * before the join returned, and a server announcing 10,000 made-up members
   * froze the client for minutes, whether or not anything showed them.
   */
  private member(nick: string, key: Uint8Array, keyText: string, verified: boolean, trust: Trust): Member {
    const fingerprintOf = (): string => this.fingerprintOf(keyText, key);
    return {
      nick,
      key,
      get fingerprint(): string {
        return fingerprintOf();
      },
      verified,
      trust,
    };
  }

  private fingerprintOf(keyText: string, key: Uint8Array): string {
    let fingerprint = this.fingerprints.get(keyText);
    if (fingerprint === undefined) {
      if (this.fingerprints.size >= FINGERPRINT_CACHE) this.fingerprints.clear();
      fingerprint = shortFingerprint(key);
      this.fingerprints.set(keyText, fingerprint);
    }
    return fingerprint;
  }

  private receive(m: MessageEvent): void {
    // A key accepted by `confab trust` meanwhile: what it signed before comes first.
    this.release();
    const reject = (reason: RejectReasonValue, message: string): void => {
      this.emit('rejected', { reason, nick: m.nick, seq: m.seq, ts: m.ts, message });
    };
    let opened;
    try {
      opened = openEnvelope(this.keys, m.body);
    } catch (err) {
      if (err instanceof EnvelopeError) reject(err.reason, err.message);
      else reject(RejectReason.MALFORMED, 'could not read the envelope');
      return;
    }
    if (opened.nick.toLowerCase() !== m.nick.toLowerCase()) {
      reject(RejectReason.NICK_MISMATCH, `signed by "${opened.nick}" but relayed as "${m.nick}"`);
      return;
    }
    if (!isValidNick(opened.nick)) {
      // No server lets such a nick join: a look-alike (a Cyrillic а, a zero-width
      // space) signed by someone with the invite, to pass for a pinned member.
      reject(
        RejectReason.MALFORMED,
        `signed as ${JSON.stringify(opened.nick)}, which is not a nick anyone can join with`,
      );
      return;
    }
    const keyText = b64(opened.senderKey);
    const own = equalBytes(opened.senderKey, this.client.identity.publicKey);
    if (own && m.history) {
      const hash = b64(opened.hash);
      const text = b64(m.body);
      const entry = this.state.outbox().find((e) => e.body === text || earlierCopies(e).some((w) => w.hash === hash));
      if (entry !== undefined || this.state.ownAheadAt(m.seq) === hash) {
        // Ours, already shown when it was sent: the server stored it, and the
        // catch-up after a reconnect brings it before the ACK that was lost
        // with the connection (the resend's ACK settles it), or before the
        // cursor passed it. Never shown twice; nor the copy we had signed
        // under our old nick, which is the one the others have: the resend,
        // its new copy, will be recognised by its id and not delivered.
        if (entry !== undefined && entry.body !== text) this.state.delivered(entry.mid, opened.seq, hash);
        this.state.ownAheadUpTo(m.seq);
        return;
      }
    }
    const mark = this.state.sender(keyText);
    // Read again on purpose, the server's numbering having started again or
    // gone back: had, and shown, already (our own latest too, whatever number it has now).
    if (m.history && m.seq <= this.rereadUpTo && mark !== undefined && opened.seq <= mark.seq) return;
    // Our latest acknowledged message, where the server stored it: a catch-up
    // from a cursor a restart left behind it (not shown in this session).
    const ownLatest =
      own &&
      m.history &&
      mark !== undefined &&
      opened.seq === mark.seq &&
      mark.at === m.seq &&
      b64(opened.hash) === mark.hash;
    if (mark !== undefined && opened.seq <= mark.seq && !ownLatest) {
      reject(RejectReason.REPLAY, `already had message ${opened.seq} from ${opened.nick} (latest ${mark.seq})`);
      return;
    }
    if (own && !m.history) {
      // An honest server never delivers a sender's own message to it (PROTOCOL.md
      // §4.3): this is ours, sent back to pass for a new one.
      reject(RejectReason.REPLAY, `the server sent back our own message ${opened.seq} as a new one`);
      return;
    }
    if (!own && !m.history && opened.nick.toLowerCase() === this.currentNick.toLowerCase()) {
      // Live under our own nick, which only our connection holds in this room:
      // the server relays such a message from nobody else. (History may hold a
      // nick's earlier owner: that is shown, with its fingerprint.)
      reject(RejectReason.KEY_CHANGED, `signed under your own nick "${opened.nick}" by a key that is not yours`);
      return;
    }
    const pinnedAt = this.pinnedAtJoin.get(opened.nick.toLowerCase());
    if (m.history && pinnedAt !== undefined && m.seq <= pinnedAt) {
      const pin = this.state.pin(opened.nick);
      if (pin !== undefined && pin.key !== keyText && pin.pending !== keyText) {
        // Not shown, as any message under a key other than the pinned one; but
        // the pin came from the room's current members, so this is an older
        // key, and a change to it would pin a key its owner no longer has.
        reject(
          RejectReason.KEY_CHANGED,
          `signed by a key "${opened.nick}" no longer uses (the room announced another when we joined)`,
        );
        return;
      }
    }
    const member = this.judge(opened.nick, opened.senderKey, keyText, own);
    if (member.trust === 'changed') {
      // Shown only once the user accepts the new key: until then it could be
      // anyone with the invite posing under this nick. Kept to show then.
      const kept = this.withhold(m, opened.nick, keyText, opened.seq);
      reject(
        RejectReason.KEY_CHANGED,
        `signed by a key that is not the one pinned for "${opened.nick}"${kept ? ' (shown if you accept it)' : ''}`,
      );
      return;
    }
    let warning: SecureMessage['warning'];
    if (own) {
      // Our own, from history: we know what we sent, so no gap or chain to check.
    } else if (mark !== undefined && opened.seq > mark.seq + 1) {
      // A sender's gap across room numbers a `missed` report gave up on is those messages: said once already.
      if (!(m.history && this.missedBetween(mark.at, m.seq)))
        this.emit('gap', {
          nick: opened.nick,
          fingerprint: member.fingerprint,
          missing: opened.seq - mark.seq - 1,
          after: mark.seq,
          before: opened.seq,
        });
    } else if (mark !== undefined && b64(opened.prevHash) !== mark.hash) {
      warning = 'history-mismatch';
    }
    if (!ownLatest) this.state.markSender(keyText, { seq: opened.seq, hash: b64(opened.hash), at: m.seq });
    this.emit('message', {
      ...member,
      kind: opened.type === MessageType.ACTION ? 'action' : 'text',
      text: decoder.decode(opened.body),
      seq: m.seq,
      ts: m.ts,
      senderSeq: opened.seq,
      sentAt: opened.sentAt,
      ...(warning !== undefined ? { warning } : {}),
      history: m.history,
      own,
    });
  }
}
