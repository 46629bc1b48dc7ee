/**
 * Repositories with snapshots as data, for the prune / check / repair tests:
 * a snapshot is a map of file names to contents, stored in a flat tree (or
 * one folder deep for names with a slash), each file cut into fixed-size
 * chunks so tests control exactly which blobs are shared.
 *
 *   const f = await GcFixture.create();
 *   const a = await f.snapshot({ 'x.bin': bytes(1, 40_000), 'dir/y.txt': 'hello' });
 *   await f.forget(a);                       // what `forget` does: remove the snapshot object
 *   const r = await new Pruner(f.plain(), { graceMs: 1000, now: f.clock }).run();
 *   f.advance(1000);
 *   assert.deepEqual(await f.files(b), {...});  // reads through a fresh Repository
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import type { Backend } from '../../src/storage/backend.js';
import { Repository, type OpenOptions } from '../../src/repo/repository.js';
import { Store } from '../../src/repo/store.js';
import type { RepositoryWriter } from '../../src/repo/repository-writer.js';
import { RepoState } from '../../src/repo/repo-state.js';
import { BlobType } from '../../src/repo/pack.js';
import { contentBytes, type TreeNode, type ContentEntry } from '../../src/repo/tree.js';
import type { Snapshot } from '../../src/repo/snapshot.js';
import { Checker, type CheckReport } from '../../src/jobs/check/checker.js';
import { TEST_PASSWORD, TEST_SCRYPT } from '../helpers/memory-repo.js';

/** Deterministic pseudo-random bytes. */
export function bytes(seed: number | string, n: number): Buffer {
  const out = Buffer.alloc(n);
  let block = createHash('sha256').update(String(seed)).digest();
  for (let o = 0; o < n; o += 32) {
    block.copy(out, o, 0, Math.min(32, n - o));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

export type Files = Record<string, Buffer | string>;

const META = { mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000_000_000_000n, ctime: 1_700_000_000_000_000_000n, device: 1n, links: 1 };

export class GcFixture {
  /** The test clock for prune (ms since the epoch). */
  now = Date.parse('2030-01-01T00:00:00Z');
  readonly clock = (): number => this.now;
  private inode = 1n;

  private constructor(readonly backend: Backend, readonly repo: Repository, readonly chunk: number) {}

  /** A fresh in-memory repository with small packs (64 KiB) and cheap scrypt. */
  static async create(opts: { chunk?: number; backend?: Backend } = {}): Promise<GcFixture> {
    const backend = opts.backend ?? new MemoryBackend();
    const repo = await Repository.init(backend, TEST_PASSWORD, { packSize: 1 << 16, compression: 'off', scrypt: TEST_SCRYPT });
    return new GcFixture(backend, repo, opts.chunk ?? 8192);
  }

  advance(ms: number): void {
    this.now += ms;
  }

  plain(backend: Backend = this.backend): Store {
    return this.repo.store.withBackend(backend);
  }

  /** A repository opened afresh (index loaded), as a new process would. */
  async open(backend: Backend = this.backend, opts: OpenOptions = {}): Promise<Repository> {
    const r = await Repository.open(await Store.open(backend), TEST_PASSWORD, opts);
    await r.loadIndex();
    return r;
  }

  /** Stores the files' blobs and tree through a writer of `repo` (default: a fresh one) and writes a snapshot. */
  async snapshot(files: Files, repo?: Repository, time = new Date(this.now)): Promise<string> {
    const w = (repo ?? (await this.open())).newWriter();
    const { tree, blobs } = await this.store(w, files);
    await w.flush();
    return w.saveSnapshot(this.snapshotOf(tree, blobs, time));
  }

  /** Stores blobs and trees (not flushed); returns the root tree and every id. */
  async store(r: RepositoryWriter, files: Files): Promise<{ tree: string; blobs: Set<string> }> {
    const blobs = new Set<string>();
    const dirs = new Map<string, TreeNode[]>();
    const root: TreeNode[] = [];
    for (const [path, data] of Object.entries(files)) {
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
      const content: ContentEntry[] = [];
      for (let o = 0; o < buf.length; o += this.chunk) {
        const { id } = await r.saveBlob(BlobType.Data, buf.subarray(o, o + this.chunk));
        blobs.add(id);
        content.push(id);
      }
      const [dir, name] = path.includes('/') ? path.split('/', 2) as [string, string] : [undefined, path];
      const node: TreeNode = { ...META, name: Buffer.from(name), type: 'file', inode: this.inode++, size: buf.length, content };
      if (dir === undefined) root.push(node);
      else {
        if (!dirs.has(dir)) dirs.set(dir, []);
        dirs.get(dir)!.push(node);
      }
    }
    for (const [dir, nodes] of dirs) {
      const id = await r.saveTree(nodes);
      blobs.add(id);
      root.push({ ...META, mode: 0o755, name: Buffer.from(dir), type: 'dir', inode: this.inode++, size: 0, subtree: id });
    }
    const tree = await r.saveTree(root);
    blobs.add(tree);
    return { tree, blobs };
  }

  snapshotOf(tree: string, blobs: Iterable<string>, time: Date): Snapshot {
    const t = time.toISOString();
    return {
      time: t, hostname: 'test', username: 'test', paths: ['/'], tags: [], tree, blobs: [...blobs],
      summary: { filesNew: 0, filesChanged: 0, filesUnchanged: 0, dirs: 0, otherNodes: 0, errors: 0, totalBytes: 0, bytesRead: 0, blobsAdded: 0, dataAdded: 0, dataAddedStored: 0, start: t, end: t },
    };
  }

  /** Removes a snapshot object, as `forget` does. */
  async forget(id: string): Promise<void> {
    await this.backend.remove({ type: 'snapshot', name: id });
  }

  /** Every file of a snapshot, read through a fresh repository (throws if any blob is unreadable). */
  async files(id: string, backend: Backend = this.backend): Promise<Record<string, Buffer>> {
    const r = await this.open(backend);
    const s = await r.loadSnapshot(id);
    const out: Record<string, Buffer> = {};
    const walk = async (tree: string, prefix: string): Promise<void> => {
      for (const n of await r.loadTree(tree)) {
        const p = `${prefix}${n.name.toString()}`;
        if (n.type === 'dir') await walk(n.subtree!, `${p}/`);
        else {
          const parts: Buffer[] = [];
          for await (const b of contentBytes(n.content ?? [], (id) => r.loadBlob(BlobType.Data, id), p)) parts.push(b);
          out[p] = Buffer.concat(parts);
        }
      }
    };
    await walk(s.tree, '');
    return out;
  }

  /** Asserts a snapshot restores to exactly `want`. */
  async assertRestores(id: string, want: Files, backend: Backend = this.backend): Promise<void> {
    const got = await this.files(id, backend);
    assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), `snapshot ${id.slice(0, 8)}: file names differ`);
    for (const [k, v] of Object.entries(want)) assert.ok(got[k]!.equals(Buffer.isBuffer(v) ? v : Buffer.from(v)), `snapshot ${id.slice(0, 8)}: ${k} differs`);
  }

  /** Runs check (keyed unless `keyless`), returns the report. */
  async check(opts: { readData?: boolean; keyless?: boolean; backend?: Backend } = {}): Promise<CheckReport> {
    const backend = opts.backend ?? this.backend;
    return new Checker(this.plain(backend), {
      ...(opts.readData ? { readData: { kind: 'all' as const } } : {}),
      ...(opts.keyless ? {} : { keyed: await this.openTolerant(backend) }),
    }).run();
  }

  /** Opened with the key, the index filled the way check and repair fill it (damaged index files tolerated). */
  async openTolerant(backend: Backend = this.backend): Promise<Repository> {
    const r = await Repository.open(await Store.open(backend), TEST_PASSWORD);
    (await RepoState.load(this.plain(backend))).fill(r.index);
    return r;
  }

  /** Asserts check (with read-data, keyed and keyless) finds no error. */
  async assertCheckPasses(backend: Backend = this.backend): Promise<void> {
    for (const keyless of [false, true]) {
      const r = await this.check({ readData: true, keyless, backend });
      assert.deepEqual(r.errors, [], `check${keyless ? ' (keyless)' : ''} found errors`);
      assert.deepEqual(r.damaged, []);
    }
  }

  /** Every object in the repository: type/name → size. */
  async objects(backend: Backend = this.backend): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const type of ['data', 'index', 'snapshot', 'deletion', 'key', 'config'] as const) {
      for await (const o of backend.list(type)) out.set(`${type}/${o.name}`, o.size);
    }
    return out;
  }

  /** Replaces a stored object's bytes (damage from outside: bit rot, a bad disk). */
  async tamper(type: 'data' | 'index' | 'snapshot', name: string, change: (b: Buffer) => Buffer): Promise<void> {
    const h = { type, name };
    const b = await this.backend.load(h);
    await this.backend.remove(h);
    await this.backend.save(h, change(Buffer.from(b)));
  }
}

/** Names of the objects of a type. */
export async function names(backend: Backend, type: 'data' | 'index' | 'snapshot' | 'deletion'): Promise<string[]> {
  const out: string[] = [];
  for await (const o of backend.list(type)) out.push(o.name);
  return out.sort();
}
