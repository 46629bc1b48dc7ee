/**
 * Finding entries of a snapshot by name: the walk below a tree, each name
 * matched as it is listed, each match yielded with its folder as soon as it
 * is found. The snapshot browser runs it in a Web Worker
 * (browse/search-worker.ts), so decrypting and decoding the trees never
 * holds up the page; an abort stops it between two entries.
 */
import type { NodeType } from './format.js';
import type { ZkSafe } from './safe.js';

/** One entry found. */
export interface Found {
  /** The folder it is in, components below the searched tree, as text. */
  readonly folder: readonly string[];
  readonly name: string;
  readonly type: NodeType;
  readonly size: number;
}

/**
 * Whether a name matches a query: every word of the query (split at spaces)
 * is part of the name, case and Unicode form aside. An empty query matches nothing.
 */
export function nameMatcher(query: string): (name: string) => boolean {
  const words = fold(query).split(/\s+/).filter((w) => w !== '');
  if (words.length === 0) return () => false;
  return (name) => {
    const n = fold(name);
    return words.every((w) => n.includes(w));
  };
}

function fold(s: string): string {
  return s.normalize('NFC').toLocaleLowerCase();
}

/** The entries below tree `tree` whose names match `query`, depth first, at most `limit`; an abort of `signal` ends it with the signal's reason. */
export async function* searchNames(safe: Pick<ZkSafe, 'walk'>, tree: string, query: string, opts: { signal?: AbortSignal; limit?: number } = {}): AsyncGenerator<Found> {
  const matches = nameMatcher(query);
  const text = new TextDecoder();
  let left = opts.limit ?? Infinity;
  for await (const { path, node } of safe.walk(tree)) {
    opts.signal?.throwIfAborted();
    if (!matches(node.name)) continue;
    yield { folder: path.slice(0, -1).map((p) => text.decode(p)), name: node.name, type: node.type, size: node.size };
    if (--left <= 0) return;
  }
}
