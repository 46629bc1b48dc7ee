/**
 * `holdfast mount MOUNTPOINT`: the repository's snapshots as a read-only FUSE
 * file system (restic's layout: snapshots/, ids/, hosts/, tags/, `latest`
 * links; src/jobs/mount) until SIGINT/SIGTERM or an unmount from outside.
 * Holds a shared repository lock while mounted, so that an exclusive job
 * (prune) does not remove data from under the readers.
 */
import type { Command } from 'commander';
import { SnapshotFs } from '../jobs/mount/snapshot-fs.js';
import { mountFuse, type MountedFs } from '../jobs/mount/fuse-mount.js';
import { globals, longReadLock, openRepo, plural, say, snapshotsOf, warn } from './context.js';
import { untilInterrupted } from './interrupt.js';
import { matchesFilter, withFilterOptions, type SnapshotFilter } from './snapshot-filter.js';

export function register(program: Command): void {
  withFilterOptions(program.command('mount'))
    .description('mount the snapshots as a read-only file system (FUSE) until Ctrl-C')
    .argument('<mountpoint>', 'an empty folder')
    .action(async (mountpoint: string, flags: SnapshotFilter, cmd: Command) => {
      const g = globals(cmd);
      const repo = await openRepo(g);
      const snapshots = (await snapshotsOf(repo)).filter((s) => matchesFilter(s.snapshot, flags));
      const fs = new SnapshotFs(repo, snapshots, { owner: { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 }, onWarning: warn });
      const lock = await longReadLock(repo, 'mount', 'files', 'mounting anyway');
      // Signals are caught before the mount is announced, so that whoever waits for that line can stop us at once.
      const { interrupted: stopped, off: stop } = untilInterrupted();
      let mounted: MountedFs | undefined;
      try {
        mounted = await mountFuse(fs, mountpoint, { onWarning: warn });
        say(g, `mounted ${plural(snapshots.length, 'snapshot')} at ${mounted.mountpoint}`);
        say(g, 'press Ctrl-C to unmount');
        const outside = await Promise.race([stopped.then(() => false), mounted.gone.then(() => true)]);
        say(g, outside ? 'unmounted from outside' : 'unmounting');
        if (outside) {
          // fuse-native releases its hold on the event loop only when it unmounts itself, so after an unmount from outside the process would never end.
          setTimeout(() => process.exit(), 1000).unref();
        }
      } finally {
        stop();
        await mounted?.unmount();
        await lock?.release();
      }
    });
}
