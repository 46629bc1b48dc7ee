/**
 * Writes entries as a tar stream (for `dump` of a folder, from file
 * snapshots and from files inside image snapshots alike): names relative to
 * the root, hard links as links to the first name written, device numbers
 * split the way glibc does.
 */
import tar from 'tar-stream';
import { pipeline } from 'node:stream/promises';
import type { FileKind } from '../core/mode-string.js';

/** The part of a writable stream (node or streamx) that writing needs. */
export interface Sink {
  write(chunk: Buffer): boolean;
  once(event: 'drain', fn: () => void): unknown;
}

/** Writes a chunk, waiting for 'drain' when the stream asks to. */
export async function writeOut(out: Sink, chunk: Buffer): Promise<void> {
  if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
}

/** One entry of the stream. */
export interface TarEntry {
  /** Absolute path in the snapshot or image ("/etc/hosts"). */
  readonly path: Buffer;
  readonly type: FileKind;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly user?: string;
  readonly group?: string;
  /** ns since the epoch. */
  readonly mtime: bigint;
  readonly size: number;
  readonly target?: Buffer;
  readonly rdev?: bigint;
  /** For files with several names: equal keys are one inode. */
  readonly linkKey?: string;
  /** A file's bytes. */
  readonly content?: () => AsyncIterable<Buffer>;
}

const TAR_TYPE: Partial<Record<FileKind, tar.Header['type']>> = {
  file: 'file', dir: 'directory', symlink: 'symlink', fifo: 'fifo', chardev: 'character-device', blockdev: 'block-device',
};

/** Writes every entry (sockets are skipped: tar has no type for them) and ends the stream. */
export async function writeTar(out: NodeJS.WritableStream, entries: AsyncIterable<TarEntry>): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, out);
  const firstPath = new Map<string, string>();
  for await (const e of entries) {
    const type = TAR_TYPE[e.type];
    if (!type) continue;
    const name = e.path.toString().replace(/^\/+/, '');
    const rdev = e.rdev ?? 0n;
    const header: Partial<tar.Header> & { name: string } = {
      name, mode: e.mode, uid: e.uid, gid: e.gid, uname: e.user ?? '', gname: e.group ?? '',
      mtime: new Date(Number(e.mtime / 1_000_000n)), type,
      ...(e.target ? { linkname: e.target.toString() } : {}),
      ...(type === 'character-device' || type === 'block-device'
        ? { devmajor: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)), devminor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)) }
        : {}),
    };
    if (e.type !== 'file') {
      pack.entry(header);
      continue;
    }
    const first = e.linkKey ? firstPath.get(e.linkKey) : undefined;
    if (first) {
      pack.entry({ ...header, type: 'link', linkname: first });
      continue;
    }
    if (e.linkKey) firstPath.set(e.linkKey, name);
    const entry = pack.entry({ ...header, size: e.size });
    for await (const chunk of e.content?.() ?? []) await writeOut(entry, chunk);
    await new Promise<void>((res, rej) => entry.end((err?: Error | null) => (err ? rej(err) : res())));
  }
  pack.finalize();
  await done;
}
