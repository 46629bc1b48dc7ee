/**
 * `ls` of an image snapshot: the same three output forms as for file
 * snapshots (paths; `-l`; `--json` lines), over the files inside the image.
 * PATH and everything below it are listed, PATH included.
 */
import type { ImageNode, ImageVolume } from '../../sources/image/fs/image-volume.js';
import { findImageNode, pathComponents, walkImage } from './image-walk.js';
import { modeString } from '../../core/mode-string.js';
import { localTime } from '../../core/local-time.js';
import { LineBatch } from '../line-batch.js';

export type ListFormat = 'plain' | 'long' | 'json';

const isoTime = (ns: bigint): string => new Date(Number(ns / 1_000_000n)).toISOString();

/** One line of output (with its newline) for a node at `path`. */
export function formatImageEntry(path: string, node: ImageNode, format: ListFormat): string {
  if (format === 'json') {
    return `${JSON.stringify({
      path, type: node.type, mode: node.mode, uid: node.uid, gid: node.gid, size: node.size, mtime: isoTime(node.mtime),
      ...(node.target ? { target: node.target.toString() } : {}),
      ...(node.description ? { description: node.description } : {}),
      ...(node.unreadable ? { unreadable: node.unreadable } : {}),
    })}\n`;
  }
  if (format === 'long') {
    const t = localTime(Number(node.mtime / 1_000_000n));
    const link = node.target ? ` -> ${node.target.toString()}` : '';
    const desc = node.description ? `  (${node.description})` : '';
    return `${modeString(node)} ${String(node.uid).padEnd(8)} ${String(node.gid).padEnd(8)} ${String(node.size).padStart(12)} ${t} ${path}${link}${desc}\n`;
  }
  return `${path}\n`;
}

export interface ListImageOptions {
  readonly format: ListFormat;
  /** Receives output, about 64 KiB of lines at a time; a returned promise is awaited (back-pressure). */
  readonly write: (text: string) => void | Promise<void>;
  /** Warnings (unsafe names, unreadable entries, unsupported partitions met on the way). */
  readonly warn: (message: string) => void;
}

/**
 * Lists PATH (and everything below it). Throws when PATH itself is not in
 * the image or is a partition that cannot be read.
 */
export async function listImage(volume: ImageVolume, path: string, opts: ListImageOptions): Promise<void> {
  const parts = pathComponents(path);
  const prefix = `/${parts.join('/')}`;
  const start = await findImageNode(volume, prefix);
  const out = new LineBatch(opts.write);
  if (parts.length > 0) await out.push(formatImageEntry(prefix, start, opts.format));
  if (start.type === 'dir') {
    // Entering the starting directory must work: an unsupported partition is an error, not a warning.
    if (start.unreadable) throw new Error(`${prefix === '/' ? 'the image' : prefix}: ${start.unreadable}`);
    for await (const { path: p, node } of walkImage(volume, start, Buffer.from(prefix), {
      onUnsafe: (pp, why) => opts.warn(`${pp}: unsafe name in image (${why})`),
      onError: (pp, err) => opts.warn(`${pp}: ${err.message}`),
    })) {
      await out.push(formatImageEntry(p.toString(), node, opts.format));
    }
  }
  await out.flush();
}
