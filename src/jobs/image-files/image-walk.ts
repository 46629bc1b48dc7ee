/**
 * Walks the files of a disk image (an `ImageVolume`) depth-first, with the
 * same safety as the snapshot walker (src/jobs/tree-walk.ts): names that
 * could escape a restore target (empty, ".", "..", containing "/" or NUL,
 * longer than 255 bytes) and duplicate names are never yielded, and a
 * directory is entered at most once, so a damaged or hostile image cannot
 * make a walk loop. Entries are yielded sorted by name bytes.
 */
import type { ImageNode, ImageVolume } from '../../sources/image/fs/image-volume.js';
import { childPath, unsafeName } from '../tree-walk.js';

export interface ImageWalkEntry {
  /** Absolute path in the image tree, as bytes ("/p1/etc/passwd"). */
  readonly path: Buffer;
  readonly node: ImageNode;
  /** Depth below the starting directory: 1 for its entries. */
  readonly depth: number;
}

export interface ImageWalkOptions {
  /** Names that are refused, and directories met a second time. */
  readonly onUnsafe?: (path: string, reason: string) => void;
  /** Entries or directories that cannot be read (damage, unsupported filesystem). */
  readonly onError?: (path: string, error: Error) => void;
  /** Return false to skip a node (and, for a directory, everything below it). */
  readonly filter?: (path: Buffer, node: ImageNode) => boolean;
  /** Called after a directory's children were all yielded. */
  readonly onDirDone?: (entry: ImageWalkEntry) => Promise<void> | void;
}

const SLASH = Buffer.from('/');

/** Key of a directory for loop detection. */
const dirKey = (n: ImageNode): string => `${n.volume}:${n.ino}`;

/** Walks below `dir` (whose path is `base`); `dir` itself is not yielded. */
export async function* walkImage(volume: ImageVolume, dir: ImageNode, base: Buffer = SLASH, opts: ImageWalkOptions = {}): AsyncGenerator<ImageWalkEntry> {
  const seen = new Set<string>([dirKey(dir)]);
  yield* walkDir(volume, dir, base, opts, 1, seen);
}

async function* walkDir(volume: ImageVolume, dir: ImageNode, base: Buffer, opts: ImageWalkOptions, depth: number, seen: Set<string>): AsyncGenerator<ImageWalkEntry> {
  let children: ImageNode[];
  try {
    children = await volume.list(dir, (name, message) => opts.onError?.(childPath(base, name).toString(), new Error(message)));
  } catch (e) {
    opts.onError?.(base.toString(), e as Error);
    return;
  }
  children.sort((a, b) => Buffer.compare(a.name, b.name));
  let prev: Buffer | undefined;
  for (const node of children) {
    const path = childPath(base, node.name);
    const bad = unsafeName(node.name) ?? (prev && prev.equals(node.name) ? 'duplicate name' : undefined);
    prev = node.name;
    if (bad) {
      opts.onUnsafe?.(path.toString(), bad);
      continue;
    }
    if (opts.filter && !opts.filter(path, node)) continue;
    if (node.type === 'dir') {
      const key = dirKey(node);
      if (seen.has(key)) {
        opts.onUnsafe?.(path.toString(), 'directory appears twice in the image (a loop or a damaged directory); not entered again');
        continue;
      }
      seen.add(key);
    }
    const entry = { path, node, depth };
    yield entry;
    if (node.type === 'dir') {
      yield* walkDir(volume, node, path, opts, depth + 1, seen);
      await opts.onDirDone?.(entry);
    }
  }
}

/** Splits a user-given path into components; refuses "..". */
export function pathComponents(path: string): string[] {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new Error(`path ${path} must not contain ".."`);
  return parts;
}

/** Finds the node at an absolute path of the image tree (symlinks are not followed). */
export async function findImageNode(volume: ImageVolume, path: string): Promise<ImageNode> {
  let node = await volume.root();
  for (const part of pathComponents(path)) {
    if (node.type !== 'dir') throw new Error(`path ${path} is not in the snapshot`);
    const want = Buffer.from(part);
    const found = (await volume.list(node)).find((n) => n.name.equals(want));
    if (!found || unsafeName(found.name)) throw new Error(`path ${path} is not in the snapshot`);
    node = found;
  }
  return node;
}
