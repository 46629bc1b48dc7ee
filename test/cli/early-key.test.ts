/**
 * The key derivation the CLI starts before it loads the command
 * (src/cli/early-key.ts): started only for a command that opens the
 * repository with its key, a local repository with one key file and a
 * password from the environment or a file; never runs a password command.
 * Whatever it guesses, the command opens with the right key or says the
 * password is wrong, as before.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startKeyDerivation } from '../../src/cli/early-key.js';
import { decodeKeyFile, type KeyDerivation, type KeyFile } from '../../src/repo/key-file.js';
import { readKdfHint, saveKdfHint } from '../../src/cli/key-hint.js';
import { S3Backend } from '../../src/storage/s3-backend.js';
import { parseS3Location } from '../../src/storage/s3-backend-config.js';
import { CLI, Sandbox } from '../helpers/cli.js';
import { startS3rver, type TestS3 } from '../helpers/s3rver.js';

const PASSWORD = 'correct horse';

describe('the key derivation started before the command loads', () => {
  let s: Sandbox;
  let file: KeyFile;
  const saved = { ...process.env };

  /** startKeyDerivation for `holdfast ARGS` with `env` as the whole password and repository environment. */
  const start = async (args: string[], env: Record<string, string | undefined>) => {
    for (const k of ['HOLDFAST_REPOSITORY', 'HOLDFAST_PASSWORD', 'HOLDFAST_PASSWORD_FILE', 'HOLDFAST_PASSWORD_COMMAND']) delete process.env[k];
    Object.assign(process.env, env);
    try {
      return await startKeyDerivation(['node', 'holdfast', ...args]);
    } finally {
      process.env = { ...saved };
    }
  };

  before(async () => {
    s = await Sandbox.create('holdfast-early-key-');
    await s.ok(['init']);
    writeFileSync(s.path('pw'), `${PASSWORD}\n`);
    const keys = s.path('repo', 'keys');
    file = decodeKeyFile(readFileSync(join(keys, readdirSync(keys)[0]!)), 'key');
  });
  after(() => s.remove());

  it('is started for a keyed command, with the password from the environment or a file, and only for that password', async () => {
    for (const [args, env] of [
      [['snapshots'], { HOLDFAST_REPOSITORY: s.repo, HOLDFAST_PASSWORD: PASSWORD }],
      [['-r', s.repo, '--password-file', s.path('pw'), 'backup', '/nonexistent'], {}],
      [['--repo=' + `local:${s.repo}`, '-q', 'restore', 'latest'], { HOLDFAST_PASSWORD_FILE: s.path('pw') }],
    ] as [string[], Record<string, string>][]) {
      const d = await start(args, env);
      assert.ok(d, args.join(' '));
      assert.equal(d.take(file, 'not it'), undefined, 'another password');
      const key = await d.take(file, PASSWORD);
      assert.ok(key?.length === 32, args.join(' '));
      key.fill(0);
      d.dispose();
    }
  });

  it('is not started for a command without the key, another kind of location, a password command or prompt, or several key files', async () => {
    const env = { HOLDFAST_REPOSITORY: s.repo, HOLDFAST_PASSWORD: PASSWORD };
    for (const args of [['init'], ['forget', '--keep-last', '1'], ['prune'], ['check'], ['copy', '--from-repo', s.repo], ['version'], ['--repo']]) {
      assert.equal(await start(args, env), undefined, args.join(' '));
    }
    assert.equal(await start(['snapshots'], { ...env, HOLDFAST_REPOSITORY: 's3:https://127.0.0.1:1/bucket' }), undefined);
    assert.equal(await start(['snapshots'], { ...env, HOLDFAST_REPOSITORY: s.path('missing') }), undefined);
    assert.equal(await start(['snapshots'], { HOLDFAST_REPOSITORY: s.repo }), undefined, 'no password: the command asks or says so');
    // A password command runs once, when the command asks for the password, never ahead of it.
    const ran = s.path('ran');
    assert.equal(await start(['--password-command', `touch ${ran}; echo ${PASSWORD}`, 'snapshots'], { HOLDFAST_REPOSITORY: s.repo }), undefined);
    assert.equal(await start(['snapshots'], { HOLDFAST_REPOSITORY: s.repo, HOLDFAST_PASSWORD_COMMAND: `touch ${ran}; echo ${PASSWORD}` }), undefined);
    assert.equal(existsSync(ran), false);
  });

  it('is not started for what the command would not read the same way: options after the command, pipes, planted key entries', async () => {
    const env = { HOLDFAST_REPOSITORY: s.repo, HOLDFAST_PASSWORD: PASSWORD };
    for (const args of [['snapshots', '--help'], ['snapshots', '-h'], ['snapshots', '-r', s.repo], ['snapshots', `--repo=${s.repo}`], ['snapshots', '--password-file', s.path('pw')]]) {
      assert.equal(await start(args, env), undefined, args.join(' '));
    }
    // A FIFO gives its bytes once (or waits for a writer), and so do /dev/stdin and a shell's <(…): never read ahead of the command.
    const fifo = s.path('pw-fifo');
    execFileSync('mkfifo', [fifo]);
    assert.equal(await start(['--password-file', fifo, 'snapshots'], { HOLDFAST_REPOSITORY: s.repo }), undefined);
    assert.equal(await start(['snapshots'], { HOLDFAST_REPOSITORY: s.repo, HOLDFAST_PASSWORD_FILE: fifo }), undefined);
    const piped = spawnSync('/bin/sh', ['-c', 'echo "$PW" | "$NODE" "$CLI" --password-file /dev/stdin snapshots --json'], {
      encoding: 'utf8', env: { ...s.env({ HOLDFAST_PASSWORD: undefined }), PATH: process.env['PATH'], PW: PASSWORD, NODE: process.execPath, CLI } as NodeJS.ProcessEnv,
    });
    assert.equal(piped.status, 0, piped.stderr);
    // The one key entry planted as a FIFO, a symlink to a device, or too large: not read ahead (a FIFO would wait, /dev/zero never end).
    const other = await Sandbox.create('holdfast-early-key-planted-');
    try {
      await other.ok(['init']);
      const keys = other.path('repo', 'keys');
      const real = join(keys, readdirSync(keys)[0]!);
      const held = readFileSync(real);
      const planted = (make: () => void): Promise<KeyDerivation | undefined> => {
        rmSync(real, { force: true });
        make();
        return start(['snapshots'], { HOLDFAST_REPOSITORY: other.repo, HOLDFAST_PASSWORD: PASSWORD });
      };
      assert.equal(await planted(() => execFileSync('mkfifo', [real])), undefined, 'a FIFO');
      const wrong = await other.run(['snapshots']);
      assert.equal(wrong.code, 12, wrong.stderr);
      assert.equal(await planted(() => symlinkSync('/dev/zero', real)), undefined, 'a symlink to /dev/zero');
      assert.equal(await planted(() => writeFileSync(real, Buffer.concat([held, Buffer.alloc(64 * 1024, 0x20)]))), undefined, 'larger than a key file');
      const d = await planted(() => writeFileSync(real, held));
      assert.ok(d, 'the key file itself');
      d.dispose();
    } finally {
      await other.remove();
    }
  });

  it('a wrong password is still wrong, and the right one still opens, with one key file and with two', async () => {
    await s.ok(['backup', s.path('pw')]);
    const opens = async (env: Record<string, string | undefined>): Promise<void> => {
      const [snap] = JSON.parse((await s.ok(['snapshots', '--json'], { env })).stdout) as { paths: string[] }[];
      assert.deepEqual(snap?.paths, [s.path('pw')]);
      const wrong = await s.run(['snapshots'], { env: { ...env, HOLDFAST_PASSWORD: 'wrong horse', HOLDFAST_PASSWORD_FILE: undefined } });
      assert.equal(wrong.code, 12, wrong.stderr);
      assert.match(wrong.stderr, /wrong password/);
    };
    await opens({});
    writeFileSync(s.path('pw2'), 'another one\n');
    await s.ok(['key', 'add', '--new-password-file', s.path('pw2')]);
    assert.equal(await start(['snapshots'], { HOLDFAST_REPOSITORY: s.repo, HOLDFAST_PASSWORD: PASSWORD }), undefined, 'two key files');
    await opens({});
    await opens({ HOLDFAST_PASSWORD: undefined, HOLDFAST_PASSWORD_FILE: s.path('pw2') });
  });
});

describe('the key derivation started ahead for a repository over the network, from what this machine recorded', () => {
  let s: Sandbox;
  let s3: TestS3;
  const saved = { ...process.env };

  before(async () => {
    s = await Sandbox.create('holdfast-early-key-s3-');
    s3 = await startS3rver();
  });
  after(async () => {
    process.env = { ...saved };
    await s3.close();
    await s.remove();
  });

  /** The one key file of the S3 repository at `prefix`, decoded. */
  const keyFileOf = async (prefix: string): Promise<KeyFile> => {
    const backend = new S3Backend(parseS3Location(s3.locationRest(prefix)), s3.settings);
    const names: string[] = [];
    for await (const info of backend.list('key')) names.push(info.name);
    assert.equal(names.length, 1);
    return decodeKeyFile(await backend.load({ type: 'key', name: names[0]! }), 'key');
  };

  it('init and every open record the key file\'s salt and parameters; the next command derives from them, and one recorded wrongly changes nothing', async () => {
    const location = s3.location('early');
    const env = { ...s3.env, HOLDFAST_CACERT: s3.caFile, HOLDFAST_REPOSITORY: location };
    process.env = { ...saved, ...s.env(env) };
    assert.equal(await startKeyDerivation(['node', 'holdfast', 'snapshots']), undefined, 'nothing recorded yet');
    await s.ok(['init'], { env });
    const file = await keyFileOf('early');
    assert.deepEqual(readKdfHint(location), file.kdf);
    const d = await startKeyDerivation(['node', 'holdfast', 'snapshots']);
    assert.ok(d);
    const key = await d.take(file, PASSWORD);
    assert.equal(key?.length, 32);
    key.fill(0);
    // A record that no longer fits (another salt): the command derives anew, opens, and records the right one.
    saveKdfHint(location, { ...file.kdf, salt: Buffer.alloc(32, 7).toString('base64') });
    await s.ok(['backup', s.path()], { env });
    assert.deepEqual(readKdfHint(location), file.kdf);
    const wrong = await s.run(['snapshots'], { env: { ...env, HOLDFAST_PASSWORD: 'wrong horse' } });
    assert.equal(wrong.code, 12, wrong.stderr);
    // A local repository is read directly, and never recorded.
    saveKdfHint(s.repo, file.kdf);
    assert.equal(readKdfHint(s.repo), undefined);
  });

  it('a record that is not a regular file of parameters within bounds is not used', async () => {
    const location = s3.location('hostile');
    process.env = { ...saved, ...s.env({ ...s3.env, HOLDFAST_REPOSITORY: location }) };
    const file = { algorithm: 'scrypt' as const, salt: Buffer.alloc(32, 1).toString('base64'), N: 1024, r: 8, p: 1 };
    saveKdfHint(location, file);
    assert.ok(readKdfHint(location));
    const path = join(s.path('cache'), 'locations', createHash('sha256').update(location).digest('hex'));
    for (const bad of [{ ...file, N: 2 ** 20 }, { ...file, N: 1000 }, { ...file, salt: 5 }, 'not json']) {
      writeFileSync(path, typeof bad === 'string' ? bad : JSON.stringify(bad));
      assert.equal(await startKeyDerivation(['node', 'holdfast', 'snapshots']), undefined, JSON.stringify(bad));
    }
    rmSync(path);
    execFileSync('mkfifo', [path]);
    assert.equal(readKdfHint(location), undefined, 'a FIFO is not waited on');
    rmSync(path);
    symlinkSync('/dev/zero', path);
    assert.equal(readKdfHint(location), undefined, 'a device is not read');
  });

  it('records are written by renaming a new file over the name: a symlink, a FIFO or a linked folder planted in the cache is replaced or left alone, never written through', { timeout: 120_000 }, async () => {
    const location = s3.location('early');
    const env = { ...s3.env, HOLDFAST_CACERT: s3.caFile, HOLDFAST_REPOSITORY: location };
    const locations = s.path('cache', 'locations');
    const record = join(locations, createHash('sha256').update(location).digest('hex'));
    const victim = s.path('victim');
    const snapshotsOk = async (): Promise<void> => {
      const r = await s.run(['snapshots', '--json'], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout + r.stderr, /"salt"/);
    };
    writeFileSync(victim, 'keep me\n');
    for (const plant of [() => symlinkSync(victim, record), () => symlinkSync('/proc/self/fd/1', record), () => execFileSync('mkfifo', [record])]) {
      rmSync(record, { force: true });
      plant();
      await snapshotsOk();
      assert.equal(readFileSync(victim, 'utf8'), 'keep me\n');
      assert.ok(lstatSync(record).isFile(), 'the planted entry is replaced by the record');
      assert.ok(readKdfHint(location));
    }
    // The folder itself a link elsewhere: nothing is written there.
    const elsewhere = s.path('elsewhere');
    mkdirSync(elsewhere);
    rmSync(locations, { recursive: true });
    symlinkSync(elsewhere, locations);
    await snapshotsOk();
    assert.deepEqual(readdirSync(elsewhere), []);
    rmSync(locations);
    // The key hint (<cache>/<id>/key) is written the same way.
    const [id] = readdirSync(s.path('cache')).filter((n) => /^[0-9a-f]{64}$/.test(n));
    const hint = s.path('cache', id!, 'key');
    rmSync(hint);
    symlinkSync(victim, hint);
    await snapshotsOk();
    assert.equal(readFileSync(victim, 'utf8'), 'keep me\n');
    assert.ok(lstatSync(hint).isFile());
  });
});
