import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** What a member knows about another nick's key in one room. */
export interface Pin {
  nick: string;
  /** The accepted key, base64url. */
  key: string;
  verified: boolean;
  /** A different key seen for this nick and not yet accepted. */
  pending?: string;
}

/** The per-sender replay window: highest sequence seen and that envelope's hash. */
export interface SenderMark {
  seq: number;
  /** base64url SHA-256 of that envelope, for the next one's prevHash. */
  hash: string;
}

interface Data {
  v: 1;
  /** Our own last sequence number in this room. */
  mySeq: number;
  /** base64url hash of our last envelope. */
  myPrev: string;
  pins: Record<string, Pin>;
  senders: Record<string, SenderMark>;
}

function empty(): Data {
  return { v: 1, mySeq: 0, myPrev: '', pins: {}, senders: {} };
}

/**
 * One room's client-side trust state: pinned keys (TOFU), verification marks,
 * each sender's high-water mark, and our own counter. Kept as a small JSON file
 * in the home (`rooms/<room id>.json`, mode 0600), or only in memory.
 */
export class RoomState {
  private data: Data;
  private readonly path: string | undefined;

  private constructor(path: string | undefined, data: Data) {
    this.path = path;
    this.data = data;
  }

  /** State kept in memory only (library use without a home). */
  static memory(): RoomState {
    return new RoomState(undefined, empty());
  }

  /** Loads (or starts) the state of `roomIdHex` under `home`. */
  static load(home: string, roomIdHex: string): RoomState {
    const dir = join(home, 'rooms');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, `${roomIdHex}.json`);
    let data = empty();
    try {
      const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<Data>;
      if (parsed.v === 1) data = { ...empty(), ...parsed };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return new RoomState(path, data);
  }

  private mtime = 0;

  /**
   * Picks up pins changed by another process (`confab trust`, `confab
   * verify`) since we last read or wrote the file. A stat per call; the file is
   * re-read only when it changed.
   */
  reload(): void {
    if (this.path === undefined) return;
    try {
      const mtime = statSync(this.path).mtimeMs;
      if (mtime === this.mtime) return;
      const parsed = JSON.parse(readFileSync(this.path, 'utf8')) as Partial<Data>;
      this.mtime = mtime;
      if (parsed.v === 1) this.data.pins = parsed.pins ?? {};
    } catch {
      // no file yet, or mid-rename: keep what we have
    }
  }

  pin(nick: string): Pin | undefined {
    this.reload();
    return this.data.pins[nick.toLowerCase()];
  }

  pins(): Pin[] {
    this.reload();
    return Object.values(this.data.pins);
  }

  setPin(pin: Pin): void {
    this.reload();
    this.data.pins[pin.nick.toLowerCase()] = pin;
    this.save();
  }

  sender(key: string): SenderMark | undefined {
    return this.data.senders[key];
  }

  /** Records a sender's newest message; saved lazily (see `flush`). */
  markSender(key: string, mark: SenderMark): void {
    this.data.senders[key] = mark;
    this.dirty = true;
  }

  /**
   * Reserves our next sequence number and records the envelope hash it will
   * follow. Written to disk before the message leaves, so a restart never
   * reuses a number (receivers would take it for a replay).
   */
  nextSeq(): { seq: number; prev: string } {
    const prev = this.data.myPrev;
    this.data.mySeq += 1;
    return { seq: this.data.mySeq, prev };
  }

  /** Records the hash of the envelope just sealed with `nextSeq`, and saves. */
  sealed(hash: string): void {
    this.data.myPrev = hash;
    this.save();
  }

  private dirty = false;

  /** Writes pending sender marks. */
  flush(): void {
    if (this.dirty) this.save();
  }

  private save(): void {
    this.dirty = false;
    if (this.path === undefined) return;
    this.reload(); // never write back pins another process has just changed
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.data), { mode: 0o600 });
    renameSync(tmp, this.path);
    try {
      this.mtime = statSync(this.path).mtimeMs;
    } catch {
      this.mtime = 0;
    }
  }
}
