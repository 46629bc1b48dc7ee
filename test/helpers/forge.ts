/**
 * Snapshots written through the repository API instead of by a backup:
 * trees no backup makes (a size that disagrees with the content, a listing
 * that is damaged, nesting thousands of folders deep), for tests of what
 * readers do with them. Works on a sandbox's repository while no CLI runs.
 */
import { LocalBackend } from '../../src/storage/local-backend.js';
import { Repository } from '../../src/repo/repository.js';
import type { RepositoryWriter } from '../../src/repo/repository-writer.js';
import { Store } from '../../src/repo/store.js';
import { BlobType } from '../../src/repo/pack.js';
import type { ContentEntry, TreeNode } from '../../src/repo/tree.js';
import type { Sandbox } from './cli.js';

/** The mtime (and ctime) of every forged node unless given. */
export const FORGED_MTIME = 1_700_000_000_123_456_000n;

export class Forge {
  private readonly blobs: string[] = [];
  private inode = 100n;

  /** The write session everything forged goes through. */
  readonly writer: RepositoryWriter;

  private constructor(readonly repo: Repository) {
    this.writer = repo.newWriter();
  }

  /** Opens the sandbox's repository (made with `init`) with its password. */
  static async open(s: Sandbox): Promise<Forge> {
    const repo = await Repository.open(await Store.open(new LocalBackend(s.repo)), 'correct horse');
    await repo.loadIndex();
    return new Forge(repo);
  }

  /** Stores a data blob; returns its id. */
  async data(bytes: Buffer): Promise<string> {
    const { id } = await this.writer.saveBlob(BlobType.Data, bytes);
    this.blobs.push(id);
    return id;
  }

  /** Stores a listing (sorted by name here); returns its id. */
  async tree(nodes: TreeNode[]): Promise<string> {
    const sorted = [...nodes].sort((a, b) => Buffer.compare(a.name, b.name));
    const id = await this.writer.saveTree(sorted);
    this.blobs.push(id);
    return id;
  }

  /** Stores `bytes` as a tree blob, whatever they hold; returns its id. */
  async rawTree(bytes: Buffer): Promise<string> {
    const { id } = await this.writer.saveBlob(BlobType.Tree, bytes);
    this.blobs.push(id);
    return id;
  }

  /** A file node declaring `size` bytes, with `content` as its content list. */
  file(name: string, size: number, content: ContentEntry[], extra: Partial<TreeNode> = {}): TreeNode {
    return { ...this.meta(name), type: 'file', mode: 0o644, size, content, ...extra };
  }

  /** A folder node listing `subtree`. */
  dir(name: string, subtree: string, extra: Partial<TreeNode> = {}): TreeNode {
    return { ...this.meta(name), type: 'dir', mode: 0o755, size: 0, subtree, ...extra };
  }

  /** Flushes the packs and index and saves a snapshot of `root` (a listing of "/"); returns its id. */
  async snapshot(root: string, paths: string[] = ['/']): Promise<string> {
    await this.writer.flush();
    const now = new Date().toISOString();
    return this.writer.saveSnapshot({
      time: now, hostname: 'forge', username: 'forge', paths, tags: [], tree: root, blobs: this.blobs,
      summary: { filesNew: 0, filesChanged: 0, filesUnchanged: 0, dirs: 0, otherNodes: 0, errors: 0, totalBytes: 0, bytesRead: 0, blobsAdded: 0, dataAdded: 0, dataAddedStored: 0, start: now, end: now },
    });
  }

  private meta(name: string): Omit<TreeNode, 'type' | 'size' | 'mode'> {
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    return { name: Buffer.from(name), uid, gid, mtime: FORGED_MTIME, ctime: FORGED_MTIME, device: 1n, inode: this.inode++, links: 1 };
  }
}
