/**
 * The restore test of a snapshot of files:
 *
 *   1. choose the sample (sample.ts): one walk of the tree
 *   2. restore the sampled paths (and the folders on their way) into the
 *      scratch folder with the restorer, `verify` on: each restored file is
 *      read back and every chunk re-hashed with the repository's keyed id
 *      and compared with the tree's content list (the fingerprint for files
 *      stored in a shared stream), and mtimes compared
 *   3. compare what restore sets besides: type, mode, owner (as root),
 *      symlink targets
 *   4. remove the scratch folder, however the test ended
 */
import { lstat, readlink } from 'node:fs/promises';
import type { Repository } from '../../repo/repository.js';
import type { TreeNode } from '../../repo/tree.js';
import { PathShortener } from '../../sources/posix.js';
import type { JobPoolOptions } from '../pool/worker-pool.js';
import { Restorer } from '../restore/restorer.js';
import { chooseSample, type SampledNode } from './sample.js';
import { openScratch } from './scratch.js';
import type { FileSampleResult, PathProblem } from './result.js';

export interface VerifyFilesOptions extends JobPoolOptions {
  /** The folder to restore into: empty, or not existing yet (its parent must); emptied or removed afterwards. */
  readonly scratch: string;
  /** The share of the files to restore, in (0, 1]. */
  readonly share: number;
  /** At least this many files (all, when the snapshot has fewer). */
  readonly minFiles: number;
  /** Chooses the sample: the same seed restores the same files. */
  readonly seed: string;
  /** The process may chown (it runs as root): owners are restored, and compared. */
  readonly privileged?: boolean;
  readonly signal?: AbortSignal;
  /** Told once the sample is chosen, before anything is restored. */
  readonly onSample?: (s: { sampled: number; candidates: number; bytes: number; scratch: string }) => void;
}

/** Restores a sample of the snapshot tree `tree` and compares it with the snapshot. */
export async function verifyFiles(repo: Repository, tree: string, opts: VerifyFilesOptions): Promise<FileSampleResult> {
  const failed: PathProblem[] = [];
  const sample = await chooseSample(repo, tree, {
    share: opts.share, minFiles: opts.minFiles, seed: opts.seed,
    ...(opts.signal ? { signal: opts.signal } : {}),
    onLostListing: (path, e) => failed.push({ path, error: `its listing cannot be read (${e.message}): nothing below it can be restored`, code: e.code }),
    onMarkedDamaged: (path) => failed.push({ path, error: 'its listing was lost in the repository (marked damaged by "repair snapshots"): nothing below it can be restored' }),
  });
  // The sampled paths and the folders on their way, as the restorer's filter sees them.
  const selected = new Set<string>();
  for (const { path } of sample.nodes) {
    selected.add(path.toString('latin1'));
    for (let i = path.indexOf(0x2f, 1); i > 0; i = path.indexOf(0x2f, i + 1)) selected.add(path.subarray(0, i).toString('latin1'));
  }
  const bytes = sample.nodes.reduce((n, s) => n + (s.node.type === 'file' ? s.node.size : 0), 0);
  const scratch = await openScratch(opts.scratch);
  let verified = 0;
  try {
    opts.onSample?.({ sampled: sample.nodes.length, candidates: sample.candidates, bytes, scratch: scratch.path });
    const r = await new Restorer(repo, scratch.path, {
      select: (path) => selected.has(path.toString('latin1')),
      verify: true,
      privileged: opts.privileged === true,
      ...(opts.pool ? { pool: opts.pool } : {}),
      // What goes wrong is in the restorer's result, listed with the rest: no warnings as it goes.
      ...(opts.signal ? { signal: opts.signal } : {}),
    }).run(tree);
    const reported = new Set<string>();
    for (const f of [...r.failed, ...r.verifyFailed]) {
      reported.add(f.path);
      failed.push(f);
    }
    if (r.progress.errors > r.failed.length) failed.push({ path: '/', error: `${r.progress.errors - r.failed.length} more paths were not restored` });
    const long = new PathShortener();
    try {
      for (const s of sample.nodes) {
        opts.signal?.throwIfAborted();
        if (reported.has(s.path.toString())) continue;
        const why = await differs(s, await long.short(Buffer.concat([Buffer.from(scratch.path), s.path])), opts.privileged === true);
        if (why === undefined) verified++;
        else failed.push({ path: s.path.toString(), error: why });
      }
    } finally {
      await long.close();
    }
  } finally {
    await scratch.remove();
  }
  const { largest, newest } = sample;
  return {
    seed: opts.seed, share: opts.share, minFiles: opts.minFiles, candidates: sample.candidates,
    paths: sample.nodes.map((s) => s.path.toString()),
    ...(largest ? { largest: largest.path.toString() } : {}),
    ...(newest ? { newest: newest.path.toString() } : {}),
    bytes, verified, failed,
  };
}

const TYPE_OF_MODE: Record<number, TreeNode['type']> = { 0o100000: 'file', 0o120000: 'symlink', 0o040000: 'dir' };

/** What differs between a restored node and the snapshot's, besides what the restorer's verify checks (bytes, mtime); undefined: nothing. */
async function differs(s: SampledNode, dest: string | Buffer, privileged: boolean): Promise<string | undefined> {
  const st = await lstat(dest).catch((e: NodeJS.ErrnoException) => e);
  if (st instanceof Error) return st.code === 'ENOENT' ? 'not restored' : `cannot look at the restored copy: ${st.message}`;
  const node = s.node;
  const type = TYPE_OF_MODE[st.mode & 0o170000] ?? 'another kind of file';
  if (type !== node.type) return `restored as a ${type}, the snapshot has a ${node.type}`;
  if (node.type !== 'symlink' && (st.mode & 0o7777) !== node.mode) return `restored mode ${(st.mode & 0o7777).toString(8)} differs from the snapshot's ${node.mode.toString(8)}`;
  if (privileged && (st.uid !== node.uid || st.gid !== node.gid)) return `restored owner ${st.uid}:${st.gid} differs from the snapshot's ${node.uid}:${node.gid}`;
  if (node.type === 'symlink') {
    const target = await readlink(dest, { encoding: 'buffer' });
    if (!node.target || !target.equals(node.target)) return `restored link target "${target.toString()}" differs from the snapshot's "${node.target?.toString() ?? ''}"`;
  }
  return undefined;
}
