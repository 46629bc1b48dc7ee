/**
 * `holdfast backup --image SRC` and `holdfast backup --image-from-command --
 * CMD ARGS...`: a block-level backup of a block device, a raw image file, a
 * qcow2 file or a running VM's disk (`qmp:SOCKET#DISK`, point-in-time; both
 * with their dirty bitmaps rotated: qcow2-bitmaps.ts), an NBD export, a raw stream on stdin (`-`), or the raw output of a producer
 * command (no snapshot unless it exits 0). Registered through `cmd-backup.ts`, which
 * hands over when either option is given.
 */
import { hostname as osHostname } from 'node:os';
import type { Command } from 'commander';
import type { CompressionMode } from '../core/compress.js';
import type { Repository } from '../repo/repository.js';
import { ImageBackup, defaultBlockSize, type ImageBackupResult } from '../jobs/image/image-backup.js';
import { cachePath } from '../jobs/image/cbt-cache.js';
import { BLOCK_WORKER } from '../jobs/image/block-protocol.js';
import { cacheRoot } from './cache-root.js';
import { parseSize } from '../core/size.js';
import { MAX_IMAGE_BLOCK, MIN_IMAGE_BLOCK } from '../repo/image-info.js';
import { bitmapDiskOf, imageSourcePath, openImageInput, streamInput, type ImageInput } from '../sources/image/image-input.js';
import { bitmapsOf, withBitmapRotation, type BackupBitmaps } from '../jobs/image/qcow2-bitmaps.js';
import { commandOutput } from '../sources/command-output.js';
import { mountsOf } from '../sources/image/block-devices.js';
import { formatBytes, formatDuration, globals, processPool, say, skipDamaged, snapshotsOf, warn, type GlobalOptions } from './context.js';
import { verifiedParent } from '../jobs/snapshots/select.js';
import type { SnapshotEntry } from '../repo/store.js';
import { ExitError, EXIT } from './exit-codes.js';
import { Progress } from './progress.js';
import { summaryJson } from '../jobs/snapshots/summary-json.js';
import { snakeKeys } from '../core/snake-keys.js';
import { backupSession, hooksOf, parseTime, splitTags, type HookFlags } from './backup-session.js';

/** The flags of `backup` this command reads. */
export interface ImageBackupFlags extends HookFlags {
  image?: string;
  imageFromCommand?: boolean;
  allBlocks?: boolean;
  allowLive?: boolean;
  blockSize?: string;
  cache?: boolean;
  tag?: string[];
  host?: string;
  time?: string;
  parent?: string;
  force?: boolean;
  stdinFilename?: string;
  compression?: CompressionMode;
}

/** Adds the image options to `backup`. */
export function withImageOptions(cmd: Command): Command {
  return cmd
    .option('--image <source>', 'back up a block device, a raw image file, a qcow2 file, a running VM\'s disk through its QMP socket (qmp:/PATH/TO/QMP.SOCKET#DRIVE), an NBD export (nbd://HOST:PORT/EXPORT, nbd+unix:///EXPORT?socket=PATH), or "-" (a raw stream on stdin) block by block')
    .option('--image-from-command', 'run the command given as arguments and back up its output as a raw image; fails if it fails')
    .option('--all-blocks', 'with --image: keep every block, even those no file system uses')
    .option('--allow-live', 'with --image: accept a source mounted read-write (the image is only crash-consistent)')
    .option('--block-size <size>', 'with --image: block size, a power of two from 4K to 64M (default 128K, more for disks over 256G)')
    .option('--no-cache', 'with --image: neither use nor write the changed-block cache');
}

/** Parses "64K", "1M", "1MiB", "4096". */
export function parseBlockSize(s: string): number {
  const n = parseSize(s);
  if (n === undefined) throw new ExitError(`bad --block-size "${s}": use e.g. 64K, 1M`, EXIT.usage);
  if (n < MIN_IMAGE_BLOCK || n > MAX_IMAGE_BLOCK || (n & (n - 1)) !== 0) throw new ExitError(`bad --block-size "${s}": a power of two from 4K to 64M`, EXIT.usage);
  return n;
}


/** Refuses a source mounted read-write unless --allow-live; returns whether it is live. */
async function checkLive(input: ImageInput, allowLive: boolean): Promise<boolean> {
  if (input.kind === 'stream') return false;
  const mounts = await mountsOf({ ...(input.devNo ? { blockDevice: input.devNo } : {}), ...(input.kind === 'file' ? { file: input.path } : {}) });
  const rw = mounts.filter((m) => m.readWrite);
  if (rw.length === 0) return false;
  const where = rw.map((m) => `${m.device} on ${m.mountPoint}`).join(', ');
  if (!allowLive) {
    throw new ExitError(
      `${input.path} is mounted read-write (${where}). A block-level copy of a file system in use is only crash-consistent, `
      + 'like pulling the power: unmount it, remount it read-only, or back up a snapshot of it (LVM, ZFS, a VM snapshot); '
      + 'or pass --allow-live to accept a crash-consistent image. Nothing was written.',
      EXIT.usage,
    );
  }
  warn(`${input.path} is mounted read-write (${where}): the image is only crash-consistent (--allow-live)`);
  return true;
}

/** The parent of an image backup of `paths`: --parent, else the latest image snapshot of this host and paths, read and authenticated. */
function imageParent(repo: Repository, snapshots: readonly SnapshotEntry[], flags: ImageBackupFlags, paths: string[]): Promise<SnapshotEntry | null> {
  return verifiedParent(repo, snapshots, { hostname: flags.host ?? osHostname(), paths, image: true, ...(flags.parent === undefined ? {} : { parent: flags.parent }) }, skipDamaged);
}

/** Runs `backup --image`. */
export async function backupImageCommand(args: string[], flags: ImageBackupFlags, cmd: Command): Promise<void> {
  const g = globals(cmd);
  const fromCommand = flags.imageFromCommand === true;
  if (fromCommand && flags.image !== undefined) throw new ExitError('give either --image SRC or --image-from-command -- CMD ARGS..., not both', EXIT.usage);
  if (fromCommand && args.length === 0) throw new ExitError('--image-from-command needs a command: holdfast backup --image-from-command -- CMD ARGS...', EXIT.usage);
  if (!fromCommand && args.length > 0) throw new ExitError('--image takes its source as its value and no paths: holdfast backup --image /dev/sda', EXIT.usage);
  const src = fromCommand ? args.join(' ') : flags.image!;
  const chosen = flags.blockSize ? parseBlockSize(flags.blockSize) : undefined;
  if (src === '-' && process.stdin.isTTY) throw new ExitError('--image - given but stdin is a terminal', EXIT.usage);
  const openError = (e: unknown): ExitError => new ExitError(`cannot open ${src}: ${(e as Error).message}`, EXIT.failed);
  // A qcow2 file or a VM's disk is opened in the session: its dirty bitmaps depend on the repository and the parent.
  const disk = fromCommand ? undefined : await bitmapDiskOf(src);
  // The command starts when the backup reads its first byte, inside the session.
  const input: ImageInput | undefined = disk ? undefined : fromCommand ? streamInput(src, commandOutput(args)) : src === '-' ? streamInput(src, process.stdin)
    : await openImageInput(src).catch((e: unknown) => {
      throw openError(e);
    });
  try {
    const live = input ? await checkLive(input, flags.allowLive === true) : false;
    const stream = input?.kind === 'stream';
    const name = flags.stdinFilename || 'stdin.img';
    if (stream && (name.includes('/') || name === '.' || name === '..')) throw new ExitError(`bad --stdin-filename "${name}"`, EXIT.usage);
    const paths = [stream ? `/${name}` : imageSourcePath(src)];
    const hooks = hooksOf(flags);
    // A source read whole boots its block workers while the key is derived. A disk with dirty bitmaps
    // does not: its incremental reads little and late, and two threads booting beside the derivation
    // and the index delayed it (docs/decisions.md, "Reading VM disks").
    if (!disk) processPool().warm(BLOCK_WORKER);
    // The parent is found and the disk opened while the lock is taken; nothing is written before it is.
    await backupSession(g, async (repo, signal, ready) => {
      const snapshots = await snapshotsOf(repo, { blobList: false });
      const parent = flags.force ? null : await imageParent(repo, snapshots, flags, paths);
      const o = { flags, paths, parent, chosen, live, ready };
      const result = disk
        ? await withBitmapRotation(disk, repo.config.id, parent?.snapshot.image, bitmapsOf(snapshots), warn, openError, (din, bitmaps) => backupImage(g, repo, signal, din, { ...o, bitmaps }))
        : await backupImage(g, repo, signal, input!, { ...o, bitmaps: undefined });
      return { outcome: result.snapshot.incomplete ? 'incomplete' : 'success', snapshotId: result.id };
    }, { early: true, ...(hooks ? { hooks: { hooks, paths, kind: 'image' } } : {}) });
  } finally {
    await input?.close();
  }
}

/** One image backup in an open session: runs the job and reports it. */
async function backupImage(
  g: GlobalOptions, repo: Repository, signal: AbortSignal, input: ImageInput,
  o: { flags: ImageBackupFlags; paths: string[]; parent: SnapshotEntry | null; chosen: number | undefined; live: boolean; ready: Promise<void>; bitmaps: BackupBitmaps | undefined },
): Promise<ImageBackupResult> {
  const { flags, paths, parent, chosen, live, ready, bitmaps } = o;
  // The parent's block size by default, so that a disk that grew keeps its changed-block detection.
  const blockSize = chosen ?? parent?.snapshot.image?.blockSize ?? defaultBlockSize(input.size);
  const cacheFile = flags.cache === false ? undefined : cachePath(cacheRoot(), repo.config.id, paths[0]!);
  const progress = new Progress(g, { files: 0, bytes: input.size ?? 0, done: input.size !== undefined });
  const job = new ImageBackup(repo, {
    input,
    paths,
    blockSize,
    allBlocks: flags.allBlocks === true,
    live,
    ...(bitmaps ? { qcow2: bitmaps } : {}),
    tags: splitTags(flags.tag),
    ...(flags.host ? { hostname: flags.host } : {}),
    ...(flags.time ? { time: parseTime(flags.time) } : {}),
    parent,
    ...(cacheFile ? { cacheFile } : {}),
    readCache: !flags.force,
    ...(flags.compression ? { compression: flags.compression } : {}),
    signal,
    ready,
    pool: processPool(),
    // Said once there is something to back up: an empty stream is refused first.
    onStart: () => {
      if (parent && !g.quiet && !g.json) say(g, `using parent snapshot ${parent.id.slice(0, 8)}`);
    },
    onWarning: (m) => {
      progress.stop();
      warn(m);
    },
    onProgress: (p) => progress.update({ files: 0, bytes: p.bytes, current: `${p.blocksChanged} blocks changed` }),
  });
  let result: ImageBackupResult;
  try {
    result = await job.run();
  } finally {
    progress.stop();
  }
  report(g, result);
  if (result.snapshot.incomplete) process.exitCode = EXIT.incomplete;
  return result;
}

function report(g: GlobalOptions, r: ImageBackupResult): void {
  const s = r.snapshot.summary;
  const img = r.snapshot.image!;
  const c = img.counts;
  const seconds = (Date.parse(s.end) - Date.parse(s.start)) / 1000;
  if (g.json) {
    // With --quiet too: restic drops the status lines, not the summary.
    process.stdout.write(`${JSON.stringify({
      message_type: 'summary', snapshot_id: r.id, incomplete: r.snapshot.incomplete === true, total_duration: seconds, ...summaryJson(s),
      image_size: img.size, block_size: img.blockSize, blocks: c.blocks, blocks_unused: c.unused, blocks_zero: c.zero,
      blocks_unchanged: c.unchanged, blocks_changed: c.changed, blocks_stored: c.stored, bytes_read: c.bytesRead,
      partition_table: img.layout.table, filesystems: snakeKeys(img.filesystems), crash_consistent_only: img.live === true,
      ...(img.format ? { format: img.format } : {}), ...(img.bitmap ? { dirty_bitmap: img.bitmap } : {}), ...(img.readSince ? { read_since: img.readSince } : {}),
    })}\n`);
    return;
  }
  const parts = img.layout.table === 'none' ? 'no partition table' : `${img.layout.table}, ${img.layout.partitions.length} partition(s)`;
  say(g, `Image:       ${img.source}, ${formatBytes(img.size)} in ${c.blocks} blocks of ${formatBytes(img.blockSize)} (${parts})`);
  for (const f of img.filesystems) {
    const where = f.partition === undefined ? 'whole image' : `partition ${f.partition}`;
    const how = f.understood ? `unused blocks skipped${f.usedBytes !== undefined ? `, ${formatBytes(f.usedBytes)} in use` : ''}` : `kept whole${f.note ? `: ${f.note}` : ''}`;
    say(g, `Filesystem:  ${f.type} on ${where} (${how})`);
  }
  if (img.readSince) say(g, `Bitmap:      read only the clusters dirty bitmap ${img.readSince} marks; the next backup reads those ${img.bitmap} marks`);
  else if (img.bitmap) say(g, `Bitmap:      added dirty bitmap ${img.bitmap}: the next backup reads only the clusters written from now on`);
  say(g, `Blocks:      ${c.changed} changed, ${c.unchanged} unchanged, ${c.zero} zero, ${c.unused} unused; ${c.stored} new stored`);
  say(g, `Added:       ${formatBytes(s.dataAdded)} (${formatBytes(s.dataAddedStored)} stored)`);
  say(g, `Read:        ${formatBytes(c.bytesRead)} in ${formatDuration(seconds)}`);
  if (r.snapshot.incomplete) say(g, `snapshot ${r.id.slice(0, 8)} saved, INCOMPLETE: the stream ended before the end of the disk it holds (see warnings)`);
  else say(g, `snapshot ${r.id.slice(0, 8)} saved${img.live ? ' (crash-consistent only: the source was mounted read-write)' : ''}`);
}
