/**
 * Checks that what a snapshot holds comes back byte for byte: `diff -r` of
 * the source folder against a fresh restore of it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { RunOptions, Sandbox } from './cli.js';

/**
 * `diff -r` of two folders: same names, same bytes, same symlink targets.
 * Names matching a pattern in `exclude` (diff's `--exclude`) are not compared.
 */
export function assertSameTree(expected: string, actual: string, exclude: readonly string[] = []): void {
  const d = spawnSync('diff', ['-r', '--no-dereference', ...exclude.map((x) => `--exclude=${x}`), expected, actual], { encoding: 'utf8' });
  assert.equal(d.status, 0, `restored tree differs from ${expected}:\n${d.stdout}${d.stderr}`);
}

let restores = 0;
/**
 * Restores `snap` into a fresh folder of the sandbox, checks `src` came back
 * identical, and removes the folder again. `extraArgs` go after the
 * `restore` arguments; `opts` are passed to the run.
 */
export async function assertRestores(s: Sandbox, snap: string, src: string, opts: RunOptions = {}, extraArgs: readonly string[] = []): Promise<void> {
  const target = s.path(`check-${++restores}`);
  await s.ok(['restore', snap, '--target', target, ...extraArgs], opts);
  assertSameTree(src, join(target, src));
  await fs.rm(target, { recursive: true, force: true });
}
