/**
 * The CLI loads only the module of the command it runs (src/cli/main.ts):
 * the command is found past the global options, also when an option's value
 * is a command's name; help, a misspelt command and completion scripts still
 * see every command.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Sandbox } from '../helpers/cli.js';

const ALL = ['init', 'backup', 'snapshots', 'ls', 'diff', 'stats', 'restore', 'dump', 'mount', 'key', 'forget', 'unlock', 'serve-nbd', 'restore-image', 'prune', 'check', 'repair', 'tag', 'cat', 'find', 'version', 'completion'];

describe('the command is found past global options, and only it is loaded', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-loading-');
    // A repository in a folder named "restore", a password file named "backup": values that are command names.
    writeFileSync(s.path('backup'), 'correct horse\n');
    await s.ok(['--repo', 'restore', 'init'], { cwd: s.dir });
  });
  after(() => s.remove());

  it('skips the value of every global option that takes one', async () => {
    const env = { HOLDFAST_REPOSITORY: undefined, HOLDFAST_PASSWORD: undefined };
    for (const args of [
      ['--repo', 'restore', '--password-file', 'backup', 'snapshots', '--json'],
      ['-r', 'restore', '--password-command', 'cat backup', '--limit-upload', '0', '--limit-download', '0', 'snapshots', '--json'],
      ['-q', '--repo=restore', '--password-file=backup', 'snapshots', '--json'],
    ]) {
      const r = await s.ok(args, { cwd: s.dir, env });
      assert.deepEqual(JSON.parse(r.stdout), [], args.join(' '));
    }
  });

  it('help lists every command; a misspelt one is suggested; help of one command shows its options', async () => {
    const help = (await s.ok(['--help'])).stdout;
    const listed = [...help.slice(help.indexOf('Commands:')).matchAll(/^ {2}([a-z-]+)/gm)].map((m) => m[1]);
    assert.deepEqual(listed, [...ALL, 'help']);
    const typo = await s.ok(['bakup'], {}, 2);
    assert.match(typo.stderr, /unknown command 'bakup'\n\(Did you mean backup\?\)/);
    assert.match((await s.ok(['help', 'restore'])).stdout, /--target <dir>/);
    assert.match((await s.ok(['restore', '--help'])).stdout, /--target <dir>/);
  });

  it('a completion script names every command', async () => {
    const script = (await s.ok(['completion', 'bash'])).stdout;
    for (const name of ALL) assert.ok(script.includes(name), name);
  });
});
