/**
 * Mistakes a new user makes with the repository location, the password file
 * and flag values: one plain `holdfast:` line and the documented exit code,
 * never a raw system error.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';

describe('system errors are said plainly', () => {
  let s: Sandbox;
  let file: string;
  before(async () => {
    s = await Sandbox.create('holdfast-syserr-');
    file = s.path('a-file');
    writeFileSync(file, 'not a repository');
  });
  after(() => s.remove());

  it('a repository location that is a file: exit 10 for commands, 1 for init, no ENOTDIR/EEXIST', async () => {
    for (const args of [['snapshots'], ['ls', 'latest'], ['forget', '--keep-last', '1'], ['prune']]) {
      failsWith(await s.run(['-r', file, ...args]), 10, /^holdfast: no holdfast repository at local:\S+a-file: it is a file, not a folder$/);
    }
    failsWith(await s.run(['-r', `${file}/below`, 'snapshots']), 10, /a-file is a file, not a folder$/);
    failsWith(await s.run(['-r', file, 'init']), 1, /^holdfast: cannot create a repository at local:\S+a-file: it is a file, not a folder$/);
    failsWith(await s.run(['-r', `${file}/below`, 'init']), 1, /^holdfast: cannot create a repository at .*a-file is a file, not a folder$/);
  });

  it('a missing --password-file is named, exit 1', async () => {
    const missing = s.path('no-such-password');
    failsWith(await s.run(['--password-file', missing, 'init'], { env: { HOLDFAST_PASSWORD: undefined } }), 1,
      /^holdfast: cannot read the password file \S+no-such-password \(--password-file\): no such file$/);
    assert.ok(!existsSync(s.repo), 'nothing was created');
  });

  it('--compression bogus is a usage error (exit 2), for init and backup', async () => {
    failsWith(await s.run(['init', '--compression', 'bogus']), 2, /^holdfast: unknown compression "bogus" \(use one of off, default, better, max\)$/);
    assert.ok(!existsSync(s.repo), 'nothing was created');
    await s.ok(['init']);
    failsWith(await s.run(['backup', '--compression', 'bogus', file]), 2, /unknown compression "bogus"/);
  });
});
