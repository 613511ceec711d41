import { existsSync } from 'node:fs';
import type { Writable } from 'node:stream';
import {
  acceptKeyChange,
  ensureHome,
  fingerprint,
  groupDigits,
  IdentityFileError,
  identityPath,
  InviteError,
  loadIdentity,
  markVerified,
  rejectKeyChange,
  resolveHome,
  roomStateFor,
  verifyInfo,
} from '../client/index.js';
import type { Identity } from '../client/index.js';
import { ExitCode } from './join.js';
import { inert } from './sanitize.js';

export interface KeyCommandIO {
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

/**
 * Runs `run` with the home's identity. Only `confab id` makes a home: the
 * commands about a room's keys need one that has joined it, and making one
 * for a mistyped `--home` would give a new key and say "no key is known".
 */
function withIdentity(
  home: string | undefined,
  io: KeyCommandIO,
  run: (id: Identity, dir: string) => number,
  makeHome = false,
): number {
  const where = resolveHome(home, io.env);
  if (!makeHome && !existsSync(identityPath(where))) {
    const hint =
      home !== undefined && home !== ''
        ? 'is --home right?'
        : (io.env['CONFAB_HOME'] ?? '') !== ''
          ? 'is CONFAB_HOME right?'
          : 'confab join makes it';
    io.stderr.write(`confab: no confab identity in ${where}: this home has joined no room (${hint})\n`);
    return ExitCode.FAILURE;
  }
  try {
    const dir = ensureHome(where);
    return run(loadIdentity(dir), dir);
  } catch (e) {
    if (e instanceof IdentityFileError || e instanceof InviteError) {
      io.stderr.write(`confab: ${e.message}\n`);
      return e instanceof InviteError ? ExitCode.USAGE : ExitCode.FAILURE;
    }
    throw e;
  }
}

/** `confab id`: this user's fingerprint (made on first run). */
export function runId(options: { home?: string }, io: KeyCommandIO): number {
  return withIdentity(
    options.home,
    io,
    (id) => {
      io.stdout.write(`${groupDigits(fingerprint(id.publicKey))}\n`);
      return ExitCode.OK;
    },
    true,
  );
}

/** `confab trust NICK`: accept a changed key so sending to the room resumes. */
export function runTrust(
  options: { nick: string; room?: string; home?: string; reject?: boolean },
  io: KeyCommandIO,
): number {
  return withIdentity(options.home, io, (_id, dir) => {
    const state = roomStateFor(dir, options.room);
    if (options.reject === true) {
      if (!rejectKeyChange(state, options.nick)) {
        io.stderr.write(`confab: no key change is waiting for ${inert(options.nick)} in that room\n`);
        return ExitCode.FAILURE;
      }
      io.stdout.write(
        `kept the old key of ${inert(options.nick)}; messages signed by the new one stay rejected, and you can send again\n`,
      );
      return ExitCode.OK;
    }
    const fp = acceptKeyChange(state, options.nick);
    if (fp === undefined) {
      io.stderr.write(`confab: no key change is waiting for ${inert(options.nick)} in that room\n`);
      return ExitCode.FAILURE;
    }
    io.stdout.write(
      `accepted the new key of ${inert(options.nick)} (${fp}). It is not verified: compare safety numbers with confab verify ${inert(options.nick)}\n`,
    );
    return ExitCode.OK;
  });
}

/** `confab verify NICK [--yes]`: show the safety number; with --yes, mark the key verified. */
export function runVerify(
  options: { nick: string; room?: string; home?: string; yes: boolean },
  io: KeyCommandIO,
): number {
  return withIdentity(options.home, io, (id, dir) => {
    const state = roomStateFor(dir, options.room);
    const info = verifyInfo(state, id, options.nick);
    const nick = inert(options.nick);
    if (info === undefined) {
      io.stderr.write(`confab: no key is known for ${nick} in that room (have they joined while you were there?)\n`);
      return ExitCode.FAILURE;
    }
    if (options.yes) {
      if (!markVerified(state, options.nick)) {
        io.stderr.write(`confab: the key of ${nick} changed and is not accepted; run confab trust ${nick} first\n`);
        return ExitCode.FAILURE;
      }
      io.stdout.write(`marked the key of ${nick} (${info.fingerprint}) as verified\n`);
      return ExitCode.OK;
    }
    const groups = groupDigits(info.safetyNumber).split(' ');
    // The home may know several rooms: a command to run next names the room again.
    const room = options.room !== undefined ? ' --room INVITE' : '';
    if (info.replaces !== undefined) {
      io.stdout.write(
        `the key of ${nick} changed (was ${info.replaces}, now ${info.fingerprint}) and is not accepted.\n` +
          `safety number with the NEW key of ${nick} (${info.fingerprint}):\n`,
      );
    } else {
      io.stdout.write(`safety number with ${nick} (${info.fingerprint}${info.pin.verified ? ', verified' : ''}):\n`);
    }
    for (let i = 0; i < groups.length; i += 4) io.stdout.write(`  ${groups.slice(i, i + 4).join(' ')}\n`);
    const next =
      info.replaces !== undefined
        ? `If it matches, accept the new key: confab trust ${nick}${room}; then confab verify ${nick}${room} --yes. If it does not, keep the old one: confab trust ${nick}${room} --reject`
        : info.pin.verified
          ? 'You marked this key verified already.'
          : `If it matches: confab verify ${nick}${room} --yes`;
    io.stdout.write(`Compare it with ${nick} in person or by voice; they see the same number. ${next}\n`);
    return ExitCode.OK;
  });
}
