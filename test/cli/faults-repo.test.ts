/**
 * Bad input at the repository: wrong or missing passwords, a folder that is
 * no repository, a newer format, damaged packs, indexes and snapshots, and a
 * snapshot built to escape the restore target. Each case runs the real CLI
 * and checks three things: the exit code, one clear line on stderr (no stack
 * trace), and that what was backed up before still restores byte for byte.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf, type RunResult } from '../helpers/cli.js';
import { STACK, failsWith } from '../helpers/cli-errors.js';
import { writeRandom } from '../helpers/random-file.js';
import { assertRestores, assertSameTree } from '../helpers/restore-check.js';
import { Repository } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { BlobType } from '../../src/repo/pack.js';
import { encodeTree, type TreeNode } from '../../src/repo/tree.js';
import { FORMAT_VERSION } from '../../src/repo/config.js';

/** A repository holding one snapshot of a small folder; returns the snapshot id. */
async function withBaseline(s: Sandbox): Promise<{ snap: string; src: string }> {
  await s.ok(['init']);
  const src = s.path('keep');
  await fs.mkdir(join(src, 'sub'), { recursive: true });
  await writeRandom(join(src, 'one.bin'), 50_000);
  await fs.writeFile(join(src, 'sub', 'notes.txt'), 'the customer database lives on db1\n');
  await fs.symlink('one.bin', join(src, 'link'));
  await s.ok(['backup', '-q', src]);
  const [first] = await snapshotsOf(s);
  return { snap: first!.id, src };
}

/** Every pack file below repo/data, with its size. */
async function packs(repo: string): Promise<Map<string, { path: string; size: number }>> {
  const out = new Map<string, { path: string; size: number }>();
  for (const sub of await fs.readdir(join(repo, 'data'))) {
    for (const name of await fs.readdir(join(repo, 'data', sub))) {
      if (name.startsWith('.')) continue;
      const path = join(repo, 'data', sub, name);
      out.set(name, { path, size: (await fs.stat(path)).size });
    }
  }
  return out;
}

/** The blob types listed in a pack's plain header (see src/repo/pack.ts). */
async function packBlobTypes(path: string): Promise<number[]> {
  const b = await fs.readFile(path);
  const headerLength = b.readUInt32LE(b.length - 4 - 4);
  const header = b.subarray(b.length - 8 - headerLength, b.length - 8);
  const count = header.readUInt32LE(1);
  return Array.from({ length: count }, (_, i) => header.readUInt8(5 + i * 44));
}

describe('passwords', () => {
  let s: Sandbox;
  let base: { snap: string; src: string };
  before(async () => {
    s = await Sandbox.create('holdfast-faults-');
    base = await withBaseline(s);
  });
  after(() => s.remove());

  it('a wrong password exits 12, says so, and writes nothing', async () => {
    const before = await fs.readdir(join(s.repo, 'snapshots'));
    failsWith(await s.run(['restore', 'latest', '--target', s.path('wrong')], { env: { HOLDFAST_PASSWORD: 'incorrect horse' } }), 12, /wrong password/i);
    failsWith(await s.run(['backup', base.src], { env: { HOLDFAST_PASSWORD: 'incorrect horse' } }), 12, /wrong password/i);
    assert.deepEqual(await fs.readdir(join(s.repo, 'snapshots')), before);
    assert.equal(existsSync(s.path('wrong')), false, 'restore created its target before checking the password');
    await assertRestores(s, base.snap, base.src);
  });

  it('no password at all (no environment, stdin not a terminal) exits 1 with a clear message', async () => {
    const r = await s.run(['snapshots'], { env: { HOLDFAST_PASSWORD: undefined } });
    failsWith(r, 1, /no password given.*--password-file/);
  });

  it('--password-file works, and a missing file is named', async () => {
    const file = s.path('pw.txt');
    await fs.writeFile(file, 'correct horse\n', { mode: 0o600 });
    const env = { HOLDFAST_PASSWORD: undefined };
    const r = await s.run(['--password-file', file, 'snapshots', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as unknown[]).length, 1);
    const target = s.path('via-file');
    assert.equal((await s.run(['--password-file', file, 'restore', base.snap, '--target', target], { env })).code, 0);
    assertSameTree(base.src, join(target, base.src));

    await fs.writeFile(file, 'incorrect horse\n');
    failsWith(await s.run(['--password-file', file, 'snapshots'], { env }), 12, /wrong password/i);
    failsWith(await s.run(['--password-file', s.path('no-such-file'), 'snapshots'], { env }), 1, /no-such-file/);
  });

  it('--password-command works, and a failing command is reported', async () => {
    const env = { HOLDFAST_PASSWORD: undefined };
    const r = await s.run(['--password-command', "printf 'correct horse\\n'", 'snapshots', '--json'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as unknown[]).length, 1);
    // It said "password command failed: Command failed: /bin/sh -c exit 7".
    assert.equal(failsWith(await s.run(['--password-command', 'exit 7', 'snapshots'], { env }), 1, /./), 'holdfast: the password command "exit 7" (--password-command) exited with status 7');
    failsWith(await s.run(['--password-command', 'echo nope', 'snapshots'], { env }), 12, /wrong password/i);
  });
});

describe('not a repository, or a newer one', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-faults-');
  });
  after(() => s.remove());

  it('an empty folder is not a repository: exit 10, and nothing is created in it', async () => {
    const empty = s.path('empty');
    await fs.mkdir(empty);
    const env = { HOLDFAST_REPOSITORY: empty };
    failsWith(await s.run(['snapshots'], { env }), 10, /no holdfast repository at .*empty.*holdfast init/);
    failsWith(await s.run(['backup', s.dir], { env }), 10, /no holdfast repository/);
    failsWith(await s.run(['restore', 'latest', '--target', s.path('t')], { env }), 10, /no holdfast repository/);
    assert.deepEqual(await fs.readdir(empty), []);
    failsWith(await s.run(['snapshots'], { env: { HOLDFAST_REPOSITORY: s.path('missing') } }), 10, /no holdfast repository/);
    assert.equal(existsSync(s.path('missing')), false);
  });

  it('init into a folder of other files warns that it was not empty, creates the repository beside them and leaves them alone', async () => {
    const full = s.path('full');
    await fs.mkdir(full);
    await fs.writeFile(join(full, 'notes.txt'), 'mine\n');
    await fs.mkdir(join(full, 'photos'));
    const r = await s.ok(['init'], { env: { HOLDFAST_REPOSITORY: full } });
    assert.match(r.stderr, /warning: local:\S*full was not empty \(2 entries\); the repository is created beside them/);
    assert.equal(await fs.readFile(join(full, 'notes.txt'), 'utf8'), 'mine\n');
    await s.ok(['snapshots'], { env: { HOLDFAST_REPOSITORY: full } });
    // One entry is one, and "it" (it said "(1 entry); the repository is created beside them").
    const one = s.path('one');
    await fs.mkdir(one);
    await fs.writeFile(join(one, 'notes.txt'), 'mine\n');
    const single = await s.ok(['init'], { env: { HOLDFAST_REPOSITORY: one } });
    assert.match(single.stderr, /was not empty \(1 entry\); the repository is created beside it, and holdfast leaves it alone\n$/);
    // "Processed:   1 files" was the backup's summary of one file.
    assert.match((await s.ok(['backup', join(one, 'notes.txt')], { env: { HOLDFAST_REPOSITORY: one } })).stdout, /^Processed: +1 file, 5 B in /m);
    // A folder that is empty, or not there yet, gets no warning.
    await fs.mkdir(s.path('bare'));
    for (const dir of [s.path('bare'), s.path('new')]) assert.equal((await s.ok(['init'], { env: { HOLDFAST_REPOSITORY: dir } })).stderr, '');
  });

  it('a config of a newer format version asks for an upgrade (exit 1) and is left untouched', async () => {
    const base = await withBaseline(s);
    const configPath = join(s.repo, 'config');
    const original = await fs.readFile(configPath);
    assert.equal(original.subarray(0, 4).toString('latin1'), 'HFCF');
    const json = JSON.parse(original.subarray(4, original.length - 32).toString('utf8')) as Record<string, unknown>;
    json['version'] = FORMAT_VERSION + 1;
    const body = Buffer.concat([Buffer.from('HFCF', 'latin1'), Buffer.from(JSON.stringify(json), 'utf8')]);
    const newer = Buffer.concat([body, createHash('sha256').update(body).digest()]);
    await fs.writeFile(configPath, newer);

    failsWith(await s.run(['snapshots']), 1, new RegExp(`version ${FORMAT_VERSION + 1}.*upgrade`, 'i'));
    failsWith(await s.run(['backup', base.src]), 1, /upgrade/i);
    failsWith(await s.run(['restore', 'latest', '--target', s.path('t')]), 1, /upgrade/i);
    assert.deepEqual(await fs.readFile(configPath), newer, 'an older holdfast rewrote a newer config');
    assert.equal((await fs.readdir(join(s.repo, 'snapshots'))).length, 1);

    await fs.writeFile(configPath, original);
    await assertRestores(s, base.snap, base.src);
  });
});

describe('damaged packs', () => {
  // First backup: folder with file A (small). Second backup adds B (20 MB,
  // more than one 16 MiB pack), so at least one pack holds nothing but B's data.
  let s: Sandbox;
  let src: string;
  let first: string;
  let second: string;
  let packB: { name: string; path: string; size: number };
  let packBBytes: Buffer;

  before(async () => {
    s = await Sandbox.create('holdfast-faults-');
    await s.ok(['init']);
    src = s.path('src');
    await fs.mkdir(src);
    await writeRandom(join(src, 'a.bin'), 200_000);
    await s.ok(['backup', '-q', src]);
    const packsA = await packs(s.repo);
    await writeRandom(join(src, 'b.bin'), 20_000_000);
    await s.ok(['backup', '-q', src]);
    [first, second] = (await snapshotsOf(s)).map((x) => x.id) as [string, string];
    const candidates = [];
    for (const [name, p] of await packs(s.repo)) {
      if (packsA.has(name)) continue;
      if ((await packBlobTypes(p.path)).every((t) => t === BlobType.Data)) candidates.push({ name, ...p });
    }
    // The largest of them: it holds only content of b.bin, whether or not
    // the repository also keeps tree blobs in packs of their own.
    candidates.sort((x, y) => y.size - x.size);
    assert.ok(candidates[0] && candidates[0].size > 1_000_000, 'expected a pack holding only data blobs of b.bin');
    packB = candidates[0];
    packBBytes = await fs.readFile(packB.path);
  });
  after(() => s.remove());

  /** Restores the second snapshot after damaging B's pack; checks what was and was not restored. */
  async function restoreDamaged(label: string, detail: RegExp, extra: string[] = []): Promise<RunResult> {
    const target = s.path(label);
    const r = await s.run(['restore', second, '--target', target, ...extra]);
    assert.notEqual(r.code, 0, `restore of a damaged snapshot exited 0\n${r.stdout}`);
    assert.equal(r.code, 1);
    assert.doesNotMatch(r.stderr, STACK);
    assert.match(r.stderr, /holdfast: restore INCOMPLETE/);
    const listed = r.stderr.slice(r.stderr.indexOf('holdfast: restore INCOMPLETE'));
    assert.match(listed, new RegExp(`${join(src, 'b.bin')}: .*pack ${packB.name}.*${detail.source}`), `stderr:\n${r.stderr}`);
    assert.doesNotMatch(listed, /a\.bin/, 'a.bin (in an undamaged pack) was reported as not restored');
    assert.doesNotMatch(r.stdout, /success|all match|complete/i, `stdout claims success:\n${r.stdout}`);
    assert.deepEqual(await fs.readFile(join(target, src, 'a.bin')), await fs.readFile(join(src, 'a.bin')));
    return r;
  }

  it('a flipped byte: restore exits 1, names the pack and b.bin, and still restores a.bin', async () => {
    const damaged = Buffer.from(packBBytes);
    damaged[1000] = damaged[1000]! ^ 0x01;
    await fs.writeFile(packB.path, damaged);
    try {
      await restoreDamaged('flipped', /damaged: authentication failed/);
      await assertRestores(s, first, join(src, 'a.bin'));
    } finally {
      await fs.writeFile(packB.path, packBBytes);
    }
  });

  it('a truncated pack: restore exits 1, names the pack and b.bin, and still restores a.bin', async () => {
    await fs.truncate(packB.path, Math.floor(packB.size / 2));
    try {
      await restoreDamaged('truncated', /damaged: truncated/);
      const r = await s.run(['snapshots', '--json']);
      assert.equal(r.code, 0);
    } finally {
      await fs.writeFile(packB.path, packBBytes);
    }
  });

  it('with --verify and a damaged pack, stdout does not say everything matches', async () => {
    const damaged = Buffer.from(packBBytes);
    damaged[1000] = damaged[1000]! ^ 0x01;
    await fs.writeFile(packB.path, damaged);
    try {
      await restoreDamaged('verify', /damaged: authentication failed/, ['--verify']);
    } finally {
      await fs.writeFile(packB.path, packBBytes);
    }
  });

  it('after the damage is repaired, both snapshots restore byte-identical', async () => {
    await assertRestores(s, second, src);
  });
});

describe('an index file a reader cannot use', () => {
  // One policy (docs/format.md §4.4): readers leave it out and say so, check reports it, prune refuses.
  for (const [how, damage] of [
    ['truncated', (b: Buffer) => b.subarray(0, Math.floor(b.length / 2))],
    ['corrupt', (b: Buffer) => Buffer.concat([b.subarray(0, 9), Buffer.from([b[9]! ^ 0xff]), b.subarray(10)])],
    ['junk under its own checksum', () => Buffer.from('not an index file at all')],
  ] as const) {
    it(`${how}: restore and backup leave it out with a warning, the backup adopts its packs (nothing uploaded again), check reports it and prune refuses`, async () => {
      const s = await Sandbox.create('holdfast-faults-');
      try {
        const base = await withBaseline(s);
        const [victim] = await fs.readdir(join(s.repo, 'index'));
        const bad = damage(await fs.readFile(join(s.repo, 'index', victim!)));
        await fs.rm(join(s.repo, 'index', victim!));
        // Junk is stored under its own name (what a client that can add writes); damage keeps the old name.
        const name = how.startsWith('junk') ? createHash('sha256').update(bad).digest('hex') : victim!;
        await fs.writeFile(join(s.repo, 'index', name), bad);
        const leftOut = new RegExp(`warning: index ${name} is damaged: .*; left out of the index`);
        const lost = await s.run(['restore', 'latest', '--target', s.path('lost')]);
        assert.equal(lost.code, 1, lost.stderr);
        assert.match(lost.stderr, leftOut);
        const check = await s.run(['check']);
        assert.equal(check.code, 1, check.stderr);
        assert.match(check.stderr, new RegExp(`error: index ${name}`));
        const prune = await s.run(['prune']);
        assert.equal(prune.code, 1, prune.stderr);
        assert.match(prune.stderr, new RegExp(`index ${name}`));
        const again = await s.run(['backup', '--json', base.src]);
        assert.equal(again.code, 0, again.stderr);
        assert.match(again.stderr, leftOut);
        const summary = JSON.parse(again.stdout.trim().split('\n').at(-1)!) as { message_type: string; data_blobs: number };
        assert.equal(summary.message_type, 'summary');
        assert.equal(summary.data_blobs, 0, 'the backup adopted the packs: no data uploaded again');
        await assertRestores(s, base.snap, base.src);
      } finally {
        await s.remove();
      }
    });
  }
});

describe('damaged index and snapshot files', () => {
  let s: Sandbox;
  let base: { snap: string; src: string };
  before(async () => {
    s = await Sandbox.create('holdfast-faults-');
    base = await withBaseline(s);
    const more = s.path('more');
    await fs.mkdir(more);
    await fs.writeFile(join(more, 'later.txt'), 'in the second snapshot only\n');
    await s.ok(['backup', '-q', more]);
  });
  after(() => s.remove());

  it('a damaged snapshot object is named; other snapshots still restore by id', async () => {
    const [older, newer] = (await snapshotsOf(s)).map((x) => x.id) as [string, string];
    const path = join(s.repo, 'snapshots', newer);
    const good = await fs.readFile(path);
    await fs.writeFile(path, good.subarray(0, 20));
    try {
      failsWith(await s.run(['restore', newer, '--target', s.path('snap-bad')]), 1, new RegExp(`snapshot ${newer} is damaged`));
      await assertRestores(s, older, base.src);
    } finally {
      await fs.writeFile(path, good);
    }
  });

  it('a damaged snapshot object does not hide the others from `snapshots`', async () => {
    const [older, newer] = (await snapshotsOf(s)).map((x) => x.id) as [string, string];
    const path = join(s.repo, 'snapshots', newer);
    const good = await fs.readFile(path);
    await fs.writeFile(path, good.subarray(0, 20));
    try {
      const r = await s.run(['snapshots', '--json']);
      assert.match(r.stderr, new RegExp(newer));
      assert.doesNotMatch(r.stderr, STACK);
      assert.ok(r.stdout.includes(older), `snapshots lists nothing when one snapshot is damaged:\n${r.stderr}`);
    } finally {
      await fs.writeFile(path, good);
    }
  });
});

describe('a snapshot crafted to escape the restore target', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-faults-');
    await s.ok(['init']);
  });
  after(() => s.remove());

  /** Every path below `dir` (never following symlinks) except below `skip`, with sizes and link targets. */
  async function listing(dir: string, skip: string, rel = ''): Promise<string[]> {
    const out: string[] = [];
    for (const name of await fs.readdir(join(dir, rel))) {
      const e = rel === '' ? name : `${rel}/${name}`;
      const p = join(dir, e);
      if (p === skip) continue;
      const st = await fs.lstat(p);
      if (st.isSymbolicLink()) out.push(`${e} -> ${await fs.readlink(p)}`);
      else if (st.isDirectory()) out.push(`${e}/`, ...(await listing(dir, skip, e)));
      else out.push(`${e} ${st.size}`);
    }
    return out.sort();
  }

  it('refuses "..", "../../etc", "a/b" and a listing where a directory shadows a symlink; writes nothing outside', async () => {
    const marker = `holdfast-pwned-${randomBytes(6).toString('hex')}`;
    const repo = await Repository.open(await Store.open(new LocalBackend(s.repo)), 'correct horse');
    await repo.loadIndex();
    const w = repo.newWriter();
    const blobs: string[] = [];
    const save = async (type: BlobType, bytes: Buffer): Promise<string> => {
      const { id } = await w.saveBlob(type, bytes);
      blobs.push(id);
      return id;
    };
    const evil = Buffer.from('written outside the target\n');
    const evilId = await save(BlobType.Data, evil);
    const good = Buffer.from('a legitimate file\n');
    const goodId = await save(BlobType.Data, good);
    let inode = 100n;
    const meta = { mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000_000_000_000n, ctime: 1_700_000_000_000_000_000n, device: 1n, links: 1 };
    const file = (name: string, data: Buffer, id: string): TreeNode =>
      ({ ...meta, name: Buffer.from(name), type: 'file', inode: inode++, size: data.length, content: [id] });
    const dir = (name: string, subtree: string): TreeNode => ({ ...meta, name: Buffer.from(name), type: 'dir', mode: 0o755, inode: inode++, size: 0, subtree });
    const tree = (nodes: TreeNode[]): Promise<string> => save(BlobType.Tree, encodeTree(nodes));

    const payload = await tree([file(marker, evil, evilId)]);
    // A symlink x, then a directory x that would be written through it: the
    // encoder refuses two nodes of one name, so the listing is put together by hand.
    const link = encodeTree([{ ...meta, name: Buffer.from('x'), type: 'symlink', inode: inode++, size: 0, target: Buffer.from('/tmp') }]);
    const shadow = Buffer.concat([link, encodeTree([dir('x', payload)]).subarray(9)]);
    shadow.writeUInt32LE(2, 5);
    const deep = await tree([dir('..', await tree([dir('..', payload)]))]);
    const root = await tree([
      dir('..', payload),
      dir('../../etc', payload),
      file('a/b', evil, evilId),
      dir('deep', deep),
      file('ok.txt', good, goodId),
      dir('shadow', await save(BlobType.Tree, shadow)),
    ]);
    await w.flush();
    const now = new Date().toISOString();
    const id = await w.saveSnapshot({
      time: now, hostname: 'mallory', username: 'mallory', paths: ['/'], tags: [], tree: root, blobs,
      summary: { filesNew: 0, filesChanged: 0, filesUnchanged: 0, dirs: 0, otherNodes: 0, errors: 0, totalBytes: 0, bytesRead: 0, blobsAdded: 0, dataAdded: 0, dataAddedStored: 0, start: now, end: now },
    });

    // The target sits two levels down so that "../../etc" would still land in the sandbox.
    const target = s.path('one', 'two', 'target');
    await fs.mkdir(target, { recursive: true });
    const before = await listing(s.dir, target);
    const r = await s.run(['restore', id, '--target', target]);

    assert.notEqual(r.code, 0, `restore of a malicious snapshot exited 0\n${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, STACK);
    assert.match(r.stderr, /refused/);
    assert.match(r.stderr, /\/shadow: its listing cannot be read \(tree \w+ is damaged: the name of node 1 is a duplicate or out of order\)/);
    for (const bad of ['/..', '/../../etc', '/a/b', '/deep/..']) {
      assert.ok(r.stderr.split('\n').some((l) => l.includes(`${bad}:`) && l.includes('refused')), `${bad} not reported as refused:\n${r.stderr}`);
    }
    assert.deepEqual(await listing(s.dir, target), before, 'the restore wrote outside its target');
    assert.equal(existsSync(join('/tmp', marker)), false, 'the restore wrote through the symlink x -> /tmp');
    assert.equal(existsSync(join('/etc', marker)), false);
    assert.deepEqual(await fs.readFile(join(target, 'ok.txt')), good, 'the harmless file was not restored');
    assert.deepEqual(await listing(target, ''), ['deep/', 'ok.txt 18', 'shadow/']);
  });
});
