import { chmodSync, existsSync, mkdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { confab, Proc, serve, tempHome } from '../helpers/cli.js';
import { mountTmpfs } from '../helpers/tmpfs.js';

const procs: Proc[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) {
    p.kill('SIGKILL');
    await p.exited;
  }
});
function track(p: Proc): Proc {
  procs.push(p);
  return p;
}

describe('identity', () => {
  it('confab id makes a key on first run (mode 0600) and prints the same fingerprint after', () => {
    const home = tempHome();
    const first = confab('id', '--home', home);
    expect(first.status).toBe(0);
    expect(first.stdout.trim()).toMatch(/^(\d{5} ){5}\d{5}$/);
    expect(statSync(join(home, 'identity.json')).mode & 0o777).toBe(0o600);
    expect(confab('id', '--home', home).stdout).toBe(first.stdout);
    expect(confab('id', '--home', tempHome()).stdout).not.toBe(first.stdout);
  });

  it('refuses a key file that others can read, with a clear error', () => {
    const home = tempHome();
    confab('id', '--home', home);
    chmodSync(join(home, 'identity.json'), 0o644);
    const r = confab('id', '--home', home);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/readable by others \(mode 644\).*chmod 600/);
    const join_ = confab('join', 'localhost:1', '--home', home, '--nick', 'x');
    expect(join_.status).toBe(1);
    expect(join_.stderr).toMatch(/readable by others/);
  });

  it('an identity.json that is a directory, or a link to nothing, is reported as such', () => {
    const home = tempHome();
    mkdirSync(join(home, 'identity.json'));
    const dir = confab('id', '--home', home);
    expect(dir.status).toBe(1);
    // Before: "readable by others (mode 755)", and a chmod that could not help.
    expect(dir.stderr).toMatch(/identity\.json is not a file/);
    const other = tempHome();
    confab('id', '--home', other);
    const file = join(other, 'identity.json');
    // A symbolic link to nothing: `stat` finds no file, and creating one finds it there.
    rmSync(file);
    symlinkSync(join(other, 'nowhere', 'x'), file);
    const dangling = confab('id', '--home', other);
    expect(dangling.status).toBe(1);
    expect(dangling.stderr).toMatch(/identity\.json is a symbolic link to nothing/);
  });

  it('a home that cannot be made on a read-only file system says where and why', (ctx) => {
    const fs = mountTmpfs('1M');
    if (fs === null) return ctx.skip('mounting a tmpfs needs root');
    try {
      fs.readOnly();
      const home = join(fs.path, 'me', 'confab');
      for (const args of [['id'], ['join', '127.0.0.1:1', '--nick', 'x']]) {
        const r = confab(...args, '--home', home);
        expect(r.status).toBe(1);
        // Before: "ENOENT: no such file or directory, mkdir", as if the path were mistyped.
        expect(r.stderr).toContain(
          `confab: cannot make the confab home ${home}: ${fs.path} can't be written (a read-only file system?)`,
        );
      }
    } finally {
      fs.unmount();
    }
  });

  it('confab trust and verify under a mistyped --home say so, and make no home or key there', () => {
    const missing = join(tempHome(), 'typo');
    for (const args of [
      ['trust', 'bob'],
      ['verify', 'bob'],
    ]) {
      const r = confab(...args, '--home', missing);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/no confab identity in .*typo: this home has joined no room \(is --home right\?\)/);
    }
    // Before: the home and a new identity were made, and the error spoke of the room.
    expect(existsSync(missing)).toBe(false);
  });
});

/** A server with a data directory; alice (line mode) made a room, and bob has joined it. */
async function aliceAndBob(): Promise<{ data: string; aliceHome: string; alice: Proc; invite: string; bob: Proc }> {
  const data = tempHome();
  const { proc: server, port } = await serve(['--data', data]);
  track(server);
  const aliceHome = tempHome();
  const alice = track(new Proc(['join', `127.0.0.1:${port}`, '--nick', 'alice', '--home', aliceHome]));
  const invite = (await alice.line(/^\* invite: /)).replace('* invite: ', '');
  const bob = track(new Proc(['join', invite, '--nick', 'bob', '--home', tempHome()]));
  await alice.line(/^\* bob \d{5}-\d{5} joined$/);
  return { data, aliceHome, alice, invite, bob };
}

describe('key change, trust and verify through the CLI', () => {
  it('blocks sending after a key change until `confab trust`, then `confab verify` marks the key', async () => {
    const { data, aliceHome, alice, invite, bob } = await aliceAndBob();
    bob.write('hello from the real bob\n');
    await alice.line(/^<bob \d{5}-\d{5}> hello from the real bob$/);
    bob.end();
    expect(await bob.exited).toBe(0);

    // Same nick, another key (another home): the server refuses it, since the
    // nick belongs to bob's key, until its operator releases the nick.
    const otherHome = tempHome();
    const refused = track(new Proc(['join', invite, '--nick', 'bob', '--home', otherHome]));
    expect(await refused.exited).toBe(3);
    expect(refused.stderr.join('\n')).toMatch(/NICK_OWNED/);
    const released = confab('admin', 'release-nick', 'bob', '--data', data);
    expect(released.status).toBe(0);
    expect(released.stdout).toMatch(/^released bob/);
    expect(confab('admin', 'release-nick', 'bob', '--data', data).status).toBe(1); // nobody owns it now

    // Then the new key gets in: a warning, and alice can't send.
    const other = track(new Proc(['join', invite, '--nick', 'bob', '--home', otherHome]));
    const warning = await alice.line(/^! WARNING: the key of bob changed/);
    expect(warning).toMatch(/was \d{5}-\d{5}, now \d{5}-\d{5}.*confab trust bob to accept it/);
    other.write('trust me\n');
    await alice.line(/^! rejected a message relayed as bob .*key-changed/);
    alice.write('who are you?\n');
    await alice.line(/KEY_CHANGED: sending is blocked/, 'stderr');

    // The number to compare while the change waits is the NEW key's: the one the new bob reads out.
    // Before, it was the old key's, which the real bob would have confirmed, vouching for an impostor.
    const digits = (out: string): string => (out.match(/^ {2}[\d ]+$/gm) ?? []).join('');
    const pending = confab('verify', 'bob', '--room', invite, '--home', aliceHome);
    expect(pending.status).toBe(0);
    expect(pending.stdout).toMatch(
      /^the key of bob changed \(was \d{5}-\d{5}, now \d{5}-\d{5}\) and is not accepted\.\n/,
    );
    expect(pending.stdout).toMatch(/If it matches, accept the new key: confab trust bob --room INVITE;/);
    const newBob = confab('verify', 'alice', '--room', invite, '--home', otherHome);
    expect(digits(pending.stdout).replace(/ /g, '')).toMatch(/^\d{60}$/);
    expect(digits(pending.stdout).replace(/ /g, '')).toBe(digits(newBob.stdout).replace(/ /g, ''));

    const trust = confab('trust', 'bob', '--room', invite, '--home', aliceHome);
    expect(trust.status).toBe(0);
    expect(trust.stdout).toMatch(/^accepted the new key of bob \(\d{5}-\d{5}\)/);
    alice.write('ok, welcome\n');
    await other.line(/^<alice \d{5}-\d{5}> ok, welcome$/);
    // What the new key signed while it waited is shown once it is accepted (before, it was gone for good),
    // before alice's own next line goes out.
    await alice.line(/^\* 1 message bob sent under the new key before you accepted it follows$/);
    await alice.line(/^<bob \d{5}-\d{5}> trust me$/);
    const out = alice.stdout;
    expect(out.findIndex((l) => /> trust me$/.test(l))).toBeGreaterThan(
      out.findIndex((l) => /before you accepted/.test(l)),
    );

    const shown = confab('verify', 'bob', '--room', invite, '--home', aliceHome);
    expect(shown.status).toBe(0);
    expect(shown.stdout).toMatch(/safety number with bob/);
    expect(shown.stdout.match(/\b\d{5}\b/g)?.length).toBeGreaterThanOrEqual(12);
    expect(shown.stdout).toMatch(/If it matches: confab verify bob --room INVITE --yes/);
    expect(confab('verify', 'bob', '--room', invite, '--home', aliceHome, '--yes').status).toBe(0);
    // Before, a verified key was still told "If it matches: confab verify bob --yes".
    expect(confab('verify', 'bob', '--room', invite, '--home', aliceHome).stdout).toMatch(
      /verified\):\n[\s\S]*You marked this key verified already\.\n$/,
    );
    other.write('now verified\n');
    await alice.line(/^<bob \d{5}-\d{5} ✓> now verified$/);
    expect(confab('trust', 'bob', '--room', invite, '--home', aliceHome).status).toBe(1); // nothing pending
  });

  it('`confab trust --reject` keeps the old key and unblocks sending', async () => {
    const { data, aliceHome, alice, invite, bob } = await aliceAndBob();
    bob.end();
    await alice.line(/^\* bob left$/);
    expect(confab('admin', 'release-nick', 'bob', '--data', data).status).toBe(0);
    const impostor = track(new Proc(['join', invite, '--nick', 'bob', '--home', tempHome()]));
    const warning = await alice.line(/^! WARNING: the key of bob changed/);
    expect(warning).not.toContain(invite); // the secret is never printed in a warning
    const r = confab('trust', 'bob', '--reject', '--home', aliceHome);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^kept the old key of bob/);
    alice.write('sending works again\n');
    await impostor.line(/^<alice \d{5}-\d{5}> sending works again$/);
    impostor.write('let me in\n');
    await alice.line(/^! rejected a message relayed as bob .*key-changed/);
  });

  it('the JSON output carries fingerprint, verified and rejection events', async () => {
    const { proc: server, port } = await serve();
    track(server);
    const alice = track(new Proc(['join', `127.0.0.1:${port}`, '--nick', 'alice', '--json', '--home', tempHome()]));
    const invite = (JSON.parse(await alice.line(/"type":"invite"/)) as { link: string }).link;
    const bob = track(new Proc(['join', invite, '--nick', 'bob', '--json', '--home', tempHome()]));
    bob.write('hello\n');
    const line = JSON.parse(await alice.line(/"type":"message"/)) as Record<string, unknown>;
    expect(line).toMatchObject({ nick: 'bob', text: 'hello', verified: false, trust: 'known', senderSeq: 1, seq: 1 });
    expect(line['fingerprint']).toMatch(/^\d{5}-\d{5}$/);
  });
});
