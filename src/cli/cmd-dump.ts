/**
 * `holdfast dump SNAP PATH`: a file to stdout, a folder as a tar stream; the
 * snapshot SNAP resolved to is named on stderr.
 */
import type { Command } from 'commander';
import { BlobType } from '../repo/pack.js';
import { CorruptObjectError } from '../repo/errors.js';
import type { Repository } from '../repo/repository.js';
import { contentBytes, type TreeNode } from '../repo/tree.js';
import { findNode, walkTree } from '../jobs/tree-walk.js';
import { writeOut, writeTar, type TarEntry } from '../jobs/tar-stream-writer.js';
import { globals, openRepo, warn } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { findSnapshot, tellResolved, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';
import { WalkReport } from './walk-report.js';
import { isImageSnapshot, openImageFiles } from '../jobs/image-files/open-image-files.js';
import { dumpImage } from '../jobs/image-files/image-dump.js';

/**
 * Loads data blobs, keeping the last one: small files that follow each other
 * in a folder are mostly slices of the same blob.
 */
function lastBlobLoader(repo: Repository): (id: string) => Promise<Buffer> {
  let last: { id: string; plain: Promise<Buffer> } | undefined;
  return (id) => {
    if (last?.id !== id) last = { id, plain: repo.loadBlob(BlobType.Data, id) };
    return last.plain;
  };
}

/** Yields a file's bytes, holes as zeros. */
async function* fileBytes(load: (id: string) => Promise<Buffer>, node: TreeNode): AsyncGenerator<Buffer> {
  if (node.damaged) throw new ExitError(`${node.name.toString()}: its content was lost in the repository (marked damaged by "repair snapshots"); not dumped`, EXIT.failed);
  yield* contentBytes(node.content ?? [], load, node.name.toString());
}

/**
 * A folder of a file snapshot as a tar stream on stdout. What it leaves out
 * (refused names, listings that cannot be read) ends it with exit 1 once the
 * stream is complete, as a restore of the same snapshot does.
 */
async function dumpTar(repo: Repository, subtree: string, base: string): Promise<void> {
  const load = lastBlobLoader(repo);
  const report = new WalkReport('dump', (why) => `skipped (${why})`, true);
  async function* entries(): AsyncGenerator<TarEntry> {
    for await (const { path, node } of walkTree(repo, subtree, report.walk, Buffer.from(base))) {
      yield {
        path, type: node.type, mode: node.mode, uid: node.uid, gid: node.gid,
        ...(node.user === undefined ? {} : { user: node.user }),
        ...(node.group === undefined ? {} : { group: node.group }),
        mtime: node.mtime, size: node.size,
        ...(node.target ? { target: node.target } : {}),
        ...(node.rdev === undefined ? {} : { rdev: node.rdev }),
        ...(node.links > 1 ? { linkKey: `${node.device}:${node.inode}` } : {}),
        ...(node.xattrs ? { xattrs: node.xattrs } : {}),
        content: () => fileBytes(load, node),
      };
    }
  }
  await writeTar(process.stdout, entries());
  report.end();
}

export function register(program: Command): void {
  withFilterOptions(program.command('dump'))
    .description('write a file of a snapshot to stdout, or a folder as a tar stream')
    .argument('<snapshot>', 'snapshot id, id prefix, or "latest"')
    .argument('<path>', 'path in the snapshot')
    .action(async (snap: string, path: string, f: SnapshotFilter, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g);
      const found = await findSnapshot(repo, snap, f);
      tellResolved(g, 'dumping', found);
      const { id, snapshot } = found;
      if (isImageSnapshot(snapshot)) {
        // Files inside a disk image: read from the image's filesystems (src/jobs/image-files).
        return dumpImage(await openImageFiles(repo, snapshot, id, warn), path, { out: process.stdout, warn });
      }
      const clean = `/${path.split('/').filter((p) => p !== '').join('/')}`;
      const node = clean === '/' ? undefined : await findNode(repo, snapshot.tree, clean);
      if (node === undefined) return dumpTar(repo, snapshot.tree, '/');
      if (node.type === 'dir') return dumpTar(repo, node.subtree!, clean);
      if (node.type !== 'file') throw new ExitError(`${clean} is a ${node.type}, not a file or folder`, EXIT.failed);
      try {
        for await (const chunk of fileBytes(lastBlobLoader(repo), node)) await writeOut(process.stdout, chunk);
      } catch (e) {
        // Part of the file may be out already: say which file stopped short, not only which blob.
        if (e instanceof CorruptObjectError) throw new ExitError(`${clean}: not dumped whole: ${e.message}`, EXIT.failed);
        throw e;
      }
    });
}
