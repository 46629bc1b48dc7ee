/**
 * `holdfast stats [SNAP]`: logical size, stored size, deduplication and
 * compression ratios (src/jobs/snapshots/stats.ts), printed.
 */
import type { Command } from 'commander';
import { formatBytes, globals, openRepo, say, snapshotsOf } from './context.js';
import { printJson } from './json-output.js';
import { repositoryStats } from '../jobs/snapshots/stats.js';
import { findSnapshot, matchesFilter, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';

export function register(program: Command): void {
  withFilterOptions(program.command('stats'))
    .description('sizes and ratios of one snapshot, or of all')
    .argument('[snapshot]', 'snapshot id, id prefix or "latest" (default: all snapshots)')
    .action(async (snap: string | undefined, f: SnapshotFilter, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g);
      const snaps = snap ? [await findSnapshot(repo, snap, f)] : (await snapshotsOf(repo)).filter((s) => matchesFilter(s.snapshot, f));
      const out = await repositoryStats(repo, snaps);
      if (g.json) {
        printJson({
          snapshots_count: out.snapshots,
          total_file_count: out.files,
          total_size: out.logicalBytes,
          total_blob_count: out.uniqueBlobs,
          total_uncompressed_size: out.rawBytes,
          total_stored_size: out.storedBytes,
          repository_size: out.repositoryBytes,
          dedup_ratio: out.dedupRatio,
          compression_ratio: out.compressionRatio,
          total_ratio: out.totalRatio,
          missing_blobs: out.missingBlobs,
        });
        return;
      }
      say(g, `Snapshots:          ${out.snapshots}`);
      say(g, `Files:              ${out.files}`);
      say(g, `Logical size:       ${formatBytes(out.logicalBytes)}`);
      say(g, `Unique data:        ${formatBytes(out.rawBytes)} in ${out.uniqueBlobs} blobs`);
      say(g, `Stored size:        ${formatBytes(out.storedBytes)}`);
      say(g, `Repository size:    ${formatBytes(out.repositoryBytes)} (all snapshots, with index and keys)`);
      say(g, `Deduplication:      ${out.dedupRatio.toFixed(2)}x`);
      say(g, `Compression:        ${out.compressionRatio.toFixed(2)}x`);
      say(g, `Overall:            ${out.totalRatio.toFixed(2)}x`);
      if (out.missingBlobs > 0) say(g, `WARNING: ${out.missingBlobs} referenced blobs are not in the index (run "holdfast check")`);
    });
}
