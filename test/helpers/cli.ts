/**
 * Runs the real `holdfast` CLI in a child process, the way a user would, with
 * a repository, password and cache folder in the environment and cheap
 * scrypt settings.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stdoutBytes: Buffer;
  readonly stderr: string;
}

export interface RunOptions {
  readonly env?: Record<string, string | undefined>;
  readonly input?: Buffer | string;
  readonly cwd?: string;
  /** Run as this uid/gid through setpriv (tests of unprivileged behaviour). */
  readonly asUser?: { uid: number; gid: number };
}

/** A scratch folder with a repository location and password for one test. */
export class Sandbox {
  private constructor(readonly dir: string) {}

  static async create(prefix = 'holdfast-test-'): Promise<Sandbox> {
    return new Sandbox(await mkdtemp(join(tmpdir(), prefix)));
  }

  get repo(): string {
    return join(this.dir, 'repo');
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  env(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
    return { HOLDFAST_REPOSITORY: this.repo, HOLDFAST_PASSWORD: 'correct horse', HOLDFAST_SCRYPT_N: '1024', HOLDFAST_CACHE_DIR: join(this.dir, 'cache'), ...extra };
  }

  /** Runs `holdfast ARGS` with this sandbox's repository and password. */
  run(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return runCli(args, { ...opts, env: this.env(opts.env) });
  }

  /** Like `run` but does not wait: the process can be signalled while it runs. */
  start(args: readonly string[], opts: Omit<RunOptions, 'input'> = {}): Started {
    return startCli(args, { ...opts, env: this.env(opts.env) });
  }

  /** Like `run` but fails the test (with stderr) unless the exit code is `want`. */
  async ok(args: readonly string[], opts: RunOptions = {}, want = 0): Promise<RunResult> {
    const r = await this.run(args, opts);
    if (r.code !== want) throw new Error(`holdfast ${args.join(' ')} exited ${r.code} (wanted ${want})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r;
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A CLI process that is still running, and its result once it has exited. */
export interface Started {
  readonly child: ChildProcess;
  readonly done: Promise<RunResult>;
}

/** Spawns the CLI with stdin as given; `done` resolves with its exit status and output. */
function spawnCli(args: readonly string[], opts: RunOptions, stdin: 'pipe' | 'ignore'): Started {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...opts.env })) if (v !== undefined) env[k] = v;
  const [cmd, argv] = opts.asUser
    ? ['setpriv', [`--reuid=${opts.asUser.uid}`, `--regid=${opts.asUser.gid}`, '--clear-groups', process.execPath, CLI, ...args]]
    : [process.execPath, [CLI, ...args]];
  const child = spawn(cmd, argv as string[], { env, cwd: opts.cwd, stdio: [stdin, 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBytes.toString(), stdoutBytes, stderr: Buffer.concat(err).toString() });
    });
  });
  return { child, done };
}

/** Spawns the CLI, writes `opts.input` to its stdin and closes it; resolves with its exit status and output. */
export function runCli(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const { child, done } = spawnCli(args, opts, 'pipe');
  child.stdin!.on('error', () => undefined);
  child.stdin!.end(opts.input);
  return done;
}

/** Spawns the CLI with no stdin and returns at once, so the test can signal it while it runs. */
export function startCli(args: readonly string[], opts: Omit<RunOptions, 'input'> = {}): Started {
  return spawnCli(args, opts, 'ignore');
}

/** The snapshots of a repository, via `snapshots --json`. */
export async function snapshotsOf(s: Sandbox): Promise<{ id: string; time: string; hostname: string; paths: string[]; tags: string[]; incomplete: boolean; summary: Record<string, number> }[]> {
  const r = await s.ok(['snapshots', '--json']);
  return JSON.parse(r.stdout) as never;
}

/** The largest pack of a sandbox's repository: in a test tree with one big file, the one holding its data. */
export async function largestPack(s: Sandbox): Promise<string> {
  let best = { path: '', size: -1 };
  for (const dir of await readdir(join(s.repo, 'data'))) {
    for (const name of await readdir(join(s.repo, 'data', dir))) {
      const path = join(s.repo, 'data', dir, name);
      const { size } = await stat(path);
      if (size > best.size) best = { path, size };
    }
  }
  return best.path;
}
