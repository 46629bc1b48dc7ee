/**
 * The snapshot browser's search, off the page's thread: the page posts the
 * opened safe (ZkSafe.opened: its key, never the password) and its session
 * token once, then a search per query; a new search or `cancel` aborts the
 * one running. Matches go back in batches as they are found.
 *
 *   page → worker   { open, safe, token, opened } | { search, seq, tree, query } | { cancel }
 *   worker → page   { found, seq, items } … { done, seq, count, limited } | { error, seq, message }
 */
import { ZkSafe, type OpenedSafe } from '../zk/safe.js';
import { searchNames, type Found } from '../zk/search.js';
import { HttpSafeSource } from '../zk/source.js';

/** What the page asks of the worker. */
export type SearchRequest =
  | { readonly type: 'open'; readonly safe: string; readonly token: string | null; readonly opened: OpenedSafe }
  | { readonly type: 'search'; readonly seq: number; readonly tree: string; readonly query: string }
  | { readonly type: 'cancel' };

/** What the worker tells the page, each about search `seq`. */
export type SearchReply =
  | { readonly type: 'found'; readonly seq: number; readonly items: readonly Found[] }
  | { readonly type: 'done'; readonly seq: number; readonly count: number; readonly limited: boolean }
  | { readonly type: 'error'; readonly seq: number; readonly message: string };

/** The most matches one search reports. */
export const SEARCH_LIMIT = 1000;
/** Matches are sent when this many are waiting, or FLUSH_MS after the last batch. */
const BATCH = 50;
const FLUSH_MS = 150;

/** The worker's global scope, as much of it as this uses (the app's types are the page's, DOM). */
const scope = self as unknown as { postMessage(r: SearchReply): void; onmessage: ((e: MessageEvent<SearchRequest>) => void) | null };
let safe: ZkSafe | undefined;
let running: AbortController | undefined;

function reply(r: SearchReply): void {
  scope.postMessage(r);
}

async function search(seq: number, tree: string, query: string, signal: AbortSignal): Promise<void> {
  let batch: Found[] = [];
  let sentAt = Date.now();
  let count = 0;
  const flush = (): void => {
    if (batch.length > 0) reply({ type: 'found', seq, items: batch });
    batch = [];
    sentAt = Date.now();
  };
  try {
    for await (const f of searchNames(safe!, tree, query, { signal, limit: SEARCH_LIMIT })) {
      batch.push(f);
      count++;
      if (batch.length >= BATCH || Date.now() - sentAt >= FLUSH_MS) flush();
    }
    flush();
    reply({ type: 'done', seq, count, limited: count >= SEARCH_LIMIT });
  } catch (e) {
    if (!signal.aborted) reply({ type: 'error', seq, message: e instanceof Error ? e.message : String(e) });
  }
}

scope.onmessage = (e: MessageEvent<SearchRequest>) => {
  const m = e.data;
  if (m.type === 'open') {
    safe = ZkSafe.reopen(new HttpSafeSource(m.safe, () => m.token), m.opened);
    return;
  }
  running?.abort();
  running = undefined;
  if (m.type === 'search') {
    running = new AbortController();
    void search(m.seq, m.tree, m.query, running.signal);
  }
};
