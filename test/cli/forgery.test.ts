/**
 * Storage attacks on the plain metadata, from the attacker's side: each test
 * edits the stored JSON or bytes of a snapshot or of the config directly in
 * the repository folder, re-hashing the name as the storage requires (object
 * name = SHA-256 of its bytes; the config checksums itself), and keeps the
 * rest of the object as it was: without the key it cannot make a new MAC.
 * Then the real CLI, with the password, must notice, refuse, and lose
 * nothing (docs/format.md §11).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf, type RunResult } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';
import { assertRestores } from '../helpers/restore-check.js';
import { bytes } from '../jobs/gc-fixture.js';
import { masterKeyOf } from '../helpers/master-key.js';
import { macKey } from '../../src/core/crypto.js';
import { decodeConfig, encodeConfig, type RepoConfig } from '../../src/repo/config.js';
import { LocalBackend } from '../../src/storage/local-backend.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const KEYLESS = { HOLDFAST_PASSWORD: undefined };

/** A snapshot object taken apart: header, JSON, blob ids, and whatever follows them (the MAC). */
interface SnapshotParts {
  readonly head: Buffer;
  json: Record<string, unknown>;
  ids: string[];
  readonly tail: Buffer;
}

function parseSnapshot(b: Buffer): SnapshotParts {
  const j = b.readUInt32LE(5);
  const count = b.readUInt32LE(9 + j);
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push(b.subarray(13 + j + 32 * i, 13 + j + 32 * (i + 1)).toString('hex'));
  return { head: b.subarray(0, 5), json: JSON.parse(b.subarray(9, 9 + j).toString('utf8')) as Record<string, unknown>, ids, tail: b.subarray(13 + j + 32 * count) };
}

function buildSnapshot(p: SnapshotParts): Buffer {
  const json = Buffer.from(JSON.stringify(p.json), 'utf8');
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  return Buffer.concat([p.head, u32(json.length), json, u32(p.ids.length), ...p.ids.map((id) => Buffer.from(id, 'hex')), p.tail]);
}

/** The attacker's edit of the config: its JSON changed, its checksum made to match. */
async function editConfig(repo: string, edit: (json: Record<string, unknown>) => void): Promise<void> {
  const path = join(repo, 'config');
  const b = await fs.readFile(path);
  const json = JSON.parse(b.subarray(4, b.length - 32).toString('utf8')) as Record<string, unknown>;
  edit(json);
  const body = Buffer.concat([Buffer.from('HFCF', 'latin1'), Buffer.from(JSON.stringify(json), 'utf8')]);
  await fs.writeFile(path, Buffer.concat([body, createHash('sha256').update(body).digest()]));
}

describe('forged plain metadata', () => {
  let s: Sandbox;
  let src: string;
  let other: string;
  /** Two real snapshots of `src` (older, newer) and one of `other`. */
  let s1: string;
  let s2: string;
  let so: string;
  const snapPath = (id: string): string => join(s.repo, 'snapshots', id);

  /**
   * Writes a forged snapshot made from `from` by `edit`; removes `from`
   * unless `keep`. Returns the forged snapshot's id.
   */
  async function forge(from: string, edit: (p: SnapshotParts) => void, keep = false): Promise<string> {
    const parts = parseSnapshot(await fs.readFile(snapPath(from)));
    edit(parts);
    const forged = buildSnapshot(parts);
    const id = sha(forged);
    await fs.writeFile(snapPath(id), forged, { mode: 0o600 });
    if (!keep) await fs.rm(snapPath(from));
    return id;
  }

  /** Undoes a forgery: the forged object goes, the original comes back. */
  async function restoreOriginal(forged: string, original: string, bytesOf: Buffer): Promise<void> {
    await fs.rm(snapPath(forged), { force: true });
    await fs.writeFile(snapPath(original), bytesOf, { mode: 0o600 });
  }

  const backupId = (r: RunResult): string => (JSON.parse(r.stdout.trim().split('\n').pop()!) as { snapshot_id: string }).snapshot_id;

  before(async () => {
    s = await Sandbox.create('holdfast-forgery-');
    await s.ok(['init']);
    src = s.path('src');
    other = s.path('other');
    await fs.mkdir(join(src, 'd'), { recursive: true });
    await fs.mkdir(other);
    await fs.writeFile(join(src, 'a.bin'), bytes('a', 300_000));
    await fs.writeFile(join(src, 'd', 'note.txt'), 'first\n');
    s1 = backupId(await s.ok(['--json', 'backup', src]));
    await fs.writeFile(join(src, 'd', 'note.txt'), 'second\n');
    await fs.writeFile(join(src, 'b.bin'), bytes('b', 200_000));
    s2 = backupId(await s.ok(['--json', 'backup', src]));
    await fs.writeFile(join(other, 'secret.txt'), 'the other snapshot\n');
    so = backupId(await s.ok(['--json', 'backup', other]));
  });
  after(async () => s.remove());

  /** Every keyed reader refuses `forged`, check with the password reports it; keyless check still runs. */
  async function assertRefused(forged: string): Promise<void> {
    const target = s.path(`t-${forged.slice(0, 8)}`);
    failsWith(await s.run(['restore', forged, '--target', target]), 1, new RegExp(`snapshot ${forged} fails its MAC`));
    await assert.rejects(fs.stat(target), { code: 'ENOENT' }, 'a refused restore wrote nothing');
    failsWith(await s.run(['ls', forged]), 1, /fails its MAC/);
    failsWith(await s.run(['dump', forged, '/']), 1, /fails its MAC/);
    const check = await s.run(['check']);
    assert.equal(check.code, 1, check.stdout + check.stderr);
    assert.match(check.stderr, new RegExp(`error: snapshot ${forged}: fails its MAC`));
    const listed = await s.ok(['snapshots', '--json']);
    assert.ok(!(JSON.parse(listed.stdout) as { id: string }[]).some((x) => x.id === forged), 'snapshots lists only authentic snapshots');
    assert.match(listed.stderr, new RegExp(`skipping snapshot ${forged}: .*fails its MAC`));
    // Keyless readers keep working: they cannot tell, and say so in the docs.
    await s.ok(['check'], { env: KEYLESS });
  }

  it('a snapshot whose time and host were changed is refused, and the data is intact', async () => {
    const original = await fs.readFile(snapPath(s1));
    const forged = await forge(s1, (p) => {
      p.json['time'] = '2019-03-04T05:06:07.000Z';
      p.json['hostname'] = 'mallory';
    });
    try {
      await assertRefused(forged);
    } finally {
      await restoreOriginal(forged, s1, original);
    }
    await s.ok(['check', '--read-data']);
  });

  it('a snapshot pointed at another snapshot\'s tree (and its blob list) is refused', async () => {
    const original = await fs.readFile(snapPath(s2));
    const victim = parseSnapshot(await fs.readFile(snapPath(so)));
    const forged = await forge(s2, (p) => {
      p.json['tree'] = victim.json['tree'];
      p.ids = victim.ids;
    });
    try {
      await assertRefused(forged);
    } finally {
      await restoreOriginal(forged, s2, original);
    }
    await assertRestores(s, s2, src);
  });

  it('a snapshot with ids dropped from its plain blob list is refused, and prune with the password deletes nothing', async () => {
    const original = await fs.readFile(snapPath(so));
    const forged = await forge(so, (p) => {
      p.ids = p.ids.filter((id) => id === p.json['tree']);
    });
    try {
      await assertRefused(forged);
      const packs = (await fs.readdir(join(s.repo, 'data'), { recursive: true })).sort();
      failsWith(await s.run(['prune']), 1, new RegExp(`refusing to prune: 1 snapshot\\(s\\) fail their MAC \\(first: ${forged}\\)`));
      assert.deepEqual((await fs.readdir(join(s.repo, 'data'), { recursive: true })).sort(), packs, 'prune with the password changed nothing');
      assert.deepEqual(await fs.readdir(join(s.repo, 'deletions')).catch(() => []), [], 'and marked nothing');
    } finally {
      await restoreOriginal(forged, so, original);
    }
    await assertRestores(s, so, other);
  });

  it('future-dated copies do not displace real snapshots in a keyed forget, nor become the parent of a backup', async () => {
    const planted = [];
    for (const year of [2098, 2099]) {
      planted.push(await forge(s1, (p) => {
        p.json['time'] = `${year}-01-01T00:00:00.000Z`;
      }, true));
    }
    const before = (await snapshotsOf(s)).map((x) => x.id).sort();
    assert.deepEqual(before, [s1, s2, so].sort(), 'the planted snapshots are not listed');

    const forget = await s.ok(['forget', '--keep-last', '2']);
    for (const id of planted) assert.match(forget.stderr, new RegExp(`snapshot ${id} fails its MAC.*left out of the policy`));
    assert.match(forget.stdout, /removed 0 snapshots/);
    for (const id of [s1, s2, ...planted]) await fs.access(snapPath(id));

    const again = await s.ok(['backup', src]);
    assert.match(again.stdout, new RegExp(`using parent snapshot ${s2.slice(0, 8)}`));
    for (const id of planted) await fs.rm(snapPath(id));
    for (const id of (await snapshotsOf(s)).map((x) => x.id)) if (![s1, s2, so].includes(id)) await s.ok(['forget', id]);
    await assertRestores(s, s2, src);
  });

  it('a config whose chunker, pack size and compression were rewritten is refused; backups write nothing', async () => {
    const configPath = join(s.repo, 'config');
    const original = await fs.readFile(configPath);
    await editConfig(s.repo, (c) => {
      c['chunker'] = { algorithm: 'fastcdc-2020', minSize: 1024, avgSize: 2048, maxSize: 4096 };
      c['packSize'] = 65536;
      c['compression'] = 'off';
    });
    const packsBefore = (await fs.readdir(join(s.repo, 'data'), { recursive: true })).length;
    await fs.writeFile(join(src, 'new.bin'), bytes('new', 500_000));
    failsWith(await s.run(['backup', src]), 1, /config fails its MAC: .*refusing to open the repository/);
    failsWith(await s.run(['snapshots']), 1, /config fails its MAC/);
    failsWith(await s.run(['restore', s2, '--target', s.path('t-config')]), 1, /config fails its MAC/);
    assert.equal((await fs.readdir(join(s.repo, 'data'), { recursive: true })).length, packsBefore, 'no pack was written');
    // Keyless readers keep working on what they cannot authenticate.
    await s.ok(['check'], { env: KEYLESS });
    await fs.writeFile(configPath, original);
    await fs.rm(join(src, 'new.bin'));
    await assertRestores(s, s2, src);
    await s.ok(['check', '--read-data']);
  });

  it('init writes format version 3; a repository of version 2 (as the previous holdfast wrote it) or 1 is refused with what to do, and left as it was', async () => {
    const configPath = join(s.repo, 'config');
    const original = await fs.readFile(configPath);
    const current = decodeConfig(original);
    assert.equal(current.version, 3);
    assert.deepEqual(Object.keys(JSON.parse(original.subarray(4, original.length - 32).toString('utf8')) as object), ['version', 'id', 'created', 'chunker', 'packSize', 'compression', 'masterKey', 'mac']);
    // Version 2 named its encodings, which were then one choice in two; its MAC was made with the key, as here.
    const key = macKey(await masterKeyOf(new LocalBackend(s.repo), 'correct horse'), 'config');
    const { masterKey, ...named } = current;
    const version2 = encodeConfig({ ...named, version: 2, blobIds: 'blake3', trees: 'binary', masterKey } as RepoConfig, key);
    const listing = async (): Promise<string[]> => (await fs.readdir(s.repo, { recursive: true })).sort();
    for (const [version, bytes, why] of [[2, version2, 'its blob ids may be HMAC-SHA256 and its trees JSON'], [1, null, 'its config and snapshots carry no MAC']] as const) {
      if (bytes) await fs.writeFile(configPath, bytes);
      else {
        await editConfig(s.repo, (c) => {
          c['version'] = 1;
          delete c['mac'];
        });
      }
      const before = await listing();
      for (const [args, env] of [[['snapshots'], {}], [['backup', src], {}], [['restore', 'latest', '--target', s.path(`t-v${version}`)], {}], [['check'], KEYLESS]] as const) {
        const r = await s.run([...args], { env });
        failsWith(r, 1, new RegExp(`^holdfast: repository format version ${version} is not supported by this holdfast, which reads version 3: ${why}`));
        assert.match(r.stderr, /Restore what you need with the holdfast that wrote it, then back up again into a new repository made with this one \("holdfast init"\)/);
      }
      assert.deepEqual(await listing(), before, `version ${version}: nothing was written`);
    }
    await fs.writeFile(configPath, original);
  });
});
