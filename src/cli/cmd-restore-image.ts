/**
 * `holdfast restore-image SNAP --to DEST`: writes an image snapshot back to
 * an image file (sparse), a block device, or stdout (`-`), for bare-metal
 * recovery: `holdfast restore-image latest --to /dev/sda` from any live Linux.
 */
import type { Command } from 'commander';
import { ImageRestore, type ImageRestoreOptions } from '../jobs/image/image-restore.js';
import { restoreQcow2 } from '../jobs/image/qcow2-restore.js';
import { NotAnImageSnapshotError } from '../jobs/image/image-reader.js';
import { BLOCK_WORKER } from '../jobs/image/block-protocol.js';
import { formatBytes, formatDuration, globals, openRepo, processPool, type GlobalOptions } from './context.js';
import { localIso } from '../core/local-time.js';
import { ExitError, EXIT } from './exit-codes.js';
import { onInterrupt } from './interrupt.js';
import { Progress } from './progress.js';
import { findSnapshot, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';
import { printable } from './printable.js';

interface RestoreImageFlags extends SnapshotFilter {
  to: string;
  format?: string;
  verify?: boolean;
  force?: boolean;
}

export function register(program: Command): void {
  withFilterOptions(program.command('restore-image'))
    .description('restore an image snapshot to an image file, a block device, or stdout ("-")')
    .argument('<snapshot>', 'snapshot id, id prefix, or "latest"')
    .requiredOption('--to <dest>', 'image file (written sparse), block device, or "-" for stdout')
    .option('--format <format>', 'raw (the default) or qcow2 (a qcow2 file, through qemu-img)', 'raw')
    .option('--verify', 'read the target back and check every block against the snapshot')
    .option('-f, --force', 'overwrite an image file that exists and is not empty')
    .action(async (snap: string, flags: RestoreImageFlags, cmd: Command) => {
      const g = globals(cmd);
      // With --to -, stdout carries the image, and with --json only JSON lines: every message goes to stderr.
      const tell = (line: string): void => {
        if (!g.quiet) (flags.to === '-' || g.json ? process.stderr : process.stdout).write(`${printable(line)}\n`);
      };
      processPool().warm(BLOCK_WORKER); // the block workers boot while the key is derived
      const repo = await openRepo(g);
      const { id, snapshot } = await findSnapshot(repo, snap, snap === 'latest' ? { ...flags, image: true } : flags);
      if (!snapshot.image) throw new NotAnImageSnapshotError(`snapshot ${id.slice(0, 8)}`);
      if (flags.format !== 'raw' && flags.format !== 'qcow2') throw new ExitError(`bad --format "${flags.format}": raw or qcow2`, EXIT.usage);
      const img = snapshot.image;
      const abort = new AbortController();
      const onInterrupted = (): void => abort.abort(new ExitError('interrupted: the restore is NOT complete', EXIT.interrupted));
      const offInterrupt = onInterrupt(onInterrupted);
      const started = Date.now();
      // With --to -, stdout is the image: no JSON status lines there (the bar is on stderr).
      const progress = new Progress(flags.to === '-' ? { ...g, json: false } : g, { files: 0, bytes: img.size, done: true });
      let result;
      try {
        const opts: ImageRestoreOptions = {
          target: flags.to,
          stdout: process.stdout,
          verify: flags.verify === true,
          overwrite: flags.force === true,
          signal: abort.signal,
          pool: processPool(),
          // Said once the target is checked: a refused one gets only the refusal.
          onStart: () => tell(`restoring image snapshot ${id.slice(0, 8)} of ${snapshot.paths.join(' ')} at ${localIso(snapshot.time)} (${formatBytes(img.size)}) to ${flags.to === '-' ? 'stdout' : flags.to}`),
          onProgress: (p) => progress.update({ files: 0, bytes: p.bytes }),
        };
        result = flags.format === 'qcow2' ? await restoreQcow2(repo, snapshot, opts) : await new ImageRestore(repo, snapshot, opts).run();
      } finally {
        progress.stop();
        offInterrupt();
      }
      report(g, tell, result, img.layout.table, (Date.now() - started) / 1000, flags.to);
    });
}


function report(g: GlobalOptions, tell: (l: string) => void, r: Awaited<ReturnType<ImageRestore['run']>>, table: string, seconds: number, to: string): void {
  if (g.json && to !== '-') {
    process.stdout.write(`${JSON.stringify({
      message_type: 'summary', kind: r.kind, size: r.size, bytes_written: r.bytesWritten, holes: r.holes,
      ...(r.targetSize === undefined ? {} : { target_size: r.targetSize }), ...(r.verifyFailed ? { verify_failed: r.verifyFailed } : {}), seconds_elapsed: seconds,
    })}\n`);
  } else {
    tell(`restored ${formatBytes(r.size)} (${formatBytes(r.bytesWritten)} of data, ${r.holes} empty blocks) in ${formatDuration(seconds)}`);
  }
  if (r.targetSize !== undefined && r.targetSize > r.size) {
    tell(`the target is larger than the image (${formatBytes(r.targetSize)}); the space after ${formatBytes(r.size)} was left as it was`);
    if (table === 'gpt') tell('the GPT backup header is at the old end of the disk: move it with "sgdisk -e DEVICE" before growing partitions');
  }
  if (r.verifyFailed) {
    if (r.verifyFailed.length > 0) {
      throw new ExitError(`VERIFY FAILED: ${r.verifyFailed.length} block(s) read back differ from the snapshot (first: block ${r.verifyFailed[0]})`, EXIT.failed);
    }
    tell('verified: every block reads back as in the snapshot');
  }
}
