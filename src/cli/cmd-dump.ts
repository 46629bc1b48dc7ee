/** `holdfast dump SNAP PATH`: a file to stdout, a folder as a tar stream. */
import type { Command } from 'commander';
import tar from 'tar-stream';
import { pipeline } from 'node:stream/promises';
import { BlobType } from '../repo/pack.js';
import type { Repository } from '../repo/repository.js';
import type { TreeNode } from '../repo/tree.js';
import { findNode, walkTree } from '../jobs/tree-walk.js';
import { globals, openRepo, warn } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { findSnapshot, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';
import { isImageSnapshot, openImageFiles } from '../jobs/image-files/open-image-files.js';
import { dumpImage } from '../jobs/image-files/image-dump.js';

const ZERO_RUN = Buffer.alloc(1 << 20);

/** Yields a file's bytes, holes as zeros. */
async function* fileBytes(repo: Repository, node: TreeNode): AsyncGenerator<Buffer> {
  if (node.damaged) throw new ExitError(`${node.name.toString()}: its content was lost in the repository (marked damaged by "repair snapshots"); not dumped`, EXIT.failed);
  for (const c of node.content ?? []) {
    if (typeof c === 'number') {
      for (let left = c; left > 0; left -= ZERO_RUN.length) yield ZERO_RUN.subarray(0, Math.min(left, ZERO_RUN.length));
    } else {
      yield await repo.loadBlob(BlobType.Data, c);
    }
  }
}

/** The part of a writable stream (node or streamx) that `writeOut` needs. */
interface Sink {
  write(chunk: Buffer): boolean;
  once(event: 'drain', fn: () => void): unknown;
}

async function writeOut(out: Sink, chunk: Buffer): Promise<void> {
  if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
}

const TAR_TYPE: Partial<Record<TreeNode['type'], tar.Header['type']>> = {
  file: 'file', dir: 'directory', symlink: 'symlink', fifo: 'fifo', chardev: 'character-device', blockdev: 'block-device',
};

async function dumpTar(repo: Repository, subtree: string, base: string): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, process.stdout);
  const firstPath = new Map<string, string>();
  for await (const { path, node } of walkTree(repo, subtree, { onUnsafe: (p, why) => warn(`${p}: skipped (${why})`) }, Buffer.from(base))) {
    const type = TAR_TYPE[node.type];
    if (!type) continue;
    const name = path.toString().replace(/^\/+/, '');
    const rdev = node.rdev ?? 0n;
    const header: Partial<tar.Header> & { name: string } = {
      name, mode: node.mode, uid: node.uid, gid: node.gid, uname: node.user ?? '', gname: node.group ?? '',
      mtime: new Date(Number(node.mtime / 1_000_000n)), type,
      ...(node.target ? { linkname: node.target.toString() } : {}),
      ...(type === 'character-device' || type === 'block-device'
        ? { devmajor: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)), devminor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)) }
        : {}),
    };
    if (node.type === 'file') {
      const key = `${node.device}:${node.inode}`;
      const first = node.links > 1 ? firstPath.get(key) : undefined;
      if (first) {
        pack.entry({ ...header, type: 'link', linkname: first });
        continue;
      }
      if (node.links > 1) firstPath.set(key, name);
      const entry = pack.entry({ ...header, size: node.size });
      for await (const chunk of fileBytes(repo, node)) await writeOut(entry, chunk);
      await new Promise<void>((res, rej) => entry.end((err?: Error | null) => (err ? rej(err) : res())));
    } else {
      pack.entry(header);
    }
  }
  pack.finalize();
  await done;
}

export function register(program: Command): void {
  withFilterOptions(program.command('dump'))
    .description('write a file of a snapshot to stdout, or a folder as a tar stream')
    .argument('<snapshot>', 'snapshot id, id prefix, or "latest"')
    .argument('<path>', 'path in the snapshot')
    .action(async (snap: string, path: string, f: SnapshotFilter, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g);
      const { id, snapshot } = await findSnapshot(repo, snap, f);
      if (isImageSnapshot(snapshot)) {
        // Files inside a disk image: read from the image's filesystems (src/jobs/image-files).
        return dumpImage(await openImageFiles(repo, snapshot, id, warn), path, { out: process.stdout, warn });
      }
      const clean = `/${path.split('/').filter((p) => p !== '').join('/')}`;
      const node = clean === '/' ? undefined : await findNode(repo, snapshot.tree, clean);
      if (node === undefined) return dumpTar(repo, snapshot.tree, '/');
      if (node.type === 'dir') return dumpTar(repo, node.subtree!, clean);
      if (node.type !== 'file') throw new ExitError(`${clean} is a ${node.type}, not a file or folder`, EXIT.failed);
      for await (const chunk of fileBytes(repo, node)) await writeOut(process.stdout, chunk);
    });
}
