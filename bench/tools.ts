// The three backup tools under test and how to drive them.

import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { capture, findInPath, type Cmd } from './measure.js';

export const ALL_TOOLS = ['holdfast', 'restic', 'borg'] as const;
export type ToolName = (typeof ALL_TOOLS)[number];

export const PASSWORD = 'holdfast-bench-password';

/** dist/bench/tools.js -> dist/src/cli/main.js */
export const HOLDFAST_MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
/** dist/bench/tools.js -> the project root */
const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ToolPaths {
  /** .bench/work/<tool> */
  dir: string;
  /** repository directory (du -sb of this is the repository size) */
  repo: string;
  /** tool-private cache/config directory, fresh each run */
  home: string;
}

export interface Probe {
  available: boolean;
  version: string;
  problem: string | null;
}

export interface InitAttempt {
  cmd: Cmd;
  /** Settings in effect if this attempt succeeds (printed in the output). */
  settings: string;
}

export interface Tool {
  name: ToolName;
  probe(): Promise<Probe>;
  /** Alternatives tried in order until one succeeds (repository wiped in between). */
  initAttempts(p: ToolPaths): Promise<InitAttempt[]>;
  backup(p: ToolPaths, src: string, n: number): Cmd;
  /** Restore the latest snapshot (backup number `last`) into the empty, existing directory `target`. */
  restore(p: ToolPaths, target: string, last: number): Cmd;
  /**
   * The tool's program files, read whole after the page cache is dropped: its
   * version command reads only part of them (holdfast loads a command's modules
   * when it runs).
   */
  code(): string[];
  /** List the snapshots: little work beyond the tool's fixed cost per run (start, key, index). */
  snapshots(p: ToolPaths): Cmd;
}

function firstLine(s: string): string {
  return s.split('\n').find((l) => l.trim() !== '')?.trim() ?? '';
}

const restic: Tool = {
  name: 'restic',
  async probe() {
    if (!findInPath('restic')) {
      return { available: false, version: 'not installed', problem: 'restic not found in PATH (apt-get install -y restic)' };
    }
    const r = await capture('restic', ['version']);
    return { available: true, version: firstLine(r.stdout) || firstLine(r.stderr) || 'unknown', problem: null };
  },
  async initAttempts(p) {
    const env = resticEnv(p);
    const help = await capture('restic', ['init', '--help']);
    if (/--repository-version/.test(help.stdout + help.stderr)) {
      return [
        {
          cmd: { file: 'restic', args: ['init', '--repository-version', '2'], env },
          settings: 'repo format v2, compression auto (zstd), AES-256-CTR + Poly1305-AES',
        },
      ];
    }
    return [{ cmd: { file: 'restic', args: ['init'], env }, settings: 'repo format v1 (no compression support), AES-256-CTR + Poly1305-AES' }];
  },
  backup(p, src) {
    return { file: 'restic', args: ['backup', '--host', 'bench', src], env: resticEnv(p) };
  },
  restore(p, target) {
    return { file: 'restic', args: ['restore', 'latest', '--target', target], env: resticEnv(p) };
  },
  code() {
    const bin = findInPath('restic');
    return bin ? [realpathSync(bin)] : [];
  },
  snapshots(p) {
    return { file: 'restic', args: ['snapshots'], env: resticEnv(p) };
  },
};

function resticEnv(p: ToolPaths): Record<string, string> {
  return { RESTIC_REPOSITORY: p.repo, RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: join(p.home, 'cache') };
}

const borg: Tool = {
  name: 'borg',
  async probe() {
    if (!findInPath('borg')) {
      return { available: false, version: 'not installed', problem: 'borg not found in PATH (apt-get install -y borgbackup)' };
    }
    const r = await capture('borg', ['--version']);
    return { available: true, version: firstLine(r.stdout) || firstLine(r.stderr) || 'unknown', problem: null };
  },
  async initAttempts(p) {
    const env = borgEnv(p);
    return [
      {
        cmd: { file: 'borg', args: ['init', '-e', 'repokey-blake2', p.repo], env },
        settings: 'compression zstd,3; encryption repokey-blake2 (AES-256-CTR + keyed BLAKE2b)',
      },
      {
        cmd: { file: 'borg', args: ['init', '-e', 'repokey', p.repo], env },
        settings: 'compression zstd,3; encryption repokey (AES-256-CTR + HMAC-SHA256; blake2 unsupported)',
      },
    ];
  },
  backup(p, src, n) {
    return { file: 'borg', args: ['create', '--compression', 'zstd,3', `${p.repo}::bench-${n}`, src], env: borgEnv(p) };
  },
  restore(p, target, last) {
    // borg extract has no "latest": extract the archive of the last backup, run inside the target dir.
    return { file: 'borg', args: ['extract', `${p.repo}::bench-${last}`], cwd: target, env: borgEnv(p) };
  },
  code() {
    return []; // a Python program: its version command is what is read again
  },
  snapshots(p) {
    return { file: 'borg', args: ['list', p.repo], env: borgEnv(p) };
  },
};

function borgEnv(p: ToolPaths): Record<string, string> {
  return {
    BORG_PASSPHRASE: PASSWORD,
    BORG_BASE_DIR: p.home, // cache, config, security dirs: fresh per run, outside the repo
    BORG_DISPLAY_PASSPHRASE: 'no',
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  };
}

const holdfast: Tool = {
  name: 'holdfast',
  async probe() {
    if (!existsSync(HOLDFAST_MAIN)) {
      return {
        available: true, // run anyway: the steps fail and are reported as FAILED with the error
        version: `not built (${HOLDFAST_MAIN} missing)`,
        problem: null,
      };
    }
    const r = await capture(process.execPath, [HOLDFAST_MAIN, '--version'], { timeoutMs: 30_000 });
    const v = r.code === 0 ? firstLine(r.stdout) : '';
    return { available: true, version: v ? `holdfast ${v.replace(/^holdfast\s+/, '')}` : 'unknown (--version failed)', problem: null };
  },
  async initAttempts(p) {
    return [{ cmd: { file: process.execPath, args: [HOLDFAST_MAIN, 'init'], env: holdfastEnv(p) }, settings: 'holdfast defaults' }];
  },
  backup(p, src) {
    return { file: process.execPath, args: [HOLDFAST_MAIN, 'backup', '--host', 'bench', src], env: holdfastEnv(p) };
  },
  restore(p, target) {
    return { file: process.execPath, args: [HOLDFAST_MAIN, 'restore', 'latest', '--target', target], env: holdfastEnv(p) };
  },
  code() {
    return [realpathSync(process.execPath), join(PROJECT_ROOT, 'dist', 'src'), ...runtimePackages(PROJECT_ROOT)];
  },
  snapshots(p) {
    return { file: process.execPath, args: [HOLDFAST_MAIN, 'snapshots'], env: holdfastEnv(p) };
  },
};

/** The installed folders of a package's dependencies, optional ones and theirs included. */
function runtimePackages(root: string): string[] {
  const found = new Set<string>();
  const visit = (pkgDir: string): void => {
    const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
    for (const name of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
      const dir = join(root, 'node_modules', name);
      if (found.has(dir) || !existsSync(dir)) continue;
      found.add(dir);
      visit(dir);
    }
  };
  visit(root);
  return [...found];
}

function holdfastEnv(p: ToolPaths): Record<string, string> {
  return { HOLDFAST_REPOSITORY: p.repo, HOLDFAST_PASSWORD: PASSWORD, XDG_CACHE_HOME: join(p.home, 'cache') };
}

export const TOOLS: Record<ToolName, Tool> = { holdfast, restic, borg };

/** Remove a half-created repository between init attempts. */
export async function wipeRepo(p: ToolPaths): Promise<void> {
  await rm(p.repo, { recursive: true, force: true });
}
