/**
 * The CLI loads only the module of the command it runs (src/cli/program.ts):
 * the command is found past the global options, also when an option's value
 * is a command's name; help, a misspelt command and completion scripts still
 * see every command. Libraries few runs need are loaded when used: the
 * progress bar on a terminal, minimatch for patterns.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CLI, Sandbox } from '../helpers/cli.js';
import { missingTools } from '../image-files/ext-images.js';

/** Every command: the modules src/cli/cmd-NAME.ts that register one. */
const ALL: string[] = [];
for (const f of readdirSync(dirname(CLI)).filter((n) => /^cmd-.*\.js$/.test(n)).sort()) {
  if ('register' in (await import(join(dirname(CLI), f)) as object)) ALL.push(f.slice(4, -3));
}

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
    assert.deepEqual(listed.sort(), [...ALL, 'help'].sort());
    const typo = await s.ok(['bakup'], {}, 2);
    assert.match(typo.stderr, /^holdfast: unknown command 'bakup'\n\(Did you mean backup\?\)/);
    // Argument errors of a command too (they began with commander's "error: ").
    assert.match((await s.ok(['restore', 'latest'], {}, 2)).stderr, /^holdfast: required option '-t, --target <dir>' not specified\n$/);
    assert.match((await s.ok(['help', 'restore'])).stdout, /--target <dir>/);
    assert.match((await s.ok(['restore', '--help'])).stdout, /--target <dir>/);
  });

  // A newcomer read two defaults for --stdin-filename, an --overwrite text that did not parse, and no HOLDFAST_PASSWORD.
  it('help texts: one default each, --overwrite in words, and every password variable', async () => {
    const flat = async (args: string[]): Promise<string> => (await s.ok(args)).stdout.replace(/\s+/g, ' ');
    const backup = await flat(['backup', '--help']);
    const start = backup.indexOf('--stdin-filename <name>');
    const stdinName = backup.slice(start, backup.indexOf(' --stdin-from-command run', start));
    assert.equal(stdinName.match(/default/g)?.length, 2, stdinName);
    assert.doesNotMatch(stdinName, /\(default: "stdin"\) *$/);
    assert.match(await flat(['restore', '--help']), /replace them \(always\), keep those with the snapshot's size and mtime \(if-changed\), or leave them alone \(never\)/);
    const top = await flat(['--help']);
    for (const v of ['HOLDFAST_PASSWORD_FILE', 'HOLDFAST_PASSWORD_COMMAND', 'HOLDFAST_PASSWORD ']) assert.ok(top.includes(v), v);
  });

  // `agent enroll --help` did not show --fingerprint, which an enrolment with a self-signed certificate needs.
  it('help of a command shows the global options it honours, and only those', async () => {
    const globalsIn = async (args: string[]): Promise<string[]> => {
      const out = (await s.ok([...args, '--help'])).stdout;
      const at = out.indexOf('Global Options:');
      if (at < 0) return [];
      return [...out.slice(at).split(/\n\n/)[0]!.matchAll(/^ {2}(?:-\w, )?(--[a-z-]+)/gm)].map((m) => m[1]!);
    };
    const expected: [string[], string[]][] = [
      [['agent', 'enroll'], ['--password-file', '--password-command', '--quiet', '--cacert', '--fingerprint']],
      [['agent', 'run'], ['--limit-download']],
      [['escrow', 'recover'], ['--quiet', '--cacert', '--fingerprint']],
      [['server', 'login'], ['--password-file', '--quiet', '--json', '--cacert', '--fingerprint']],
      [['server', 'safe', 'list'], ['--quiet', '--json', '--cacert', '--fingerprint']],
      [['server'], ['--quiet', '--cacert']],
      [['version'], ['--json']],
      [['check'], ['--repo', '--password-file', '--password-command', '--quiet', '--json', '--verbose', '--limit-upload', '--limit-download', '--cacert', '--fingerprint']],
    ];
    for (const [args, want] of expected) assert.deepEqual(await globalsIn(args), want, args.join(' '));
  });

  it('a completion script names every command', async () => {
    const script = (await s.ok(['completion', 'bash'])).stdout;
    for (const name of ALL) assert.ok(script.includes(name), name);
  });
});

describe('libraries loaded when used', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-loading-');
    mkdirSync(s.path('src', 'logs'), { recursive: true });
    writeFileSync(s.path('src', 'a.txt'), 'a');
    writeFileSync(s.path('src', 'logs', 'b.log'), 'b');
    await s.ok(['init']);
  });
  after(() => s.remove());

  it('a backup on a terminal draws the progress bar', { skip: missingTools('script') }, () => {
    const env = { ...process.env, ...s.env(), HOLDFAST_PROGRESS_FPS: '1000000000' };
    const r = spawnSync('script', ['-qec', `"${process.execPath}" "${CLI}" backup "${s.path('src')}"`, '/dev/null'], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout);
    assert.match(r.stdout, /100% =+ 2\/2 files/);
    assert.match(r.stdout, /snapshot [0-9a-f]{8} saved/);
  });

  it('--exclude and a glob of --files-from still match', async () => {
    writeFileSync(s.path('list'), `${s.path('src', '*')}\n`);
    await s.ok(['backup', '--exclude', '*.log', '--files-from', s.path('list')]);
    const src = s.path('src');
    const names = (await s.ok(['ls', 'latest'])).stdout.split('\n').filter((l) => l.startsWith(`${src}/`)).map((l) => l.slice(src.length));
    assert.deepEqual(names, ['/a.txt', '/logs']);
  });
});
