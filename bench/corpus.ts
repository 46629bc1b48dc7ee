// Benchmark corpus: Debian's linux-source-6.1 tree (unpacked once and cached),
// the per-run working copy, the cache warm-up and the deterministic "small change".

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { appendFile, mkdir, readdir, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { capture, walkTree } from './measure.js';

export const DEBIAN_PACKAGE = 'linux-source-6.1';
export const DEBIAN_TARBALL = '/usr/src/linux-source-6.1.tar.xz';

export class UserError extends Error {}

export interface Corpus {
  path: string;
  origin: string;
}

/**
 * The directory to benchmark: $BENCH_CORPUS if set, else the cached unpacked
 * linux-source-6.1 tree under <benchDir>/corpus (unpacked on first use).
 */
export async function resolveCorpus(benchDir: string, override: string | undefined): Promise<Corpus> {
  if (override) {
    if (!existsSync(override) || !statSync(override).isDirectory()) {
      throw new UserError(`BENCH_CORPUS=${override} is not a directory`);
    }
    return { path: override, origin: 'BENCH_CORPUS' };
  }
  const corpusRoot = join(benchDir, 'corpus');
  const cached = join(corpusRoot, 'linux-source-6.1');
  if (existsSync(cached)) return { path: cached, origin: `cached unpack of ${DEBIAN_TARBALL}` };
  if (!existsSync(DEBIAN_TARBALL)) {
    throw new UserError(
      `corpus tarball ${DEBIAN_TARBALL} not found.\n` +
        `Install the Debian package that provides it:  apt-get install -y ${DEBIAN_PACKAGE}\n` +
        `(or set BENCH_CORPUS=/some/dir to benchmark another directory)`,
    );
  }
  // Unpack into a scratch dir and rename at the end, so an interrupted unpack
  // is never mistaken for a complete cached corpus.
  const partial = join(corpusRoot, `.partial-${process.pid}`);
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  console.log(`Unpacking ${DEBIAN_TARBALL} into ${cached} (once; cached for later runs) ...`);
  const t0 = process.hrtime.bigint();
  const r = await capture('tar', ['-xf', DEBIAN_TARBALL, '-C', partial], { timeoutMs: 3_600_000 });
  if (r.code !== 0) {
    await rm(partial, { recursive: true, force: true });
    throw new UserError(`tar -xf ${DEBIAN_TARBALL} failed (exit ${r.code}): ${r.stderr.trim() || r.error}`);
  }
  const top = await readdir(partial);
  const inner = top.length === 1 && top[0] !== undefined ? join(partial, top[0]) : null;
  if (inner && statSync(inner).isDirectory()) {
    await rename(inner, cached);
    await rm(partial, { recursive: true, force: true });
  } else {
    await rename(partial, cached);
  }
  console.log(`  unpacked in ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s`);
  return { path: cached, origin: `unpacked from ${DEBIAN_TARBALL}` };
}

/** Fresh, independent copy of the corpus (no reflinks, no hardlinks to the cache). */
export async function makeWorkingCopy(corpus: string, dest: string): Promise<void> {
  await rm(dest, { recursive: true, force: true });
  let r = await capture('cp', ['-a', '--reflink=never', corpus, dest], { timeoutMs: 3_600_000 });
  if (r.code !== 0 && /reflink/.test(r.stderr)) {
    // cp without --reflink support (non-GNU or very old): it cannot reflink either.
    await rm(dest, { recursive: true, force: true });
    r = await capture('cp', ['-a', corpus, dest], { timeoutMs: 3_600_000 });
  }
  if (r.code !== 0) throw new Error(`cp -a ${corpus} ${dest} failed: ${r.stderr.trim() || r.error}`);
}

/**
 * Read every file once so all tools start with a warm page cache. Note that
 * `tar -cf /dev/null` would not do it: GNU tar skips reading file data when
 * the archive is /dev/null. So tar writes to a pipe that we drain.
 * `exclude`: top-level names of `dir` left unread. A file is read alone.
 */
export function warmUp(dir: string, exclude: readonly string[] = []): Promise<void> {
  const file = !statSync(dir).isDirectory();
  return new Promise((resolve, reject) => {
    const what = file ? basename(dir) : '.';
    const child = spawn('tar', ['-cf', '-', ...exclude.map((e) => `--exclude=./${e}`), what], { cwd: file ? dirname(dir) : dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stdout.resume();
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      // tar exit 1 = "some files changed while being read", harmless here.
      if (code === 0 || code === 1) resolve();
      else reject(new Error(`warm-up tar failed (exit ${code}): ${stderr.trim()}`));
    });
  });
}

/**
 * Writes back and then frees the page cache (root only; false otherwise):
 * `sync`, then `3` into /proc/sys/vm/drop_caches. On this kind of VM a page
 * the guest has never used costs a fault in the host on its first write, so
 * a step that ran after others had filled memory (restores keep their trees)
 * paid for memory the steps before it had not; after a drop every step
 * starts from the same memory, used before.
 */
export async function dropCaches(): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  await capture('sync', [], { timeoutMs: 600_000 });
  try {
    await writeFile('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

/**
 * Warms each of `dirs` that exists, right before a measured step: this kind
 * of machine runs DAMON, which pages out what was untouched for 30 s, so a
 * single warm-up at the start only helps the tool that runs first.
 */
export async function warmUpEach(dirs: readonly string[]): Promise<void> {
  for (const dir of dirs) if (existsSync(dir)) await warmUp(dir);
}

/** What a tree-scenario step reads: a backup's source tree, a restore's repository. */
export interface StepInput {
  /** Folders read whole. */
  whole: readonly string[];
  /** A repository read without its pack folder `data/` (a backup reads its index, not its packs). */
  metadataOf?: string;
}

/**
 * Right before a timed step of the tree scenario: writes back and drops the
 * page cache (root only), reads the tool's own code again (`code`, files and
 * folders read whole, then `reload`, its version command), then reads the
 * step's input once, and nothing else, so that neither tool pays for
 * another's dirty pages and each reads its input from the cache. Returns
 * whether the cache was dropped.
 */
export async function prepareStep(input: StepInput, code: readonly string[], reload: () => Promise<unknown>): Promise<boolean> {
  const dropped = await dropCaches();
  if (dropped) {
    await warmUpEach(code);
    await reload();
  }
  await warmUpEach(input.whole);
  if (input.metadataOf !== undefined && existsSync(input.metadataOf)) await warmUp(input.metadataOf, ['data']);
  return dropped;
}

export interface ChangeReport {
  appended: string[];
  created: string;
  createdBytes: number;
  deleted: string | null;
}

export const NEW_FILE_NAME = 'holdfast-bench-new-1MiB.bin';
const NEW_FILE_SIZE = 1 << 20;

/** `size` deterministic, incompressible bytes (SHA-256 in counter mode). */
export function deterministicBytes(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let off = 0, i = 0; off < size; i++) {
    const block = createHash('sha256').update(`holdfast-bench:${i}`).digest();
    off += block.copy(out, off);
  }
  return out;
}

/**
 * The deterministic small change: append one line to 20 files, create one new
 * 1 MiB file, delete one file. Files are picked at evenly spaced positions of
 * the sorted list of regular, non-hardlinked files, so the same corpus always
 * gets the same change.
 */
export async function applySmallChange(src: string): Promise<ChangeReport> {
  const { files } = await walkTree(src);
  const eligible = files.filter((f) => f.nlink === 1 && basename(f.path) !== NEW_FILE_NAME);
  const slots = 21; // 20 appends + 1 delete
  const picked: string[] = [];
  if (eligible.length >= slots + 1) {
    const stride = Math.floor(eligible.length / (slots + 1));
    for (let i = 1; i <= slots; i++) {
      const f = eligible[i * stride];
      if (f) picked.push(f.path);
    }
  } else {
    picked.push(...eligible.map((f) => f.path));
  }
  const toDelete = picked.length > 1 ? (picked.pop() ?? null) : null;
  const appended: string[] = [];
  for (const [i, p] of picked.slice(0, 20).entries()) {
    await appendFile(p, `holdfast bench: appended line ${i}\n`);
    appended.push(relative(src, p));
  }
  const created = join(src, NEW_FILE_NAME);
  await writeFile(created, deterministicBytes(NEW_FILE_SIZE));
  if (toDelete) await unlink(toDelete);
  return {
    appended,
    created: relative(src, created),
    createdBytes: NEW_FILE_SIZE,
    deleted: toDelete ? relative(src, toDelete) : null,
  };
}
