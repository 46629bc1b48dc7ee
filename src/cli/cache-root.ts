/**
 * Where the CLI keeps what it learns on this machine (key hints, the tree
 * and changed-block caches): a module of its own, light enough for the
 * key derivation started before the command loads (early-key.ts).
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The cache folder: $HOLDFAST_CACHE_DIR, else $XDG_CACHE_HOME/holdfast, else ~/.cache/holdfast. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env['HOLDFAST_CACHE_DIR']) return env['HOLDFAST_CACHE_DIR'];
  const xdg = env['XDG_CACHE_HOME'];
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.cache'), 'holdfast');
}
