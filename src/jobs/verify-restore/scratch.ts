/**
 * The scratch folder a restore test works in: an empty folder, or one made
 * for the test (mode 0700), and removed afterwards however the test ends,
 * with what was restored into it: a folder the test made goes whole, one
 * that was there keeps existing, emptied.
 */
import { chmod, lstat, mkdir, readdir, rmdir, stat, unlink } from 'node:fs/promises';
import { PathShortener } from '../../sources/posix.js';
import type { ErrorCode } from '../../core/errors.js';

/** A scratch folder that cannot be used: not a folder, not empty, or not creatable. */
export class BadScratchError extends Error {
  /** Stable code for callers (src/core/errors.ts): a restore target in the way. */
  readonly code: ErrorCode = 'BAD_TARGET';
  constructor(message: string) {
    super(message);
    this.name = 'BadScratchError';
  }
}

/** A scratch folder in use. */
export interface Scratch {
  readonly path: string;
  /** Removes what was put there (and the folder, when the test made it). Idempotent. */
  remove(): Promise<void>;
}

/** Makes `dir` (its parent must exist), or takes it when it is an empty folder. */
export async function openScratch(dir: string): Promise<Scratch> {
  let made = false;
  try {
    await mkdir(dir, { mode: 0o700 });
    made = true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST') throw new BadScratchError(`cannot make the scratch folder ${dir}: ${(e as Error).message}`);
    if (!(await stat(dir)).isDirectory()) throw new BadScratchError(`the scratch ${dir} is not a folder`);
    if ((await readdir(dir)).length > 0) throw new BadScratchError(`the scratch folder ${dir} is not empty: a restore test removes everything it restores there, so it needs an empty folder or one that does not exist yet`);
  }
  let removed: Promise<void> | undefined;
  return {
    path: dir,
    remove: () => (removed ??= (async () => {
      const long = new PathShortener();
      try {
        await removeTree(Buffer.from(dir), long, !made);
      } finally {
        await long.close();
      }
    })()),
  };
}

const SLASH = Buffer.from('/');

/**
 * Removes `path` and everything below it (`keep`: only what is below it).
 * Paths longer than PATH_MAX (a restored deep tree) are reached through
 * the shortener's anchors, where `rm` would fail with ENAMETOOLONG; a
 * folder without write permission (a restored 0555) is given 0700 first,
 * or only root could empty it. Symlinks are removed, never followed.
 */
async function removeTree(path: Buffer, long: PathShortener, keep = false): Promise<void> {
  const p = await long.short(path);
  // A scratch folder that was there may be a symlink to a folder: what it points to is emptied.
  const st = await (keep ? stat(p) : lstat(p)).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  if (!st) return;
  if (!st.isDirectory()) return unlink(p);
  if ((st.mode & 0o700) !== 0o700) await chmod(p, 0o700);
  // Names as bytes: restored names need not be UTF-8.
  for (const name of await readdir(p, { encoding: 'buffer' })) await removeTree(Buffer.concat([path, SLASH, name]), long);
  if (!keep) await rmdir(await long.short(path));
}
