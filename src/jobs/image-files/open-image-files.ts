/**
 * The entry point for commands that read files out of an image snapshot
 * (`ls`, `dump`, `restore --include`): the snapshot's bytes through the
 * image reader (only the blocks a read touches are fetched from the
 * repository), seen as a tree of files by `ImageVolume`.
 */
import type { Snapshot } from '../../repo/snapshot.js';
import { FilesystemNotSupportedError, ImageVolume } from '../../sources/image/fs/image-volume.js';
import { openImageSnapshot, type BlobLoader } from '../image/image-reader.js';
import type { Repository } from '../../repo/repository.js';
import { Restorer, type RestoreOptions, type RestoreResult } from '../restore/restorer.js';
import { ImageRestorer } from './image-restore.js';

/** True for snapshots made by `backup --image`. */
export function isImageSnapshot(snapshot: Snapshot): boolean {
  return snapshot.image !== undefined;
}

/**
 * Opens the files of an image snapshot. One in which no file system can be
 * read says which snapshot it is and what would work instead: `latest`
 * may have named an image where files were meant.
 */
export async function openImageFiles(repo: BlobLoader, snapshot: Snapshot, id: string, onWarning: (message: string) => void): Promise<ImageVolume> {
  const source = openImageSnapshot(repo, snapshot, { what: `snapshot ${id.slice(0, 8)}` });
  try {
    return await ImageVolume.open(source, { onWarning });
  } catch (e) {
    if (!(e instanceof FilesystemNotSupportedError)) throw e;
    throw new FilesystemNotSupportedError(`snapshot ${id.slice(0, 8)} is an image of ${snapshot.paths.join(', ')}, and no files can be read out of it: ${e.message}; `
      + '"holdfast restore-image" puts the whole image back, or name a snapshot of files (its id, or --path/--host with "latest")');
  }
}

/** What `restore` runs: the snapshot restorer, or for an image snapshot the image-files one. */
export interface AnyRestorer {
  run(tree: string): Promise<RestoreResult>;
}

/** The restorer for a snapshot: files out of the image when `image` is given, else the tree restorer. */
export function restorerFor(image: ImageVolume | undefined, repo: Repository, target: string, opts: RestoreOptions): AnyRestorer {
  if (!image) return new Restorer(repo, target, opts);
  const r = new ImageRestorer(image, target, opts);
  return { run: () => r.run() };
}
