/**
 * `holdfast stats [SNAP]`: logical size, stored size, deduplication and
 * compression ratios, computed from the plain snapshot reference lists and
 * the index (no file metadata is decrypted).
 */
import type { Command } from 'commander';
import { formatBytes, globals, openRepo, say, snapshotsOf } from './context.js';
import { findSnapshot, matches, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';

export function register(program: Command): void {
  withFilterOptions(program.command('stats'))
    .description('sizes and ratios of one snapshot, or of all')
    .argument('[snapshot]', 'snapshot id, id prefix or "latest" (default: all snapshots)')
    .action(async (snap: string | undefined, f: SnapshotFilter, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g);
      const snaps = snap ? [await findSnapshot(repo, snap, f)] : (await snapshotsOf(repo)).filter((s) => matches(s.snapshot, f));
      const unique = new Set<string>();
      let logical = 0;
      let files = 0;
      for (const { snapshot: s } of snaps) {
        logical += s.summary.totalBytes;
        files += s.summary.filesNew + s.summary.filesChanged + s.summary.filesUnchanged;
        for (const b of s.blobs) unique.add(b);
      }
      let raw = 0;
      let stored = 0;
      let missing = 0;
      for (const id of unique) {
        const loc = repo.index.lookup(id);
        if (!loc) {
          missing++;
          continue;
        }
        raw += loc.rawLength;
        stored += loc.length;
      }
      let repoSize = 0;
      for (const type of ['data', 'index', 'snapshot', 'key', 'config'] as const) for await (const o of repo.backend.list(type)) repoSize += o.size;
      const out = {
        snapshots: snaps.length,
        files,
        logicalBytes: logical,
        uniqueBlobs: unique.size,
        rawBytes: raw,
        storedBytes: stored,
        repositoryBytes: repoSize,
        dedupRatio: raw > 0 ? logical / raw : 1,
        compressionRatio: stored > 0 ? raw / stored : 1,
        totalRatio: stored > 0 ? logical / stored : 1,
        missingBlobs: missing,
      };
      if (g.json) {
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      say(g, `Snapshots:          ${out.snapshots}`);
      say(g, `Files:              ${out.files}`);
      say(g, `Logical size:       ${formatBytes(logical)}`);
      say(g, `Unique data:        ${formatBytes(raw)} in ${unique.size} blobs`);
      say(g, `Stored size:        ${formatBytes(stored)}`);
      say(g, `Repository size:    ${formatBytes(repoSize)} (all snapshots, with index and keys)`);
      say(g, `Deduplication:      ${out.dedupRatio.toFixed(2)}x`);
      say(g, `Compression:        ${out.compressionRatio.toFixed(2)}x`);
      say(g, `Overall:            ${out.totalRatio.toFixed(2)}x`);
      if (missing > 0) say(g, `WARNING: ${missing} referenced blobs are not in the index (run "holdfast check")`);
    });
}
