/**
 * `holdfast copy --from-repo` and `holdfast init --copy-from`: snapshots
 * copied between two repositories that share a master key, without the
 * password; only the blobs the destination lacks; resumed after SIGKILL;
 * refused between repositories that do not share a key; a damaged or forged
 * source pack is not copied as good.
 */
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EVERYTHING, buildTree, compareTrees, removeTree } from '../fixtures/tree.js';
import { Sandbox, type RunResult } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';
import { bytes } from '../jobs/gc-fixture.js';
import { initSmall } from './gc-cli.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { Store } from '../../src/repo/store.js';
import { encodeIndex } from '../../src/repo/index-file.js';
import { sha256 } from '../../src/core/crypto.js';
import type { CopyReport } from '../../src/jobs/copy/snapshot-copier.js';
import type { SnakeKeys } from '../../src/core/snake-keys.js';

const SRC_PASSWORD = 'correct horse';
const DST_PASSWORD = 'battery staple';
/** The destination's own password, and the source's for `init --copy-from`. */
const DST_ENV = { HOLDFAST_PASSWORD: DST_PASSWORD, HOLDFAST_FROM_PASSWORD: SRC_PASSWORD };
/** No password at all: copy must not need one. */
const KEYLESS_ENV = { HOLDFAST_PASSWORD: undefined };

/** Two repositories in one sandbox: the source (its default repository) and destinations beside it. */
class Pair {
  constructor(readonly s: Sandbox) {}

  get src(): string {
    return this.s.repo;
  }

  /** Runs holdfast on the repository at `repo` with `env`; fails unless the exit code is `want`. */
  async on(repo: string, args: readonly string[], env: Record<string, string | undefined> = {}, want: number | null = 0): Promise<RunResult> {
    const r = await this.s.run(['-r', repo, ...args], { env });
    if (want !== null && r.code !== want) throw new Error(`holdfast -r ${repo} ${args.join(' ')} exited ${r.code} (wanted ${want})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r;
  }

  /** A new repository at `name` sharing the source's key, with a password of its own. */
  async initCopy(name: string, extra: readonly string[] = []): Promise<string> {
    const dst = this.s.path(name);
    await this.on(dst, ['init', '--copy-from', this.src, ...extra], DST_ENV);
    return dst;
  }

  /** `copy --json` from the source into `dst` without any password; the report. */
  async copy(dst: string, args: readonly string[] = [], want = 0): Promise<{ report: SnakeKeys<CopyReport>; run: RunResult }> {
    const run = await this.on(dst, ['--json', 'copy', '--from-repo', this.src, ...args], KEYLESS_ENV, want);
    return { report: JSON.parse(run.stdout.trim().split('\n').at(-1)!) as SnakeKeys<CopyReport>, run };
  }

  /** Snapshot ids of a repository, listed with its password (so each has passed its MAC). */
  async snapshotIds(repo: string, password: string): Promise<string[]> {
    const r = await this.on(repo, ['snapshots', '--json'], { HOLDFAST_PASSWORD: password });
    assert.equal(r.stderr, '', `listing the snapshots warned:\n${r.stderr}`);
    return (JSON.parse(r.stdout) as { id: string }[]).map((x) => x.id);
  }
}

/** The blob ids a snapshot of a local repository lists (keyless). */
async function blobsOf(repo: string, id: string): Promise<readonly string[]> {
  const plain = await Store.open(new LocalBackend(repo));
  const s = (await plain.loadSnapshots()).ok.get(id);
  assert.ok(s, `no snapshot ${id} in ${repo}`);
  return s.blobs;
}

/** Every pack file of a local repository. */
async function packFiles(repo: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await fs.readdir(join(repo, 'data'))) for (const f of await fs.readdir(join(repo, 'data', d))) if (!f.startsWith('.')) out.push(join(repo, 'data', d, f));
  return out;
}

describe('copy between repositories that share a key', () => {
  let s: Sandbox;
  let p: Pair;
  let tree: string;
  let first: string;
  before(async () => {
    s = await Sandbox.create('holdfast-copy-');
    p = new Pair(s);
    tree = s.path('tree');
    await buildTree(tree, EVERYTHING);
    await s.ok(['init']);
    await s.ok(['backup', '-q', tree]);
    first = (await p.snapshotIds(p.src, SRC_PASSWORD))[0]!;
  });
  after(() => removeTree(s.dir));

  it('copies without a password; the copy verifies with the destination\'s own password and restores byte for byte, metadata and all', async () => {
    const dst = await p.initCopy('dst');
    const { report, run } = await p.copy(dst);
    assert.deepEqual(report.copied, [first], run.stderr);
    assert.equal(report.failed.length, 0);
    assert.equal(report.blobs_copied, (await blobsOf(p.src, first)).length, 'every blob of the snapshot, once');
    // The snapshot's MAC verifies under the shared key, opened with the destination's password.
    assert.deepEqual(await p.snapshotIds(dst, DST_PASSWORD), [first]);
    const check = await p.on(dst, ['check', '--read-data'], { HOLDFAST_PASSWORD: DST_PASSWORD });
    assert.match(check.stdout, /no errors were found/);
    const target = s.path('restored');
    await p.on(dst, ['restore', first, '--target', target, '-q'], { HOLDFAST_PASSWORD: DST_PASSWORD });
    await compareTrees(tree, join(target, tree));
    // The source's password does not open the destination: only the key is shared.
    const wrong = await p.on(dst, ['snapshots'], { HOLDFAST_PASSWORD: SRC_PASSWORD }, null);
    assert.equal(wrong.code, 12);
  });

  it('copies only what the destination lacks: a second copy adds nothing, an incremental snapshot only its new blobs', async () => {
    const dst = await p.initCopy('dst-incremental');
    await p.copy(dst);
    const again = await p.copy(dst);
    assert.deepEqual(again.report.copied, []);
    assert.deepEqual(again.report.present, [first]);
    assert.equal(again.report.blobs_copied, 0);
    assert.equal(again.report.packs_written, 0);

    const more = s.path('more');
    await fs.mkdir(more);
    await fs.writeFile(join(more, 'new.bin'), bytes('new content', 700_000));
    await fs.writeFile(join(more, 'old.bin'), bytes('the same old content', 700_000));
    await s.ok(['backup', '-q', more]);
    const [, second] = await p.snapshotIds(p.src, SRC_PASSWORD);
    await fs.writeFile(join(more, 'newer.bin'), bytes('newer content', 300_000));
    await s.ok(['backup', '-q', more]);
    const [, , third] = await p.snapshotIds(p.src, SRC_PASSWORD);
    const inc = await p.copy(dst, [second!.slice(0, 10)]);
    assert.deepEqual(inc.report.copied, [second]);
    const firstBlobs = new Set(await blobsOf(p.src, first));
    const secondBlobs = await blobsOf(p.src, second!);
    assert.equal(inc.report.blobs_copied, secondBlobs.filter((b) => !firstBlobs.has(b)).length, 'the second snapshot\'s blobs, none of the first\'s');
    const thirdBlobs = await blobsOf(p.src, third!);
    const fresh = thirdBlobs.filter((b) => !secondBlobs.includes(b));
    const last = await p.copy(dst, ['latest']);
    assert.deepEqual(last.report.copied, [third]);
    assert.equal(last.report.blobs_copied, fresh.length, 'only the blobs the third snapshot added');
    assert.ok(last.report.bytes_copied < 300_000 + 64 * 1024, `${last.report.bytes_copied} bytes copied for a 300 kB change`);
    assert.deepEqual(await p.snapshotIds(dst, DST_PASSWORD), [first, second, third]);
    const target = s.path('restored-inc');
    await p.on(dst, ['restore', third!, '--target', target, '-q'], { HOLDFAST_PASSWORD: DST_PASSWORD });
    await compareTrees(more, join(target, more));
  });

  it('refuses a repository with another key, and names init --copy-from; the destination is left as it was', async () => {
    const other = s.path('other');
    const otherId = /created holdfast repository ([0-9a-f]{10}) /.exec((await p.on(other, ['init'], { HOLDFAST_PASSWORD: DST_PASSWORD })).stdout)![1]!;
    const srcId = (JSON.parse((await s.ok(['cat', 'config'])).stdout) as { id: string }).id.slice(0, 10);
    const before = await packFiles(other);
    const run = await p.on(other, ['copy', '--from-repo', p.src], KEYLESS_ENV, 1);
    // The repositories are named by the ids init printed, not by key names the user never saw.
    assert.match(run.stderr, new RegExp(`refusing to copy: repository ${srcId} \\(the source\\) and repository ${otherId} \\(the destination\\) have different master keys`));
    assert.match(run.stderr, /init --copy-from/);
    assert.deepEqual(await packFiles(other), before);
    assert.deepEqual(await p.snapshotIds(other, DST_PASSWORD), []);
  });

  it('a source that is not a repository is named as the source, not told to be created', async () => {
    const missing = s.path('missing');
    for (const [repo, args] of [[p.src, ['copy', '--from-repo', missing]], [s.path('never-made'), ['init', '--copy-from', missing]]] as const) {
      const run = await p.on(repo, [...args], DST_ENV, 10);
      assert.match(run.stderr, new RegExp(`no holdfast repository at \\S*${missing} \\(no config object\\); the source to copy from must be an existing repository`));
      assert.doesNotMatch(run.stderr, /holdfast init/);
    }
  });

  it('says what it copied in local time and in plural only for more than one (it said "copied 1 snapshots", "at 2026-…Z")', async () => {
    const dst = await p.initCopy('dst-text');
    const time = (JSON.parse((await p.on(p.src, ['snapshots', '--json'], { HOLDFAST_PASSWORD: SRC_PASSWORD })).stdout) as { id: string; time: string }[]).find((x) => x.id === first)!.time;
    const tokyo = new Date(Date.parse(time) + 9 * 3600_000).toISOString().replace('T', ' ').slice(0, 19);
    const once = await p.on(dst, ['copy', '--from-repo', p.src, first], { ...KEYLESS_ENV, TZ: 'Asia/Tokyo' });
    assert.match(once.stdout, new RegExp(`^copied snapshot ${first.slice(0, 8)} of \\S+ at ${tokyo} \\(`, 'm'));
    assert.match(once.stdout, /^copied 1 snapshot: \d+ blobs \(.*\) from \d+ packs? into \d+ new packs?$/m);
    const again = await p.on(dst, ['copy', '--from-repo', p.src, first], KEYLESS_ENV);
    assert.match(again.stdout, /^copied 0 snapshots: 0 blobs \(0 B\) from 0 packs into 0 new packs; 1 snapshot was in the destination already$/m);
  });

  // It said "wrong password: no key in the repository opens with it", which reads as the new repository's.
  it('init --copy-from with a wrong source password names the source and where the password came from', async () => {
    const file = s.path('wrong-source.pw');
    await fs.writeFile(file, 'not the source password\n');
    const repo = s.path('never-made-2');
    const viaFile = await p.on(repo, ['init', '--copy-from', p.src, '--from-password-file', file], DST_ENV, 12);
    assert.equal(failsWith(viaFile, 12, /./), `holdfast: wrong password for the source repository local:${p.src} (--from-password-file): no key there opens with it`);
    const viaEnv = await p.on(repo, ['init', '--copy-from', p.src], { ...DST_ENV, HOLDFAST_FROM_PASSWORD: 'wrong' }, 12);
    assert.match(failsWith(viaEnv, 12, /./), /source repository .* \(HOLDFAST_FROM_PASSWORD\)/);
    assert.equal(existsSync(repo) ? (await fs.readdir(repo)).length : 0, 0, 'nothing was written');
  });

  it('copies into an append-only destination (copy only adds)', async () => {
    const dst = await p.initCopy('dst-append-only', ['--append-only']);
    const { report } = await p.copy(dst, [first]);
    assert.deepEqual(report.copied, [first]);
  });
});

describe('copy killed with SIGKILL', () => {
  let s: Sandbox;
  let p: Pair;
  before(async () => {
    s = await Sandbox.create('holdfast-copy-kill-');
    p = new Pair(s);
    await initSmall(s); // 64 KiB packs and small chunks: a few MB make many packs
  });
  after(() => removeTree(s.dir));

  it('leaves the destination clean for check --read-data, and the next copy completes without copying again what was copied', { timeout: 120_000 }, async () => {
    const tree = s.path('tree');
    await fs.mkdir(tree);
    await fs.writeFile(join(tree, 'a.bin'), bytes('kill a', 1_500_000));
    await fs.writeFile(join(tree, 'b.bin'), bytes('kill b', 1_000_000));
    await s.ok(['backup', '-q', tree]);
    const [id] = await p.snapshotIds(p.src, SRC_PASSWORD);
    const total = (await blobsOf(p.src, id!)).length;
    const dst = await p.initCopy('dst');
    // About 39 packs at 256 KiB/s, 4 a second: the copy is caught past its first index file (16 packs) and well before its second.
    const { child, done } = s.start(['-r', dst, '--limit-upload', '256', 'copy', '--from-repo', p.src], { env: KEYLESS_ENV });
    while ((await packFiles(dst)).length < 18 && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    const killed = await done;
    assert.equal(killed.signal, 'SIGKILL', `the copy ended before it was killed:\n${killed.stderr}`);
    assert.deepEqual(await p.snapshotIds(dst, DST_PASSWORD), [], 'no snapshot before all its blobs are indexed');
    const check = await p.on(dst, ['check', '--read-data'], { HOLDFAST_PASSWORD: DST_PASSWORD });
    assert.match(check.stdout, /no errors were found/);

    const { report } = await p.copy(dst);
    assert.deepEqual(report.copied, [id]);
    assert.ok(report.orphans_indexed > 0, 'the packs written after the last index file are indexed, not copied again');
    assert.ok(report.blobs_copied < total - 16, `${report.blobs_copied} of ${total} blobs copied again`);
    await p.on(dst, ['check', '--read-data'], { HOLDFAST_PASSWORD: DST_PASSWORD });
    const target = s.path('restored');
    await p.on(dst, ['restore', id!, '--target', target, '-q'], { HOLDFAST_PASSWORD: DST_PASSWORD });
    await compareTrees(tree, join(target, tree));
  });
});

describe('copy under --limit-upload interrupted with Ctrl-C', () => {
  let s: Sandbox;
  let p: Pair;
  before(async () => {
    s = await Sandbox.create('holdfast-copy-int-');
    p = new Pair(s);
    await s.ok(['init']);
  });
  after(() => removeTree(s.dir));

  // The limiter's wait for the first pack (some 200 KiB at 1 KiB/s: over 3 minutes) ran to its end before.
  it('ends the wait for upload tokens at once: exit 130, no snapshot, and the next copy completes', { timeout: 60_000 }, async () => {
    const tree = s.path('tree');
    await fs.mkdir(tree);
    await fs.writeFile(join(tree, 'a.bin'), bytes('interrupted copy', 200_000));
    await s.ok(['backup', '-q', tree]);
    const dst = await p.initCopy('dst');
    const run = s.start(['-r', dst, '--limit-upload', '1', 'copy', '--from-repo', p.src], { env: KEYLESS_ENV });
    // Ctrl-C is the command's once its lock is held; a moment later the copy waits for tokens.
    while ((await fs.readdir(join(dst, 'locks'))).length === 0 && run.child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 1000));
    const killedAt = Date.now();
    run.child.kill('SIGINT');
    const r = await run.done;
    assert.equal(r.code, 130, `exit ${r.code} / ${r.signal}\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /interrupted; the repository is consistent, run copy again/);
    assert.ok(Date.now() - killedAt < 10_000, `the copy took ${Date.now() - killedAt} ms to stop`);
    assert.deepEqual(await p.snapshotIds(dst, DST_PASSWORD), []);
    assert.deepEqual(await fs.readdir(join(dst, 'locks')), [], 'the lock is released');
    const { report } = await p.copy(dst);
    assert.equal(report.copied.length, 1);
  });
});

describe('copy from a hostile source', () => {
  let s: Sandbox;
  let p: Pair;
  let tree: string;
  before(async () => {
    s = await Sandbox.create('holdfast-copy-hostile-');
    p = new Pair(s);
    tree = s.path('tree');
    await fs.mkdir(tree);
    await fs.writeFile(join(tree, 'file.bin'), bytes('hostile', 200_000));
    await s.ok(['init']);
    await s.ok(['backup', '-q', tree]);
  });
  after(() => removeTree(s.dir));

  /** The source's pack that holds the file (the largest), its bytes, and its blobs as its header says. */
  async function dataPack(): Promise<{ path: string; bytes: Buffer }> {
    let best = { path: '', bytes: Buffer.alloc(0) };
    for (const f of await packFiles(p.src)) {
      const b = await fs.readFile(f);
      if (b.length > best.bytes.length) best = { path: f, bytes: b };
    }
    return best;
  }

  /** Copies into a fresh destination; checks nothing was copied as good: exit 1, no snapshot, and a clean check --read-data. */
  async function refusedCopy(name: string, message: RegExp): Promise<void> {
    const dst = await p.initCopy(name);
    const run = await p.on(dst, ['copy', '--from-repo', p.src], KEYLESS_ENV, 1);
    assert.match(run.stderr, message);
    assert.match(run.stderr, /snapshot [0-9a-f]{64} not copied/);
    assert.deepEqual(await p.snapshotIds(dst, DST_PASSWORD), []);
    const check = await p.on(dst, ['check', '--read-data'], { HOLDFAST_PASSWORD: DST_PASSWORD });
    assert.match(check.stdout, /no errors were found/);
  }

  it('a pack whose bytes do not match its name is not copied', async () => {
    const { path, bytes: b } = await dataPack();
    const saved = Buffer.from(b);
    b.writeUInt8(b.readUInt8(1000) ^ 0xff, 1000); // inside the sealed blob: only the name (and, with the key, the tag) can tell
    await fs.chmod(path, 0o600);
    await fs.writeFile(path, b);
    try {
      await refusedCopy('dst-flipped', /pack [0-9a-f]{64} of the source is damaged: checksum of stored bytes does not match its name; none of its blobs is copied from it/);
    } finally {
      await fs.writeFile(path, saved);
    }
  });

  it('a pack whose header claims a raw length its sealed bytes cannot have is not copied (a forged pack with a valid name)', async () => {
    const { path, bytes: b } = await dataPack();
    const blobs = Store.parsePack('x', b);
    assert.equal(blobs[0]!.flags, 0, 'the random content is stored uncompressed');
    const headerAt = b.length - 8 - b.readUInt32LE(b.length - 8);
    const forged = Buffer.from(b);
    forged.writeUInt32LE(blobs[0]!.rawLength + 1, headerAt + 5 + 8); // first entry's raw length
    const name = sha256(forged).toString('hex');
    await fs.writeFile(join(p.src, 'data', name.slice(0, 2), name), forged);
    await fs.rm(path);
    const plain = await Store.open(new LocalBackend(p.src));
    const index = await plain.loadIndexFiles();
    for (const f of index.ok.keys()) await fs.rm(join(p.src, 'index', f));
    const packs = [...index.ok.values()].flatMap((f) => f.packs).map((x) => (path.endsWith(x.pack) ? { pack: name, blobs: Store.parsePack(name, forged) } : x));
    const bytesOf = encodeIndex({ packs, supersedes: [] });
    await fs.writeFile(join(p.src, 'index', sha256(bytesOf).toString('hex')), bytesOf);
    await refusedCopy('dst-forged', /pack [0-9a-f]{64} of the source: its header entry cannot be a sealed blob \(uncompressed, yet \d+ stored bytes for \d+ raw\)/);
  });
});

describe('copy into a hostile destination', () => {
  let s: Sandbox;
  let p: Pair;
  let tree: string;
  before(async () => {
    s = await Sandbox.create('holdfast-copy-lying-dst-');
    p = new Pair(s);
    tree = s.path('tree');
    await fs.mkdir(tree);
    await fs.writeFile(join(tree, 'file.bin'), bytes('lying destination', 300_000));
    await s.ok(['init']);
    await s.ok(['backup', '-q', tree]);
  });
  after(() => removeTree(s.dir));

  it('an index file claiming the source\'s blobs are in a destination pack whose header does not list them: the blobs are copied, the copy restores', async () => {
    const [id] = await p.snapshotIds(p.src, SRC_PASSWORD);
    const blobs = await blobsOf(p.src, id!);
    const dst = await p.initCopy('dst');
    const other = s.path('other');
    await fs.mkdir(other);
    await fs.writeFile(join(other, 'x'), 'the destination\'s own data');
    await p.on(dst, ['backup', '-q', other], { HOLDFAST_PASSWORD: DST_PASSWORD });
    // Anyone who can add objects to the destination: one index file, no key.
    const pack = (await packFiles(dst))[0]!.split('/').at(-1)!;
    const lie = encodeIndex({ packs: [{ pack, blobs: blobs.map((b) => ({ type: 0, flags: 0, offset: 0, length: 100, rawLength: 72, id: b })) }], supersedes: [] });
    await fs.writeFile(join(dst, 'index', sha256(lie).toString('hex')), lie);

    const { report, run } = await p.copy(dst);
    assert.deepEqual(report.copied, [id]);
    assert.equal(report.blobs_copied, new Set(blobs).size, run.stderr);
    assert.match(run.stderr, new RegExp(`the destination's index claims pack ${pack} holds ${new Set(blobs).size} blob\\(s\\) its header does not list`));
    const target = s.path('restored');
    await p.on(dst, ['restore', id!, '--target', target, '-q'], { HOLDFAST_PASSWORD: DST_PASSWORD });
    await compareTrees(tree, join(target, tree));
  });
});

/**
 * Plants in the local repository `repo`, without the key: a pack of `size` bytes (sparse, so it takes
 * no disk space) whose header lists one data blob filling it; an index file claiming that blob takes
 * `claimed` bytes; and a copy of the genuine snapshot that also lists the blob (its MAC no longer
 * verifies, which copy cannot tell). The header's count says `declared` entries. Returns the planted snapshot's id and a function that removes
 * all three.
 */
async function plantHugePack(repo: string, size: number, claimed: number, declared = 1): Promise<{ snapshot: string; remove: () => Promise<void> }> {
  const pack = randomBytes(32).toString('hex');
  const blob = randomBytes(32).toString('hex');
  const length = size - (5 + 44) - 8;
  const tail = Buffer.alloc(5 + 44 + 8);
  tail.writeUInt8(1, 0); // pack format version
  tail.writeUInt32LE(declared, 1); // one entry (data, uncompressed), which the count may belie
  tail.writeUInt32LE(length, 5 + 4);
  tail.writeUInt32LE(length - 28, 5 + 8);
  tail.write(blob, 5 + 12, 'hex');
  tail.writeUInt32LE(5 + 44, 5 + 44);
  tail.write('HFPK', 5 + 44 + 4, 'latin1');
  await fs.mkdir(join(repo, 'data', pack.slice(0, 2)), { recursive: true });
  const packPath = join(repo, 'data', pack.slice(0, 2), pack);
  const fh = await fs.open(packPath, 'w');
  await fh.write(tail, 0, tail.length, size - tail.length);
  await fh.close();
  const index = encodeIndex({ packs: [{ pack, blobs: [{ type: 0, flags: 0, offset: 0, length: claimed, rawLength: claimed - 28, id: blob }] }], supersedes: [] });
  const indexPath = join(repo, 'index', sha256(index).toString('hex'));
  await fs.writeFile(indexPath, index);
  // The genuine snapshot's bytes (magic, version, JSON, blob count, ids, MAC) with the blob added and an earlier time.
  const snapshots = await fs.readdir(join(repo, 'snapshots'));
  const b = await fs.readFile(join(repo, 'snapshots', snapshots[0]!));
  const jsonLength = b.readUInt32LE(5);
  const json = { ...(JSON.parse(b.subarray(9, 9 + jsonLength).toString()) as object), hostname: 'planted', time: new Date(Date.now() - 60_000).toISOString() };
  const count = b.readUInt32LE(9 + jsonLength);
  const ids = b.subarray(13 + jsonLength, 13 + jsonLength + 32 * count);
  const j = Buffer.from(JSON.stringify(json));
  const head = Buffer.alloc(9);
  b.copy(head, 0, 0, 5);
  head.writeUInt32LE(j.length, 5);
  const n = Buffer.alloc(4);
  n.writeUInt32LE(count + 1);
  const planted = Buffer.concat([head, j, n, ids, Buffer.from(blob, 'hex'), b.subarray(13 + jsonLength + 32 * count)]);
  const snapshot = sha256(planted).toString('hex');
  await fs.writeFile(join(repo, 'snapshots', snapshot), planted);
  return { snapshot, remove: async () => Promise.all([packPath, indexPath, join(repo, 'snapshots', snapshot)].map((f) => fs.rm(f))).then(() => undefined) };
}

describe('copy and check of a source with packs no writer makes', () => {
  let s: Sandbox;
  let p: Pair;
  let tree: string;
  let genuine: string;
  before(async () => {
    s = await Sandbox.create('holdfast-copy-huge-');
    p = new Pair(s);
    tree = s.path('tree');
    await fs.mkdir(tree);
    await fs.writeFile(join(tree, 'file.bin'), bytes('huge', 100_000));
    await s.ok(['init']);
    await s.ok(['backup', '-q', tree]);
    genuine = (await p.snapshotIds(p.src, SRC_PASSWORD))[0]!;
  });
  after(() => removeTree(s.dir));

  /** Copies into a fresh destination: the genuine snapshot is copied, the planted one is not, and the destination holds nothing large. */
  async function copyPast(name: string, planted: string, message: RegExp): Promise<void> {
    const dst = await p.initCopy(name);
    const { report, run } = await p.copy(dst, [], 1);
    assert.match(run.stderr, message);
    assert.deepEqual(report.copied, [genuine]);
    assert.deepEqual(report.failed.map((f) => f.id), [planted]);
    let stored = 0;
    for (const f of await packFiles(dst)) stored += (await fs.stat(f)).size;
    assert.ok(stored < 1_000_000, `${stored} bytes of packs in the destination`);
    await p.on(dst, ['check', '--read-data'], { HOLDFAST_PASSWORD: DST_PASSWORD });
    const target = s.path(`${name}-restored`);
    await p.on(dst, ['restore', genuine, '--target', target, '-q'], { HOLDFAST_PASSWORD: DST_PASSWORD });
    await compareTrees(tree, join(target, tree));
  }

  it('a header entry larger than any blob of its type: the pack is damaged, nothing is read from it, the rest is copied', async () => {
    // 100 MB of one "data blob" (at most 64 MiB), claimed small by the index: read by ranges, it was copied whole.
    const { snapshot, remove } = await plantHugePack(p.src, 100_000_000, 100);
    try {
      await copyPast('dst-big-blob', snapshot, /pack [0-9a-f]{64} of the source is damaged: its header lists a blob [0-9a-f]{64} of 99999943 stored bytes \(99999915 raw\): larger than any blob of its type \(67108864 raw\); none of its blobs is copied from it/);
    } finally {
      await remove();
    }
  });

  it('a header whose length does not match its count of entries: the pack is damaged, nothing is copied from it, the rest is', async () => {
    for (const declared of [2, 0]) {
      const { snapshot, remove } = await plantHugePack(p.src, 100_000, 100, declared);
      try {
        await copyPast(`dst-count-${declared}`, snapshot, new RegExp(`pack [0-9a-f]{64} of the source is damaged: header holds 44 bytes for ${declared} entries; none of its blobs is copied from it`));
      } finally {
        await remove();
      }
    }
  });

  it('a pack over 2 GiB: copy and keyless check --read-data report it damaged without reading it, and go on with the rest', async () => {
    const { snapshot, remove } = await plantHugePack(p.src, 2_500_000_000, 2_000_000_000);
    try {
      await copyPast('dst-huge-pack', snapshot, /pack [0-9a-f]{64} of the source is damaged: 2500000000 bytes, larger than any pack \(1610612736\); none of its blobs is copied from it/);
      const check = await p.on(p.src, ['check', '--read-data'], KEYLESS_ENV, 1);
      assert.match(check.stdout + check.stderr, /is 2500000000 bytes, larger than any pack \(1610612736\): not read/);
      assert.match(check.stdout + check.stderr, new RegExp(`snapshot ${snapshot.slice(0, 8)}`));
      assert.doesNotMatch(check.stdout + check.stderr, new RegExp(`snapshot ${genuine.slice(0, 8)}`), 'the genuine snapshot is whole');
    } finally {
      await remove();
    }
  });
});
