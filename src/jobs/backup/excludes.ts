/**
 * Exclusion rules of file backups, with restic's meaning. Each rule has one
 * implementation, used by the walk (archiver.ts), the scan worker
 * (scan-worker.ts) and the count of totals for progress (scan-totals.ts).
 *
 *   patterns  (--exclude, --iexclude) a pattern without "/" matches any
 *             single path component; one starting with "/" matches from the
 *             root; any other pattern matches the end of the path. `**`
 *             crosses folders. An excluded folder is not entered.
 *   size      (--exclude-larger-than) files larger than a size are left out.
 *   tag files (--exclude-if-present NAME[:HEADER], --exclude-caches) a folder
 *             holding a file NAME (that begins with HEADER, when given) keeps
 *             only that file.
 *
 * The rules cost nothing per entry when not given: no pattern, no size and
 * no tag file means no test and no system call.
 */
import { closeSync, openSync, readSync, constants } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Minimatch } from 'minimatch';
import type { PosixPath } from '../../sources/posix.js';

/**
 * minimatch, loaded the first time a pattern is compiled: most backups have
 * none, and loading it cost every backup 17 ms of CPU in the main thread and
 * again in the scan worker (docs/decisions.md, "Fixed costs per run").
 */
const minimatch = (): typeof import('minimatch') => createRequire(import.meta.url)('minimatch') as typeof import('minimatch');

export class Excludes {
  private readonly matchers: Minimatch[];

  /**
   * `patterns`: as given (comments and blank lines are dropped here);
   * `insensitive`: patterns that ignore case (--iexclude).
   */
  constructor(readonly patterns: readonly string[], readonly insensitive: readonly string[] = []) {
    const compile = (nocase: boolean) => (p: string): Minimatch => {
      const trimmed = p.trim().replace(/\/+$/, '');
      const full = trimmed.startsWith('/') ? trimmed : `**/${trimmed}`;
      return new (minimatch().Minimatch)(full, { dot: true, nocomment: true, nonegate: true, nocase });
    };
    const kept = (ps: readonly string[]): string[] => ps.filter((p) => p.trim() !== '' && !p.startsWith('#'));
    this.matchers = [...kept(patterns).map(compile(false)), ...kept(insensitive).map(compile(true))];
  }

  /**
   * Reads patterns from files, one per line; "#" starts a comment line.
   * `insensitiveFiles` hold patterns that ignore case (--iexclude-file).
   */
  static async fromFiles(patterns: readonly string[], files: readonly string[], insensitive: readonly string[] = [], insensitiveFiles: readonly string[] = []): Promise<Excludes> {
    return new Excludes(await readPatterns(patterns, files), await readPatterns(insensitive, insensitiveFiles));
  }

  /** True when there is no pattern: no path is excluded (the walk then makes no path to ask about). */
  get empty(): boolean {
    return this.matchers.length === 0;
  }

  /** True when the absolute path is excluded (a Buffer is decoded only when there are patterns: the walk asks for every entry). */
  matches(path: string | Buffer): boolean {
    if (this.matchers.length === 0) return false;
    const p = typeof path === 'string' ? path : path.toString();
    return this.matchers.some((m) => m.match(p));
  }
}

/** The patterns given and the lines of the files of patterns (comments are dropped by `Excludes`). */
export async function readPatterns(given: readonly string[], files: readonly string[]): Promise<string[]> {
  const all = [...given];
  for (const f of files) all.push(...(await readFile(f, 'utf8')).split('\n'));
  return all;
}

/** The tag file of --exclude-caches (https://bford.info/cachedir/). */
export const CACHEDIR_TAG = 'CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55';

/** One --exclude-if-present rule. */
interface TagRule {
  readonly name: Buffer;
  readonly header: Buffer | undefined;
}

/** The exclusion rules as plain data: what the command line gives, and what the scan worker is sent. */
export interface ExcludeOptions {
  /** --exclude patterns (and the lines of --exclude-file). */
  readonly patterns?: readonly string[];
  /** --iexclude patterns (and the lines of --iexclude-file). */
  readonly insensitive?: readonly string[];
  /** --exclude-if-present: NAME or NAME:HEADER (--exclude-caches adds `CACHEDIR_TAG`). */
  readonly ifPresent?: readonly string[];
  /** --exclude-larger-than, in bytes. */
  readonly largerThan?: number;
}

/** Every exclusion rule of a backup. */
export class ExcludeRules {
  /** The path patterns. */
  readonly paths: Excludes;
  private readonly tags: TagRule[];
  private readonly largerThan: number;

  constructor(readonly options: ExcludeOptions = {}) {
    this.paths = new Excludes(options.patterns ?? [], options.insensitive ?? []);
    this.tags = (options.ifPresent ?? []).map(parseTagRule);
    this.largerThan = options.largerThan ?? Infinity;
  }

  /** True when the path matches an exclude pattern. */
  excludesPath(path: string | Buffer): boolean {
    return this.paths.matches(path);
  }

  /** True when an entry of this type and size is too large (--exclude-larger-than: files only). */
  excludesSize(type: string, size: number): boolean {
    return size > this.largerThan && type === 'file';
  }

  /**
   * When the folder `dir`, holding `count` entries named `nameAt(0)` on, is
   * tagged (--exclude-if-present), which names it keeps: its tag file that
   * matched, if just one did (restic keeps a tag file unless another tag
   * excludes it). Undefined when the folder is not tagged. Reads a file only
   * when a name matches a rule with a header.
   */
  keptIn(dir: PosixPath, count: number, nameAt: (i: number) => Buffer): ((name: Buffer) => boolean) | undefined {
    if (this.tags.length === 0) return undefined;
    const holds = (name: Buffer): boolean => {
      for (let i = 0; i < count; i++) if (nameAt(i).equals(name)) return true;
      return false;
    };
    const found = this.tags.filter((t) => holds(t.name) && hasHeader(dir, t));
    if (found.length === 0) return undefined;
    return (name) => found.every((t) => t.name.equals(name));
  }
}

function parseTagRule(spec: string): TagRule {
  const colon = spec.indexOf(':');
  const name = colon < 0 ? spec : spec.slice(0, colon);
  if (name === '' || name.includes('/')) throw new Error(`bad --exclude-if-present "${spec}": use FILENAME or FILENAME:HEADER`);
  return { name: Buffer.from(name), header: colon < 0 ? undefined : Buffer.from(spec.slice(colon + 1)) };
}

/** True when the tag file in `dir` begins with the rule's header (any file will do when it has none). */
function hasHeader(dir: PosixPath, rule: TagRule): boolean {
  if (rule.header === undefined) return true;
  const d = typeof dir === 'string' ? Buffer.from(dir) : dir;
  let fd: number;
  try {
    fd = openSync(Buffer.concat([d, Buffer.from('/'), rule.name]), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    const buf = Buffer.alloc(rule.header.length);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return got === buf.length && buf.equals(rule.header);
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}
