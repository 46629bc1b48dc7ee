/**
 * The restore test of an image snapshot, without restoring the image:
 *
 *   for each file system of the image (the bare one, or each partition):
 *     ext2/3/4  e2fsck -fn on the image as a file of the FUSE mount
 *               (src/jobs/mount: only the blocks e2fsck reads are fetched,
 *               each checked against its id; `?offset=` gives e2fsck the
 *               partition), then every regular file read end to end
 *               through the image-files reader
 *     other     listed, not checked
 *
 * e2fsck needs the FUSE view, and FUSE needs root here: without `privileged`
 * it is skipped, with the reason, and the files are still read. The mount
 * is removed however the test ends (and by libfuse's helper if this
 * process dies). docs/decisions.md, "Proving restores".
 */
import { execFile } from 'node:child_process';
import type { Repository } from '../../repo/repository.js';
import type { Snapshot } from '../../repo/snapshot.js';
import { abortable } from '../../core/abortable.js';
import { errorCode } from '../../core/errors.js';
import { READABLE } from '../../sources/image/fs/fs-probe.js';
import type { ImageNode, ImageVolume, VolumeFilesystem } from '../../sources/image/fs/image-volume.js';
import { openImageFiles } from '../image-files/open-image-files.js';
import { filePieces } from '../image-files/image-file-reader.js';
import { walkImage } from '../image-files/image-walk.js';
import { SnapshotFs, IMAGE_FILE } from '../mount/snapshot-fs.js';
import { mountFuse, type MountedFs } from '../mount/fuse-mount.js';
import { openScratch } from './scratch.js';
import type { E2fsckResult, FilesystemResult, PathProblem } from './result.js';

export interface VerifyImageOptions {
  /** An empty folder (or one not existing yet) for the FUSE mount point; emptied or removed afterwards. */
  readonly scratch: string;
  /** The process may mount FUSE here (it runs as root): e2fsck runs. */
  readonly privileged?: boolean;
  readonly signal?: AbortSignal;
  readonly onWarning?: (message: string) => void;
  /** Told what each file system's check found, as each ends. */
  readonly onFilesystem?: (result: FilesystemResult) => void;
}

/** e2fsck's output kept: the end of it. */
const MAX_OUTPUT = 64 * 1024;

/** The tree path of a volume's root. */
const rootPath = (f: VolumeFilesystem): string => (f.volume === 0 ? '/' : `/p${f.volume}`);

/** Checks every file system of the image snapshot `id`. */
export async function verifyImage(repo: Repository, id: string, snapshot: Snapshot, opts: VerifyImageOptions): Promise<FilesystemResult[]> {
  const warn = opts.onWarning ?? (() => undefined);
  // Reads of the image are shared with its caches and cannot be cancelled: an interruption stops the waiting for them.
  const volume = await abortable(openImageFiles(repo, snapshot, id, warn), opts.signal);
  const filesystems = await abortable(volume.filesystems(), opts.signal);
  const results: FilesystemResult[] = [];
  const done = (r: FilesystemResult): void => {
    results.push(r);
    opts.onFilesystem?.(r);
  };
  let view: ImageView | undefined;
  try {
    for (const f of filesystems) {
      opts.signal?.throwIfAborted();
      const path = rootPath(f);
      const where = { path, ...(f.kind ? { kind: f.kind } : {}), offset: f.offset, size: f.size };
      if (f.kind === undefined || !READABLE.has(f.kind)) {
        done({ ...where, checked: false, reason: `${f.kind ?? 'no file system recognised'}: only ext2/3/4 file systems are checked`, files: 0, bytes: 0, failed: [], restorable: true });
        continue;
      }
      let e2fsck: E2fsckResult;
      if (!opts.privileged) {
        e2fsck = { status: 'skipped', reason: 'e2fsck reads the image through a FUSE mount, and mounting FUSE needs root here' };
      } else {
        view ??= await ImageView.open(repo, id, snapshot, opts.scratch, warn);
        e2fsck = view.mountError !== undefined
          ? { status: 'skipped', reason: `no FUSE view of the image: ${view.mountError}` }
          : await runE2fsck(f.offset === 0 ? view.file : `${view.file}?offset=${f.offset}`, opts.signal);
      }
      const read = await abortable(volume.volumeRoot(f.volume).then((root) => readAll(volume, root, path, opts.signal)), opts.signal);
      done({ ...where, checked: true, e2fsck, ...read, restorable: (e2fsck.status === 'clean' || e2fsck.status === 'skipped') && read.failed.length === 0 });
    }
  } finally {
    await view?.close();
  }
  return results;
}

/** The image snapshot as a file of a FUSE mount in the scratch folder. */
class ImageView {
  private constructor(
    private readonly scratch: { remove(): Promise<void> },
    private readonly mounted: MountedFs | undefined,
    /** The image's path in the mount. */
    readonly file: string,
    /** Why it could not be mounted. */
    readonly mountError: string | undefined,
  ) {}

  static async open(repo: Repository, id: string, snapshot: Snapshot, dir: string, warn: (message: string) => void): Promise<ImageView> {
    const scratch = await openScratch(dir);
    const fs = new SnapshotFs(repo, [{ id, snapshot }], { onWarning: warn });
    try {
      const mounted = await mountFuse(fs, dir, { onWarning: warn });
      return new ImageView(scratch, mounted, `${mounted.mountpoint}/ids/${id.slice(0, 8)}/${IMAGE_FILE}`, undefined);
    } catch (e) {
      if (errorCode(e) !== 'FUSE_UNAVAILABLE') {
        await scratch.remove();
        throw e;
      }
      return new ImageView(scratch, undefined, '', (e as Error).message);
    }
  }

  async close(): Promise<void> {
    try {
      await this.mounted?.unmount();
    } finally {
      await this.scratch.remove();
    }
  }
}

/** Runs `e2fsck -fn` (check even if marked clean; change nothing) on `device`. */
function runE2fsck(device: string, signal?: AbortSignal): Promise<E2fsckResult> {
  return new Promise((resolve, reject) => {
    execFile('e2fsck', ['-fn', device], { maxBuffer: 64 << 20, ...(signal ? { signal } : {}) }, (err, stdout, stderr) => {
      if (signal?.aborted) return reject(signal.reason);
      const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: string }) | null;
      if (e?.code === 'ENOENT') return resolve({ status: 'skipped', reason: 'e2fsck is not installed (Debian: apt-get install e2fsprogs)' });
      const output = `${stdout}${stderr}`.slice(-MAX_OUTPUT);
      if (!e) return resolve({ status: 'clean', exitCode: 0 });
      if (typeof e.code !== 'number') return resolve({ status: 'failed', output, reason: e.signal ? `killed by ${e.signal}` : e.message });
      // 1 and 2: errors corrected (not with -n); 4: errors left; 8 and up: it could not check.
      return resolve({ status: e.code < 8 ? 'damaged' : 'failed', exitCode: e.code, output });
    });
  });
}

/** Reads every regular file below `root` end to end; lists what could not be read. */
async function readAll(volume: ImageVolume, root: ImageNode, base: string, signal?: AbortSignal): Promise<{ files: number; bytes: number; failed: PathProblem[] }> {
  const failed: PathProblem[] = [];
  const problem = (path: string, e: unknown): void => {
    const code = errorCode(e);
    failed.push({ path, error: (e as Error).message ?? String(e), ...(code ? { code } : {}) });
  };
  if (root.unreadable) return { files: 0, bytes: 0, failed: [{ path: base, error: root.unreadable }] };
  let files = 0;
  let bytes = 0;
  for await (const { path, node } of walkImage(volume, root, Buffer.from(base), { onError: problem })) {
    signal?.throwIfAborted();
    if (node.type !== 'file') continue;
    try {
      for await (const piece of filePieces(volume, node)) bytes += piece.data.length;
      files++;
    } catch (e) {
      problem(path.toString(), e);
    }
  }
  return { files, bytes, failed };
}
