/**
 * Exclusion rules, with restic's meaning: a pattern without "/" matches any
 * single path component; a pattern starting with "/" matches from the root;
 * any other pattern matches the end of the path. `**` crosses folders.
 * An excluded directory is not entered.
 */
import { readFile } from 'node:fs/promises';
import { Minimatch } from 'minimatch';

export class Excludes {
  private readonly matchers: Minimatch[];

  /** `patterns`: as given (comments and blank lines are dropped here). */
  constructor(readonly patterns: readonly string[]) {
    this.matchers = patterns.filter((p) => p.trim() !== '' && !p.startsWith('#')).map((p) => {
      const trimmed = p.trim().replace(/\/+$/, '');
      const full = trimmed.startsWith('/') ? trimmed : `**/${trimmed}`;
      return new Minimatch(full, { dot: true, nocomment: true, nonegate: true });
    });
  }

  /** Reads patterns from files, one per line; "#" starts a comment line. */
  static async fromFiles(patterns: readonly string[], files: readonly string[]): Promise<Excludes> {
    const all = [...patterns];
    for (const f of files) all.push(...(await readFile(f, 'utf8')).split('\n'));
    return new Excludes(all);
  }

  /** True when the absolute path is excluded (a Buffer is decoded only when there are patterns: the walk asks for every entry). */
  matches(path: string | Buffer): boolean {
    if (this.matchers.length === 0) return false;
    const p = typeof path === 'string' ? path : path.toString();
    return this.matchers.some((m) => m.match(p));
  }
}
