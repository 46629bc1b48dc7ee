/**
 * `dump` of an image snapshot: a regular file's bytes, or a directory as a
 * tar stream (the same entries `dump` writes for file snapshots: names
 * relative to the root of the tree, hard links as links).
 */
import type { ImageNode, ImageVolume } from '../../sources/image/fs/image-volume.js';
import { fileBytes } from './image-file-reader.js';
import { writeOut, writeTar, type Sink, type TarEntry } from '../tar-stream-writer.js';
import { findImageNode, pathComponents, walkImage } from './image-walk.js';

/** What a dump needs besides the image. */
export interface DumpImageOptions {
  readonly out: NodeJS.WritableStream & Sink;
  readonly warn: (message: string) => void;
}

async function dumpTar(volume: ImageVolume, dir: ImageNode, base: string, opts: DumpImageOptions): Promise<void> {
  async function* entries(): AsyncGenerator<TarEntry> {
    for await (const { path, node } of walkImage(volume, dir, Buffer.from(base), {
      onUnsafe: (p, why) => opts.warn(`${p}: skipped (${why})`),
      onError: (p, err) => opts.warn(`${p}: skipped (${err.message})`),
    })) {
      yield {
        path, type: node.type, mode: node.mode, uid: node.uid, gid: node.gid, mtime: node.mtime, size: node.size,
        ...(node.target ? { target: node.target } : {}),
        ...(node.rdev === undefined ? {} : { rdev: node.rdev }),
        ...(node.links > 1 ? { linkKey: `${node.volume}:${node.ino}` } : {}),
        content: () => fileBytes(volume, node),
      };
    }
  }
  await writeTar(opts.out, entries());
}

/** Writes PATH of the image to `out`: a file's bytes, a directory as tar. */
export async function dumpImage(volume: ImageVolume, path: string, opts: DumpImageOptions): Promise<void> {
  const clean = `/${pathComponents(path).join('/')}`;
  const node = await findImageNode(volume, clean);
  if (node.type === 'dir') {
    if (node.unreadable) throw new Error(`${clean === '/' ? 'the image' : clean}: ${node.unreadable}`);
    return dumpTar(volume, node, clean, opts);
  }
  if (node.type !== 'file') throw new Error(`${clean} is a ${node.type}, not a file or folder`);
  for await (const chunk of fileBytes(volume, node)) await writeOut(opts.out, chunk);
}
