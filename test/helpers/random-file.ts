/**
 * Files of random (incompressible) content, so that deduplication and
 * compression cannot make them smaller than they are.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';

const PIECE = 8_000_000;

/** Writes `size` random bytes to `path` in 8 MB pieces (large files never sit in memory whole). */
export async function writeRandom(path: string, size: number): Promise<void> {
  const fh = await fs.open(path, 'w');
  try {
    for (let left = size; left > 0; left -= PIECE) await fh.write(randomBytes(Math.min(left, PIECE)));
  } finally {
    await fh.close();
  }
}
