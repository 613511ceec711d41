import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RoomState } from '../../../src/client/index.js';

const ROOM = 'ab'.repeat(16);
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function home(): string {
  const d = mkdtempSync(join(tmpdir(), 'confab-state-'));
  dirs.push(d);
  return d;
}

/** The pins as written in the room's file, or null if there is no file. */
function filePins(dir: string): Record<string, { key: string; verified: boolean; pending?: string }> | null {
  const path = join(dir, 'rooms', `${ROOM}.json`);
  if (!existsSync(path)) return null;
  return (JSON.parse(readFileSync(path, 'utf8')) as { pins: Record<string, { key: string; verified: boolean }> }).pins;
}

const endOfTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * erin and dave pinned; a second process (`confab verify`, `confab trust`) has
 * the file open; the first has just noticed a new key for erin, not yet written.
 */
function changeNoticed(): { dir: string; relay: RoomState; cli: RoomState } {
  const dir = home();
  const relay = RoomState.load(dir, ROOM);
  relay.setPin({ nick: 'erin', key: 'old', verified: false });
  relay.setPin({ nick: 'dave', key: 'kd', verified: false });
  const cli = RoomState.load(dir, ROOM);
  relay.setPin({ nick: 'erin', key: 'old', verified: false, pending: 'new' }, true);
  return { dir, relay, cli };
}

describe('RoomState pins', () => {
  it('writes the pins of a burst of newcomers once, at the end of the turn', async () => {
    const dir = home();
    const state = RoomState.load(dir, ROOM);
    for (let i = 0; i < 10_000; i++) state.setPin({ nick: `m${i}`, key: `k${i}`, verified: false }, true);
    // Not one rewrite per member: nothing is on disk until the turn ends.
    expect(filePins(dir)).toBeNull();
    expect(state.pin('m9999')).toEqual({ nick: 'm9999', key: 'k9999', verified: false });
    await endOfTurn();
    const pins = filePins(dir);
    expect(Object.keys(pins ?? {})).toHaveLength(10_000);
    expect(pins?.['m0']).toMatchObject({ key: 'k0', verified: false });
  });

  it("writes the user's decisions at once", () => {
    const dir = home();
    const state = RoomState.load(dir, ROOM);
    state.setPin({ nick: 'Bob', key: 'k1', verified: true });
    expect(filePins(dir)?.['bob']).toMatchObject({ key: 'k1', verified: true });
  });

  it('keeps a pin not yet written when another process writes the file first', async () => {
    const dir = home();
    const relay = RoomState.load(dir, ROOM);
    const cli = RoomState.load(dir, ROOM); // `confab verify` in another process
    relay.setPin({ nick: 'carol', key: 'kc', verified: false }, true);
    cli.setPin({ nick: 'dave', key: 'kd', verified: true });
    expect(relay.pin('dave')).toMatchObject({ verified: true }); // picked up
    expect(relay.pin('carol')).toMatchObject({ key: 'kc' }); // and ours kept
    await endOfTurn();
    expect(filePins(dir)).toMatchObject({ carol: { key: 'kc' }, dave: { key: 'kd', verified: true } });
  });

  it('keeps a noticed key change when another process rewrites the file for another nick', async () => {
    const { dir, relay, cli } = changeNoticed();
    cli.setPin({ nick: 'dave', key: 'kd', verified: true }); // `confab verify dave` meanwhile
    // Sending stays blocked on erin's change, and the file gets the mark.
    expect(
      relay
        .pins()
        .filter((p) => p.pending !== undefined)
        .map((p) => p.nick),
    ).toEqual(['erin']);
    await endOfTurn();
    expect(filePins(dir)).toMatchObject({ erin: { key: 'old', pending: 'new' }, dave: { verified: true } });
  });

  it('keeps a second change noticed for a nick after the user accepted the first', async () => {
    const { dir, relay, cli } = changeNoticed();
    cli.setPin({ nick: 'erin', key: 'new', verified: false }); // `confab trust erin`
    expect(relay.pin('erin')).toEqual({ nick: 'erin', key: 'new', verified: false });
    relay.setPin({ nick: 'erin', key: 'new', verified: false, pending: 'newer' }, true); // another key yet
    cli.setPin({ nick: 'dave', key: 'kd', verified: true }); // `confab verify dave`
    expect(relay.pin('erin')).toMatchObject({ key: 'new', pending: 'newer' });
    await endOfTurn();
    expect(filePins(dir)?.['erin']).toMatchObject({ key: 'new', pending: 'newer' });
  });

  it("sees another process's write even when the file's mtime did not change", () => {
    const dir = home();
    const relay = RoomState.load(dir, ROOM);
    relay.setPin({ nick: 'dave', key: 'kd', verified: false });
    const path = join(dir, 'rooms', `${ROOM}.json`);
    // A clock that ticks once a second: our write and the other process's get the same mtime.
    const tick = new Date(Math.floor(Date.now() / 1000) * 1000);
    utimesSync(path, tick, tick);
    expect(relay.pin('dave')).toMatchObject({ verified: false }); // read at that mtime
    RoomState.load(dir, ROOM).setPin({ nick: 'dave', key: 'kd', verified: true });
    utimesSync(path, tick, tick);
    expect(relay.pin('dave')).toMatchObject({ verified: true });
  });

  it("lets the file's word on a nick win over a change noticed and not yet written", async () => {
    const dir = home();
    const relay = RoomState.load(dir, ROOM);
    relay.setPin({ nick: 'erin', key: 'old', verified: false });
    const cli = RoomState.load(dir, ROOM);
    relay.setPin({ nick: 'erin', key: 'old', verified: false, pending: 'new' }, true);
    cli.setPin({ nick: 'erin', key: 'other', verified: true }); // the user decided meanwhile
    await endOfTurn();
    expect(filePins(dir)?.['erin']).toEqual({ nick: 'erin', key: 'other', verified: true });
    expect(relay.pin('erin')).toEqual({ nick: 'erin', key: 'other', verified: true });
  });
});

describe('RoomState on a disk that will not take it', () => {
  // As root, permissions refuse nothing: a directory where the file goes makes
  // each write fail (EISDIR) as a full disk (ENOSPC) or a read-only home (EACCES) would.
  const blockSave = (dir: string): string => {
    const tmp = join(dir, 'rooms', `${ROOM}.json.${process.pid}.tmp`);
    mkdirSync(tmp);
    return tmp;
  };

  it('reports one error, not one per message, keeps the changes, and writes them at the next change once it can', async () => {
    const dir = home();
    const state = RoomState.load(dir, ROOM);
    const errors: string[] = [];
    state.on('error', (e) => errors.push(e.code));
    const blocked = blockSave(dir);
    for (let i = 1; i <= 5; i++) {
      // Each turn's save fails in the background: before, it threw there and the process died.
      state.markSender('k', { seq: i, hash: `h${i}` });
      state.setPin({ nick: `m${i}`, key: `k${i}`, verified: false }, true);
      await endOfTurn();
    }
    expect(errors).toEqual(['SAVE_FAILED']);
    expect(filePins(dir)).toBeNull();
    expect(state.sender('k')).toEqual({ seq: 5, hash: 'h5' });
    expect(state.flush()).toBe(false); // and does not throw
    expect(errors).toEqual(['SAVE_FAILED']);

    rmSync(blocked, { recursive: true });
    state.markSender('k', { seq: 6, hash: 'h6' });
    await endOfTurn();
    expect(Object.keys(filePins(dir) ?? {})).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    expect(RoomState.load(dir, ROOM).sender('k')).toEqual({ seq: 6, hash: 'h6' });
    expect(readdirSync(join(dir, 'rooms')).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    // A new failure after the recovery is news again.
    blockSave(dir);
    state.markSender('k', { seq: 7, hash: 'h7' });
    await endOfTurn();
    expect(errors).toEqual(['SAVE_FAILED', 'SAVE_FAILED']);
  });

  it('a cursor that cannot be written is reported once and kept in memory, not thrown at the connection', () => {
    const dir = home();
    const state = RoomState.load(dir, ROOM);
    const errors: string[] = [];
    state.on('error', (e) => errors.push(e.code));
    mkdirSync(join(dir, 'rooms', `${ROOM}.cursor`));
    state.setCursor(3);
    state.setCursor(4);
    expect(errors).toEqual(['SAVE_FAILED']);
    expect(state.cursor()).toBe(4);
  });

  it('a run killed between showing messages and saving their senders: the next one starts where the marks were saved', () => {
    const dir = home();
    const before = RoomState.load(dir, ROOM);
    before.markSender('bob', { seq: 5, hash: 'h5', at: 5 });
    before.setCursor(5);
    before.flush();
    // Two more of bob's shown: the cursor written at once, the marks due at the end of the turn, which never comes.
    before.markSender('bob', { seq: 7, hash: 'h7', at: 7 });
    before.setCursor(7);
    const after = RoomState.load(dir, ROOM);
    // Before, 7 (the cursor file) with bob's mark at 5: his next message, 8, showed a gap of 2 that was never there.
    expect(after.cursor()).toBe(5);
    expect(after.sender('bob')?.seq).toBe(5);
    // A state file from before the cursor was kept in it: the cursor file's.
    const legacy = join(dir, 'rooms', `${ROOM}.json`);
    const data = JSON.parse(readFileSync(legacy, 'utf8')) as { cursor?: number };
    delete data.cursor;
    writeFileSync(legacy, JSON.stringify(data));
    expect(RoomState.load(dir, ROOM).cursor()).toBe(7);
  });
});

describe('RoomState.load', () => {
  it('starts afresh only when there is no file; a file it cannot take as version 1 is an error naming it', () => {
    const dir = home();
    expect(RoomState.load(dir, ROOM).nextSeq().seq).toBe(1);
    const path = join(dir, 'rooms', `${ROOM}.json`);
    for (const [text, why] of [
      ['{"v":1,', /JSON/],
      ['{"v":2,"mySeq":40}', /written by a newer confab \(version 2\)/],
      ['[1]', /not a room state/],
      ['{}', /not a room state/],
      ['null', /not a room state/],
      ['{"v":1,"senders":null}', /pins or senders/],
      ['{"v":1,"pins":[]}', /pins or senders/],
    ] as const) {
      writeFileSync(path, text);
      // Before, all but the first were taken for a fresh room, written over, and our numbers started at 1 again.
      expect(() => RoomState.load(dir, ROOM)).toThrow(new RegExp(`cannot read this room's state file ${path} \\(.*`));
      expect(() => RoomState.load(dir, ROOM)).toThrow(why);
      expect(readFileSync(path, 'utf8')).toBe(text);
    }
  });
});
