/**
 * The entry point for commands that read files out of an image snapshot
 * (`ls`, `dump`, `restore --include`): the snapshot's bytes through the
 * image reader (only the blocks a read touches are fetched from the
 * repository), seen as a tree of files by `ImageVolume`.
 */
import type { Snapshot } from '../../repo/snapshot.js';
import { ImageVolume } from '../../sources/image/fs/image-volume.js';
import { openImageSnapshot, type BlobLoader } from '../image/image-reader.js';
import type { Repository } from '../../repo/repository.js';
import { Restorer, type RestoreOptions, type RestoreResult } from '../restore/restorer.js';
import { ImageRestorer } from './image-restore.js';

/** True for snapshots made by `backup --image`. */
export function isImageSnapshot(snapshot: Snapshot): boolean {
  return snapshot.image !== undefined;
}

/** Opens the files of an image snapshot. */
export function openImageFiles(repo: BlobLoader, snapshot: Snapshot, id: string, onWarning: (message: string) => void): Promise<ImageVolume> {
  const source = openImageSnapshot(repo, snapshot, { what: `snapshot ${id.slice(0, 8)}` });
  return ImageVolume.open(source, { onWarning });
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
