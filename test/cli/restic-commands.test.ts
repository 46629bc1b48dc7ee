/**
 * The commands and flags restic users look for, in restic's spelling:
 * version, snapshots --latest, tag, cat, find, -v and shell completion.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf, type RunResult } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';
import { missingTools } from '../image-files/ext-images.js';
import { Forge } from '../helpers/forge.js';

describe('restic\'s commands and flags', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-restic-');
    for (const d of ['a', 'b']) {
      mkdirSync(s.path(d, 'sub'), { recursive: true });
      writeFileSync(s.path(d, 'sub', 'notes.txt'), `notes of ${d}`);
      writeFileSync(s.path(d, 'other.bin'), d);
    }
    await s.ok(['init']);
    for (const t of ['2024-01-01 10:00:00', '2024-01-02 10:00:00', '2024-01-03 10:00:00']) await s.ok(['backup', '-q', '--time', t, s.path('a')]);
    await s.ok(['backup', '-q', '--time', '2024-01-01 12:00:00', s.path('b')]);
  });
  after(() => s.remove());

  it('version prints the version of package.json, also as JSON', async () => {
    const r = await s.ok(['version']);
    assert.match(r.stdout, /^holdfast 0\.\d+\.\d+ \(node v\d+\.\d+\.\d+, linux\/\w+\)\n$/);
    const j = JSON.parse((await s.ok(['--json', 'version'])).stdout) as { version: string };
    assert.equal(j.version, (await s.ok(['--version'])).stdout.trim());
  });

  it('snapshots --latest N: the newest N of each host and paths', async () => {
    const all = await snapshotsOf(s);
    const r = await s.ok(['snapshots', '--json', '--latest', '1']);
    const latest = JSON.parse(r.stdout) as { time: string; paths: string[] }[];
    assert.deepEqual(latest.map((x) => x.paths[0]), [s.path('b'), s.path('a')]);
    assert.equal(latest[1]!.time, all.filter((x) => x.paths[0] === s.path('a')).pop()!.time);
    assert.equal(JSON.parse((await s.ok(['snapshots', '--json', '--latest', '2'])).stdout).length, 3);
    assert.match((await s.ok(['snapshots', '--latest', '1'])).stdout, /^2 snapshots$/m);
    failsWith(await s.run(['snapshots', '--latest', '0']), 2, /--latest "0"/);
  });

  it('tag --add/--remove/--set rewrites the snapshots chosen (new object, old one removed); they stay authentic', async () => {
    const before = await snapshotsOf(s);
    const r = await s.ok(['tag', '--add', 'web,prod', '--path', s.path('a')]);
    assert.match(r.stdout, /modified 3 snapshots/);
    let now = await snapshotsOf(s);
    assert.equal(now.length, before.length);
    const ofA = now.filter((x) => x.paths[0] === s.path('a'));
    assert.deepEqual(ofA.map((x) => x.tags), [['web', 'prod'], ['web', 'prod'], ['web', 'prod']]);
    assert.ok(ofA.every((x) => !before.some((b) => b.id === x.id)), 'each changed snapshot has a new id');
    assert.deepEqual(now.map((x) => x.time), before.map((x) => x.time), 'times are kept');
    await s.ok(['check']); // the new objects carry valid MACs

    const newest = ofA[2]!;
    await s.ok(['tag', '--remove', 'prod', newest.id.slice(0, 8)]);
    now = await snapshotsOf(s);
    assert.deepEqual(now.find((x) => x.time === newest.time)!.tags, ['web']);
    assert.match((await s.ok(['tag', '--add', 'web', '--tag', 'web'])).stdout, /no snapshots were modified/);
    await s.ok(['tag', '--set', '', '--tag', 'web']);
    assert.ok((await snapshotsOf(s)).every((x) => x.tags.length === 0));
    failsWith(await s.run(['tag', '--set', 'x', '--add', 'y']), 2, /--set replaces the tags/);
    failsWith(await s.run(['tag']), 2, /give --add, --remove or --set/);
  });

  it('tag is refused by an append-only client before anything is written (exit 13)', async () => {
    const before = await snapshotsOf(s);
    const r = await s.run(['tag', '--add', 'x'], { env: { HOLDFAST_APPEND_ONLY: '1' } });
    failsWith(r, 13, /append-only: tag/);
    assert.deepEqual(await snapshotsOf(s), before);
  });

  it('cat prints config, index, snapshot and key as JSON, a tree blob as JSON, a data blob and a pack as bytes', async () => {
    const config = JSON.parse((await s.ok(['cat', 'config'])).stdout) as { id: string; version: number };
    assert.match(config.id, /^[0-9a-f]{64}$/);
    const snap = (await snapshotsOf(s))[0]!;
    const cs = JSON.parse((await s.ok(['cat', 'snapshot', snap.id.slice(0, 8)])).stdout) as { id: string; time: string; tree: string; blobs: string[] };
    assert.equal(cs.id, snap.id);
    assert.equal(cs.time, snap.time);
    assert.ok(cs.blobs.includes(cs.tree));
    const root = JSON.parse((await s.ok(['cat', 'blob', cs.tree])).stdout) as { nodes: { name: string; type: string }[] };
    assert.equal(root.nodes.length, 1);
    assert.equal(root.nodes[0]!.type, 'dir');
    const [index] = readdirSync(join(s.repo, 'index'));
    const ci = JSON.parse((await s.ok(['cat', 'index', index!.slice(0, 10)])).stdout) as { packs: { pack: string; blobs: { id: string; type: string }[] }[] };
    const pack = ci.packs[0]!.pack;
    const packBytes = (await s.ok(['cat', 'pack', pack])).stdoutBytes;
    assert.deepEqual(packBytes, readFileSync(join(s.repo, 'data', pack.slice(0, 2), pack)));
    const indexes = await Promise.all(readdirSync(join(s.repo, 'index')).map(async (i) => JSON.parse((await s.ok(['cat', 'index', i])).stdout) as typeof ci));
    const dataBlobs = indexes.flatMap((x) => x.packs).flatMap((p) => p.blobs).filter((b) => b.type === 'data');
    const plains = await Promise.all(dataBlobs.map(async (b) => (await s.ok(['cat', 'blob', b.id])).stdoutBytes.toString('latin1')));
    assert.ok(plains.some((p) => p.includes('notes of a')), 'a data blob holds the file content');
    const [key] = readdirSync(join(s.repo, 'keys'));
    const ck = JSON.parse((await s.ok(['cat', 'key', key!])).stdout) as { kdf: { algorithm: string } };
    assert.equal(ck.kdf.algorithm, 'scrypt');
    failsWith(await s.run(['cat', 'bogus']), 2, /unknown type "bogus"/);
    failsWith(await s.run(['cat', 'blob']), 2, /needs an id/);
    failsWith(await s.run(['cat', 'blob', 'ffffffffffffff']), 1, /no blob with id ffffffffffffff/);
  });

  it('find PATTERN: the matches of every snapshot, restic\'s output; -i, a pattern with "/", --json', async () => {
    const r = await s.ok(['find', 'notes.*']);
    const blocks = r.stdout.trim().split('\n\n');
    assert.equal(blocks.length, 4, r.stdout);
    for (const b of blocks) assert.match(b, /^Found matching entries in snapshot [0-9a-f]{8} from \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n\S+\/[ab]\/sub\/notes\.txt$/);
    assert.equal((await s.ok(['find', 'NOTES.TXT'])).stdout, '');
    assert.equal((await s.ok(['find', '-i', 'NOTES.TXT'])).stdout.split('Found').length - 1, 4);
    const j = JSON.parse((await s.ok(['--json', 'find', '--path', s.path('b'), '*/sub'])).stdout) as { matches: { path: string; type: string }[]; hits: number; snapshot: string }[];
    assert.deepEqual(j.map((x) => [x.hits, x.matches[0]!.path, x.matches[0]!.type]), [[1, s.path('b', 'sub'), 'dir']]);
    assert.match((await s.ok(['find', '-l', 'other.bin', '--snapshot', 'latest'])).stdout, /^-rw-r--r-- .* 1 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+\/other\.bin$/m);
  });

  describe('completion bash|zsh|fish completes commands, nested commands and their options, from the definitions', { skip: missingTools('bash', 'zsh', 'fish') }, () => {
    /** What the shell offers after `line` (the last word is the one being completed). */
    const cases: [string, string[]][] = [
      ['holdfast ba', ['backup']],
      ['holdfast backup --ta', ['--tag']],
      ['holdfast -r /x snap', ['snapshots']],
      ['holdfast key a', ['add']],
      ['holdfast repair ', ['index', 'snapshots']],
      ['holdfast key add --new-', ['--new-password-file']],
      ['holdfast forget --pru', ['--prune']],
    ];
    const script = async (shell: string): Promise<string> => {
      const path = s.path(`completion.${shell}`);
      writeFileSync(path, (await s.ok(['completion', shell])).stdout);
      return path;
    };
    const run = (cmd: string, args: string[]): string => {
      const r = spawnSync(cmd, args, { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    const words = (line: string): string[] => (line.endsWith(' ') ? [...line.split(' ').slice(0, -1), ''] : line.split(' '));

    it('bash', async () => {
      const file = await script('bash');
      for (const [line, want] of cases) {
        const w = words(line);
        const out = run('bash', ['-c', `source ${file}; COMP_WORDS=(${w.map((x) => `'${x}'`).join(' ')}); COMP_CWORD=${w.length - 1}; _holdfast; printf '%s\\n' "\${COMPREPLY[@]}"`]);
        assert.deepEqual(out.split('\n').filter(Boolean), want, line);
      }
    });

    it('zsh', async () => {
      const file = await script('zsh');
      for (const [line, want] of cases) {
        const w = words(line);
        // compadd stands in for zsh's own: it offers what starts with the word being completed.
        const out = run('zsh', ['-c', `source ${file}; compadd() { shift; for x in "$@"; do [[ $x == \${words[CURRENT]}* ]] && print -r -- $x; done }; words=(${w.map((x) => `'${x}'`).join(' ')}); CURRENT=${w.length}; _holdfast; true`]);
        assert.deepEqual(out.split('\n').filter(Boolean), want, line);
      }
      // Saved as _holdfast in a folder of $fpath, it is autoloaded and completes on its first call.
      const dir = s.path('zfunctions');
      mkdirSync(dir);
      writeFileSync(join(dir, '_holdfast'), readFileSync(file));
      const first = run('zsh', ['-c', `fpath=(${dir} $fpath); autoload -Uz _holdfast; compadd() { shift; print -r -- "$@" }; words=(holdfast repair ''); CURRENT=3; _holdfast`]);
      assert.equal(first.trim(), 'index snapshots');
    });

    it('fish', async () => {
      const file = await script('fish');
      for (const [line, want] of cases) {
        const out = run('fish', ['-c', `source ${file}; complete -C '${line}'`]);
        assert.deepEqual(out.split('\n').filter(Boolean).map((l) => l.split('\t')[0]), want, line);
      }
    });

    it('an unknown shell is a usage error', async () => {
      failsWith(await s.run(['completion', 'tcsh']), 2, /unknown shell "tcsh"/);
    });
  });

  it('-v lists each file a backup stores and a restore writes; -v -v unchanged files too; --json as restic\'s verbose_status', async () => {
    const src = s.path('v');
    mkdirSync(join(src, 'd'), { recursive: true });
    writeFileSync(join(src, 'one'), '1');
    writeFileSync(join(src, 'd', 'two'), '2');
    const lines = (out: string): string[] => out.split('\n').filter((l) => /^(new|modified|unchanged|restored) /.test(l));
    assert.deepEqual(lines((await s.ok(['backup', '-v', src])).stdout).sort(), [`new       ${join(src, 'd', 'two')}`, `new       ${join(src, 'one')}`]);
    writeFileSync(join(src, 'one'), '1+');
    assert.deepEqual(lines((await s.ok(['-v', 'backup', src])).stdout), [`modified  ${join(src, 'one')}`]);
    assert.deepEqual(lines((await s.ok(['-v', '-v', 'backup', src])).stdout).sort(), [`unchanged ${join(src, 'd', 'two')}`, `unchanged ${join(src, 'one')}`]);
    assert.deepEqual(lines((await s.ok(['backup', src])).stdout), [], 'nothing without -v');
    const target = s.path('v-restored');
    const restored = lines((await s.ok(['restore', '-v', 'latest', '--path', src, '--target', target])).stdout);
    for (const p of [join(src, 'one'), join(src, 'd', 'two'), join(src, 'd')]) assert.ok(restored.includes(`restored  ${p}`), `${p} in ${restored.join('|')}`);
    // Again over the first restore, one file changed there: only that file is written (main listed both as restored).
    writeFileSync(join(target, src, 'one'), 'changed in the target');
    const files = (out: string): string[] => lines(out).filter((l) => l.endsWith(join(src, 'one')) || l.endsWith(join(src, 'd', 'two'))).sort();
    const again = (v: string[], how = 'if-changed'): Promise<RunResult> => s.ok([...v, 'restore', 'latest', '--path', src, '--target', target, '--overwrite', how]);
    assert.deepEqual(files((await again(['-v'])).stdout), [`restored  ${join(src, 'one')}`]);
    assert.equal(readFileSync(join(target, src, 'one'), 'utf8'), '1+');
    assert.deepEqual(files((await again(['-v', '-v'])).stdout), [`unchanged ${join(src, 'd', 'two')}`, `unchanged ${join(src, 'one')}`]);
    assert.deepEqual(files((await again(['-v', '-v'], 'never')).stdout), [`unchanged ${join(src, 'd', 'two')}`, `unchanged ${join(src, 'one')}`]);
    const j = (await s.ok(['--json', '-v', 'backup', src])).stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { message_type: string; action?: string });
    assert.deepEqual(j.filter((m) => m.message_type === 'verbose_status'), [], 'unchanged files need -v -v');
    const jj = (await s.ok(['--json', '-vv', 'backup', src])).stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { message_type: string; action?: string; item?: string });
    assert.deepEqual(jj.filter((m) => m.message_type === 'verbose_status').map((m) => [m.action, m.item]).sort(), [['unchanged', join(src, 'd', 'two')], ['unchanged', join(src, 'one')]]);
  });
});

describe('find in a snapshot whose folders list one tree many times (40 levels of a and b: 2^40 paths)', () => {
  let s: Sandbox;
  let deep: string;
  let small: string;
  before(async () => {
    s = await Sandbox.create('holdfast-find-dag-');
    await s.ok(['init']);
    const f = await Forge.open(s);
    const chain = async (levels: number): Promise<string> => {
      let tree = await f.tree([{ ...f.file('leaf', 0, []), type: 'fifo', content: undefined }]);
      for (let i = 0; i < levels; i++) tree = await f.tree([f.dir('a', tree), f.dir('b', tree)]);
      return tree;
    };
    deep = await f.snapshot(await chain(40));
    small = await f.snapshot(await chain(3));
  });
  after(() => s.remove());

  // The timeout only stops a walk of 2^40 paths (it never ended); the walk it tests reads each tree once.
  it('walks each tree once when nothing below it matches a pattern on the name', { timeout: 120_000 }, async () => {
    assert.equal((await s.ok(['find', '--snapshot', deep, 'nothing'])).stdout, '');
    const paths = (r: RunResult): string[] => r.stdout.split('\n').filter((l) => l.startsWith('/')).sort();
    assert.deepEqual(paths(await s.ok(['find', '--snapshot', small, 'b'])), ['/a/a/b', '/a/b', '/b', '/b/a/b', '/b/b', '/a/b/b', '/b/b/b'].sort());
    assert.equal(paths(await s.ok(['find', '--snapshot', small, 'leaf'])).length, 8);
    assert.deepEqual(paths(await s.ok(['find', '--snapshot', small, 'a/b/leaf'])), ['/a/a/b/leaf', '/b/a/b/leaf']);
  });
});
