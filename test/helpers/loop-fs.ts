/**
 * A real file system on a loop device for one test: an image file made by
 * mkfs.TYPE, mounted with `mount -o loop` (root only). `loopSkip` says why a
 * machine cannot, for `it(…, { skip })`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Why loop-mounted `fsType` file systems cannot be made here, or false when they can. */
export function loopSkip(fsType: string): string | false {
  if (process.getuid?.() !== 0) return 'needs root (mount, losetup)';
  if (!existsSync('/dev/loop-control')) return 'no loop devices (/dev/loop-control)';
  if (spawnSync(`mkfs.${fsType}`, ['-V']).error) return `mkfs.${fsType} is not installed`;
  return false;
}

/** A mounted loop file system, and how to take it down. */
export interface LoopFs {
  readonly mountPoint: string;
  unmount(): void;
}

/** Makes a `sizeMiB` `fsType` file system in `dir`/fs.img and mounts it at `dir`/mnt. */
export function mountLoopFs(dir: string, fsType: string, sizeMiB: number): LoopFs {
  const image = join(dir, `${fsType}.img`);
  const mountPoint = join(dir, `${fsType}-mnt`);
  writeFileSync(image, '');
  execFileSync('truncate', ['-s', `${sizeMiB}M`, image]);
  execFileSync(`mkfs.${fsType}`, ['-q', image], { stdio: 'ignore' });
  mkdirSync(mountPoint);
  execFileSync('mount', ['-o', 'loop', image, mountPoint]);
  return {
    mountPoint,
    unmount: () => {
      spawnSync('fsfreeze', ['--unfreeze', mountPoint], { stdio: 'ignore' });
      spawnSync('umount', [mountPoint], { stdio: 'ignore' });
      rmSync(image, { force: true });
    },
  };
}
