/**
 * The paths a restore was asked for (`--include`), as both restorers (files
 * of snapshots, files out of disk images) select them.
 */

/** An included path as the walk names it: absolute, without "." or empty parts. */
export function normalizeInclude(p: string): string {
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  return `/${parts.join('/')}`;
}

/** Whether `path` is restored under `includes` (normalized): an included path, one below it, or a folder above it; no includes: every path. */
export function included(includes: readonly string[], path: string): boolean {
  if (includes.length === 0) return true;
  return includes.some((inc) => path === inc || path.startsWith(inc === '/' ? '/' : `${inc}/`) || inc.startsWith(`${path}/`));
}
