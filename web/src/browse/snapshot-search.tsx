/**
 * Search by name in a snapshot: the walk runs in a Web Worker
 * (search-worker.ts) so the page stays responsive on a large snapshot;
 * typing a new query aborts the search running, and matches are listed as
 * they come, each with a link to its folder.
 */
import { useEffect, useRef, useState } from 'react';
import { Link } from 'react-router';
import { ErrorBox } from '../components/error-box.js';
import { formatBytes } from '../format.js';
import { sessionToken } from '../session.js';
import type { Snapshot } from '../zk/format.js';
import type { ZkSafe } from '../zk/safe.js';
import type { Found } from '../zk/search.js';
import type { SearchReply, SearchRequest } from './search-worker.js';

/** How long typing pauses before a search starts. */
const DEBOUNCE_MS = 250;

interface Results {
  readonly items: Found[];
  readonly done: boolean;
  readonly limited: boolean;
  readonly error: string | null;
}

const NONE: Results = { items: [], done: false, limited: false, error: null };

export function SnapshotSearch({ safe, safeId, snapshot }: { safe: ZkSafe; safeId: string; snapshot: Snapshot }) {
  const [query, setQuery] = useState('');
  const [results, setResults] = useState<Results>(NONE);
  const worker = useRef<Worker | null>(null);
  const seq = useRef(0);

  useEffect(() => {
    const w = new Worker(new URL('./search-worker.ts', import.meta.url), { type: 'module' });
    const post = (m: SearchRequest): void => w.postMessage(m);
    post({ type: 'open', safe: safeId, token: sessionToken(), opened: safe.opened });
    w.onmessage = (e: MessageEvent<SearchReply>) => {
      const r = e.data;
      if (r.seq !== seq.current) return;
      if (r.type === 'found') setResults((s) => ({ ...s, items: [...s.items, ...r.items] }));
      else if (r.type === 'done') setResults((s) => ({ ...s, done: true, limited: r.limited }));
      else setResults((s) => ({ ...s, done: true, error: `The search failed: ${r.message}` }));
    };
    w.onerror = (e) => setResults((s) => ({ ...s, done: true, error: `The search failed: ${e.message}` }));
    worker.current = w;
    return () => {
      worker.current = null;
      w.terminate();
    };
  }, [safe, safeId]);

  useEffect(() => {
    const mine = ++seq.current;
    setResults(NONE);
    if (query.trim() === '') {
      worker.current?.postMessage({ type: 'cancel' } satisfies SearchRequest);
      return;
    }
    const timer = setTimeout(() => worker.current?.postMessage({ type: 'search', seq: mine, tree: snapshot.tree, query } satisfies SearchRequest), DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [query, snapshot.tree]);

  const folderLink = (folder: readonly string[]): string => `/safes/${safeId}/browse/${snapshot.id}/${folder.map((p) => `${encodeURIComponent(p)}/`).join('')}`;
  const searching = query.trim() !== '';
  return (
    <section className="search" aria-label="search by name">
      <input type="search" aria-label="Search this snapshot by name" placeholder="Search this snapshot by name" value={query} onChange={(e) => setQuery(e.target.value)} />
      {searching ? (
        <div className="card">
          <p role="status" className="muted">
            {results.done
              ? results.items.length === 0 ? `Nothing in this snapshot is named like “${query.trim()}”.` : `${results.items.length} found${results.limited ? ' (the first ones only: make the name longer)' : ''}.`
              : `Searching… ${results.items.length} found so far.`}
          </p>
          <ErrorBox error={results.error} />
          {results.items.length > 0 ? (
            <table className="list" aria-label="search results">
              <thead><tr><th>Name</th><th>Folder</th><th className="num">Size</th></tr></thead>
              <tbody>
                {results.items.map((f, i) => (
                  <tr key={i}>
                    <td>{f.name}{f.type === 'dir' ? '/' : ''}</td>
                    <td><Link to={folderLink(f.folder)}>/{f.folder.join('/')}</Link></td>
                    <td className="num">{f.type === 'file' ? formatBytes(f.size) : ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : null}
        </div>
      ) : null}
    </section>
  );
}
