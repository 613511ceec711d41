#!/usr/bin/env node
import { Writable } from 'node:stream';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_HOST, DEFAULT_LIMITS, DEFAULT_PORT, holdLock } from '../server/index.js';
import type { HeldLock } from '../server/index.js';
import {
  DEFAULT_BACKLOG,
  ExitCode,
  GIVE_UP_MS,
  isValidNick,
  MAX_BACKLOG,
  runId,
  runJoin,
  runTrust,
  runVerify,
} from '../tui/index.js';
import { releaseNick } from './admin.js';
import { DEFAULT_SEMI_SPACE_MIB, MAX_STATS_SECONDS, serve } from './serve.js';

const VERSION = '0.1.0';

function port(value: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) {
    throw new InvalidArgumentError('expected a port number 0-65535');
  }
  return Number(value);
}

const LIMIT_NAMES = Object.keys(DEFAULT_LIMITS);

/** `--limit name=value`, repeatable: any field of the server's limits. */
function limit(value: string, previous: Record<string, number> = {}): Record<string, number> {
  const m = /^([A-Za-z]+)=(\d+)$/.exec(value);
  if (m === null || !LIMIT_NAMES.includes(m[1] as string) || Number(m[2]) <= 0) {
    throw new InvalidArgumentError(`expected NAME=N with N > 0 and NAME one of ${LIMIT_NAMES.join(', ')}`);
  }
  return { ...previous, [m[1] as string]: Number(m[2]) };
}

function program(): Command {
  const cli = new Command('confab')
    .description('End-to-end encrypted terminal chat.')
    .version(VERSION)
    .exitOverride()
    .configureOutput({
      // One line for every usage error, whatever commander's wording.
      outputError: (text, write) =>
        write(
          `confab: ${
            text
              .replace(/^error: /, '')
              .trim()
              .split('\n')[0] ?? ''
          }\n`,
        ),
    });

  cli
    .command('serve')
    .description('run a relay server (it forwards ciphertext; it cannot read messages)')
    .option(
      '--host <host>',
      'interface to listen on',
      (v) => {
        // Node takes '' for every interface: an unset $HOST would open the server to all.
        if (v.trim() === '') throw new InvalidArgumentError('expected an interface (0.0.0.0 for all of them)');
        return v;
      },
      DEFAULT_HOST,
    )
    .option('--port <port>', 'TCP port; 0 picks a free one', port, DEFAULT_PORT)
    .option('--data <dir>', 'directory for server state (history.db); without it, history is kept in memory only')
    .option('--no-history', 'keep no history: no backlog, resume, resend detection or nick ownership')
    .addOption(
      new Option('--sync <mode>', 'full: sync every commit to disk (survives power loss); normal survives a crash')
        .choices(['normal', 'full'])
        .default('normal'),
    )
    .option('--no-native-writes', "write through Node's streams even where the native fan-out is built")
    .option('--no-io-uring', 'native fan-out: one send() per socket instead of io_uring batches')
    .option('--stats <seconds>', 'log counters, memory and event-loop delay every N seconds', (v) => {
      // Past 2^31 - 1 ms a Node timer fires after 1 ms: a stats line every millisecond.
      if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > MAX_STATS_SECONDS) {
        throw new InvalidArgumentError(`expected a whole number of seconds, 1 to ${MAX_STATS_SECONDS}`);
      }
      return Number(v);
    })
    .option(
      '--semi-space <MiB>',
      "cap V8's young generation at this many MiB per semi-space (0: V8's own, 16); ignored when node is given one",
      (v) => {
        if (!/^\d+$/.test(v) || Number(v) > 1024)
          throw new InvalidArgumentError('expected a whole number of MiB, at most 1024');
        return Number(v);
      },
      DEFAULT_SEMI_SPACE_MIB,
    )
    .option('--limit <name=value>', 'override one limit, e.g. messageIntervalMs=100 (repeatable; doc/LIMITS.md)', limit)
    .addOption(
      new Option('--log-level <level>', 'log detail on stderr')
        .choices(['fatal', 'error', 'warn', 'info', 'debug', 'silent'])
        .default('info'),
    )
    .action(
      async (opts: {
        host: string;
        port: number;
        data?: string;
        history: boolean;
        nativeWrites: boolean;
        ioUring: boolean;
        sync: 'normal' | 'full';
        logLevel: string;
        limit?: Record<string, number>;
        stats?: number;
        semiSpace: number;
      }) => {
        process.exitCode = await serve(opts);
      },
    );

  const admin = cli
    .command('admin')
    .description("operate on a server's data directory")
    // Without a known subcommand: a usage error of one line, not commander's help on stderr.
    .argument('[command]')
    // Commander would list the subcommand and that argument both: "[command] [command]".
    .usage('[options] [command]')
    .action((command?: string) =>
      admin.error(
        command === undefined
          ? "'admin' needs a command: release-nick (confab admin --help)"
          : `unknown admin command '${command}': the one there is is release-nick`,
        { exitCode: 2 },
      ),
    );
  admin
    .command('release-nick')
    .description('free a nick for the next key that uses it (after a member lost their key)')
    .argument('<nick>', 'the nick to release', nickArgument)
    .requiredOption('--data <dir>', "the server's data directory")
    .action((nick: string, opts: { data: string }) => {
      process.exitCode = releaseNick(nick, opts.data, process.stdout, process.stderr);
    });

  cli
    .command('join')
    .description('join a room by invite link, or create one on HOST[:PORT] (interactive in a terminal)')
    .argument('<target>', "an invite link 'confab://HOST:PORT/#SECRET', or HOST[:PORT] to create a room")
    .option(
      '--nick <nick>',
      "your name in the room (default: $USER, without the characters a nick can't have; else guest)",
    )
    .option('--json', 'print one JSON object per event (doc/JSON.md)', false)
    .option(
      '--home <dir>',
      "where confab keeps this user's files (default: $CONFAB_HOME, else $XDG_DATA_HOME/confab, else ~/.local/share/confab)",
    )
    .option('--bell', 'ring the terminal bell when someone mentions your nick (interactive client)', false)
    .option(
      '--backlog <n>',
      `past messages to show on your first visit to a room (default ${DEFAULT_BACKLOG}, at most ${MAX_BACKLOG})`,
      (v) => {
        if (!/^\d+$/.test(v) || Number(v) > MAX_BACKLOG) {
          throw new InvalidArgumentError(`expected a whole number from 0 to ${MAX_BACKLOG}`);
        }
        return Number(v);
      },
    )
    .option(
      '--give-up <seconds>',
      `line mode, at the end of input: how long to wait for the server to answer what it owes (unreachable, or connected and silent) before giving up, up to ${MAX_GIVE_UP_S} (0: for ever)`,
      (v) => {
        if (!/^\d+$/.test(v) || Number(v) > MAX_GIVE_UP_S) {
          throw new InvalidArgumentError(`expected a whole number of seconds from 0 to ${MAX_GIVE_UP_S}`);
        }
        return Number(v);
      },
      GIVE_UP_MS / 1000,
    )
    .action(
      async (
        target: string,
        opts: { nick?: string; json: boolean; home?: string; bell: boolean; backlog?: number; giveUp: number },
      ) => {
        process.stdout.off('error', endOnEpipe); // line mode handles its own
        process.exitCode = await runJoin(
          {
            target,
            json: opts.json,
            bell: opts.bell,
            giveUpMs: opts.giveUp * 1000,
            ...(opts.backlog !== undefined ? { backlog: opts.backlog } : {}),
            ...(opts.nick !== undefined ? { nick: opts.nick } : {}),
            ...(opts.home !== undefined ? { home: opts.home } : {}),
            lock: (path) => {
              const lock = holdLock(path);
              if (lock !== null) held.push(lock); // a lock collected as garbage would be released
              return lock !== null;
            },
          },
          { stdin: process.stdin, stdout: process.stdout, stderr: forgivingStderr(), env: process.env },
        );
      },
    );
  const io = { stdout: process.stdout, stderr: process.stderr, env: process.env };
  const homeOption = "where confab keeps this user's files (default: $CONFAB_HOME or the data dir)";

  cli
    .command('id')
    .description('print your key fingerprint (made on first run)')
    .option('--home <dir>', homeOption)
    .action((opts: { home?: string }) => {
      process.exitCode = runId(opts, io);
    });

  cli
    .command('trust')
    .description("decide about a member's changed key (accept it, or --reject to keep the old one) and send again")
    .argument('<nick>', 'whose new key to accept', nickArgument)
    .option('--room <invite>', 'the room (default: the only room this home knows)')
    .option('--reject', 'keep the old key; messages signed by the new one stay rejected', false)
    .option('--home <dir>', homeOption)
    .action((nick: string, opts: { room?: string; home?: string; reject: boolean }) => {
      process.exitCode = runTrust({ nick, ...opts }, io);
    });

  cli
    .command('verify')
    .description('show the safety number you share with a member; --yes marks their key verified')
    .argument('<nick>', 'whom to verify', nickArgument)
    .option('--room <invite>', 'the room (default: the only room this home knows)')
    .option('--yes', 'you compared the numbers and they match', false)
    .option('--home <dir>', homeOption)
    .action((nick: string, opts: { room?: string; home?: string; yes: boolean }) => {
      process.exitCode = runVerify({ nick, ...opts }, io);
    });
  return cli;
}

/** Longest `--give-up`, a day (setTimeout takes at most 2^31 - 1 ms). */
const MAX_GIVE_UP_S = 86_400;

/** Locks held until the process ends (the kernel drops them however it ends). */
const held: HeldLock[] = [];

/** A NICK argument, checked as `confab join --nick` checks it: a usage error (exit 2), not a nick nobody has. */
function nickArgument(value: string): string {
  if (!isValidNick(value)) throw new InvalidArgumentError('a nick is 1 to 24 of A-Z a-z 0-9 _ . -');
  return value;
}

/**
 * stderr for `confab join`: a notice that can't be written (`2>&1 | head -1`
 * gone, `2>/dev/full`) is lost, not the run. Before, the EPIPE of the first
 * notice ended it before a line of its input was read or sent.
 */
function forgivingStderr(): Writable {
  process.stderr.on('error', () => {});
  return new Writable({
    write(chunk: Buffer, _encoding, done): void {
      try {
        process.stderr.write(chunk);
      } catch {
        // A file that can't be written throws here (a pipe's error comes as an event, above).
      }
      done();
    },
  });
}

// stdout may be a pipe that closes early (`| head`): that ends us quietly, but
// for `confab join`, which still sends its input (see runJoin).
function endOnEpipe(err: NodeJS.ErrnoException): void {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
}
process.stdout.on('error', endOnEpipe);

try {
  await program().parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version asked for exit 0; anything else commander refuses (including
    // the help it shows for a missing command) is a usage error.
    process.exitCode = err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
  } else {
    process.stderr.write(`confab: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = ExitCode.FAILURE;
  }
}
