/**
 * Helpers for the prune / check / repair tests that run the real CLI: a
 * repository with small chunks and packs (so a few MiB make hundreds of
 * packs), source trees that change from round to round and reuse older
 * rounds' content, and a byte-for-byte restore comparison.
 */
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Repository } from '../../src/repo/repository.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { bytes } from '../jobs/gc-fixture.js';
import { TEST_SCRYPT } from '../helpers/memory-repo.js';
import type { Sandbox, RunResult } from '../helpers/cli.js';
import { assertRestores as assertRestoresWith } from '../helpers/restore-check.js';

export { assertSameTree } from '../helpers/restore-check.js';

/** Environment for GC tests: a short minimum grace (commit window 3 s), no prompt. */
export const GC_ENV: Record<string, string> = { HOLDFAST_MIN_GRACE: '6s' };
export const GRACE = '6s';
export const GRACE_MS = 6000;

/** Rounds for the long tests: `name` from the environment, else `dflt`. */
export function rounds(name: string, dflt: number): number {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v > 0 ? v : dflt;
}

/** Creates the sandbox's repository with 4–32 KiB chunks and 64 KiB packs. */
export async function initSmall(s: Sandbox): Promise<void> {
  await Repository.init(new LocalBackend(s.repo), 'correct horse', {
    scrypt: TEST_SCRYPT,
    packSize: 1 << 16,
    compression: 'off',
    chunker: { algorithm: 'fastcdc-2020', minSize: 4096, avgSize: 8192, maxSize: 32768 },
  });
}

/**
 * Writes the source tree of round `r` into `dir`: content shared by every
 * round, content of its own, the unique content of round r-2 (whose snapshot
 * a test may have forgotten: deduplicating against it is the prune race),
 * and small files.
 */
export async function writeRound(dir: string, r: number, size = 300_000): Promise<void> {
  await fs.mkdir(join(dir, 'small'), { recursive: true });
  await fs.writeFile(join(dir, 'common.bin'), bytes('common', size));
  await fs.writeFile(join(dir, 'own.bin'), bytes(`own-${r}`, size));
  if (r >= 2) await fs.writeFile(join(dir, 'older.bin'), bytes(`own-${r - 2}`, size));
  for (let i = 0; i < 6; i++) await fs.writeFile(join(dir, 'small', `f${i}.txt`), `round ${r % 3} file ${i}\n`.repeat(50 + i * (r % 4)));
}

/** Restores `snap` quietly (with `env`) into a fresh folder and checks `src` came back byte for byte. */
export async function assertRestores(s: Sandbox, snap: string, src: string, env: Record<string, string> = GC_ENV): Promise<void> {
  await assertRestoresWith(s, snap, src, { env }, ['-q']);
}

/** The JSON a command printed on its last stdout line. */
export function json<T>(r: RunResult): T {
  const lines = r.stdout.trim().split('\n');
  try {
    return JSON.parse(lines[lines.length - 1]!) as T;
  } catch {
    throw new Error(`no JSON in the output (exit ${r.code}):\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
}

/** A running CLI process that a test can kill. */
export interface Running {
  readonly done: Promise<RunResult>;
  kill(signal?: NodeJS.Signals): void;
}

/** Starts `holdfast ARGS` in the sandbox without waiting for it. */
export function start(s: Sandbox, args: readonly string[], extraEnv: Record<string, string | undefined> = GC_ENV): Running {
  const { child, done } = s.start(args, { env: extraEnv });
  return { done, kill: (signal = 'SIGKILL') => child.kill(signal) };
}

/** The id of the snapshot a `backup --json` run wrote. */
export function snapshotId(r: RunResult): string {
  const id = json<{ snapshot_id?: string }>(r).snapshot_id;
  assert.ok(id, `no snapshot id in: ${r.stdout}`);
  return id;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
