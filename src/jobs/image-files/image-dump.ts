/**
 * `dump` of an image snapshot: a regular file's bytes, or a directory as a
 * tar stream (the same entries `dump` writes for file snapshots: names
 * relative to the root of the tree, hard links as links).
 */
import tar from 'tar-stream';
import { pipeline } from 'node:stream/promises';
import type { ImageNode, ImageVolume } from '../../sources/image/fs/image-volume.js';
import { fileBytes } from './image-file-reader.js';
import { findImageNode, pathComponents, walkImage } from './image-walk.js';

/** The part of a writable stream (node or streamx) that writing needs. */
interface Sink {
  write(chunk: Buffer): boolean;
  once(event: 'drain', fn: () => void): unknown;
}

async function writeOut(out: Sink, chunk: Buffer): Promise<void> {
  if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
}

const TAR_TYPE: Partial<Record<ImageNode['type'], tar.Header['type']>> = {
  file: 'file', dir: 'directory', symlink: 'symlink', fifo: 'fifo', chardev: 'character-device', blockdev: 'block-device',
};

/** What a dump needs besides the image. */
export interface DumpImageOptions {
  readonly out: NodeJS.WritableStream & Sink;
  readonly warn: (message: string) => void;
}

async function dumpTar(volume: ImageVolume, dir: ImageNode, base: string, opts: DumpImageOptions): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, opts.out);
  const firstPath = new Map<string, string>();
  for await (const { path, node } of walkImage(volume, dir, Buffer.from(base), {
    onUnsafe: (p, why) => opts.warn(`${p}: skipped (${why})`),
    onError: (p, err) => opts.warn(`${p}: skipped (${err.message})`),
  })) {
    const type = TAR_TYPE[node.type];
    if (!type) continue;
    const name = path.toString().replace(/^\/+/, '');
    const rdev = node.rdev ?? 0n;
    const header: Partial<tar.Header> & { name: string } = {
      name, mode: node.mode, uid: node.uid, gid: node.gid, mtime: new Date(Number(node.mtime / 1_000_000n)), type,
      ...(node.target ? { linkname: node.target.toString() } : {}),
      ...(type === 'character-device' || type === 'block-device'
        ? { devmajor: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)), devminor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)) }
        : {}),
    };
    if (node.type === 'file') {
      const key = `${node.volume}:${node.ino}`;
      const first = node.links > 1 ? firstPath.get(key) : undefined;
      if (first) {
        pack.entry({ ...header, type: 'link', linkname: first });
        continue;
      }
      if (node.links > 1) firstPath.set(key, name);
      const entry = pack.entry({ ...header, size: node.size });
      for await (const chunk of fileBytes(volume, node)) await writeOut(entry, chunk);
      await new Promise<void>((res, rej) => entry.end((err?: Error | null) => (err ? rej(err) : res())));
    } else {
      pack.entry(header);
    }
  }
  pack.finalize();
  await done;
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
