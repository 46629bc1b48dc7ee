/**
 * The snapshot browser of a disk safe (/safes/:id/browse/*): the safe's
 * password is asked for here and the key derived here (web/src/zk); the
 * server hands over sealed objects only (the session's read right,
 * docs/format.md §2.5) and never sees the password or a byte of a file.
 *
 *   /safes/ID/browse/              its snapshots
 *   /safes/ID/browse/SNAP/a/b      folder /a/b of snapshot SNAP
 *
 * The opened safe lives in this tab's memory only: a reload asks for the
 * password again.
 */
import { useVirtualizer } from '@tanstack/react-virtual';
import { useEffect, useMemo, useRef, useState, type FormEvent } from 'react';
import { Link, useParams } from 'react-router';
import { ErrorBox } from '../components/error-box.js';
import { formatBytes } from '../format.js';
import { sessionToken, useSession } from '../session.js';
import { UnauthenticMark } from '../components/unauthentic-mark.js';
import { DamagedError, ServerError, WrongPasswordError, ZkError } from '../zk/errors.js';
import type { Snapshot, TreeNode } from '../zk/format.js';
import { ZkSafe } from '../zk/safe.js';
import { compareTrees, previousSnapshot, type Change } from '../zk/compare.js';
import { HttpSafeSource } from '../zk/source.js';
import { tarOf } from '../zk/tar.js';
import { zipOf } from '../zk/zip.js';
import { saveStream } from './download.js';
import { SnapshotSearch } from './snapshot-search.js';
import './browse.css';

/** The safes opened in this tab, by id (never stored anywhere). */
const opened = new Map<string, ZkSafe>();

/** An error of the reader or the server, in words. */
export function describeError(e: unknown): string {
  if (e instanceof WrongPasswordError) return 'Wrong password: it opens none of this disk safe\'s keys. Type it again.';
  if (e instanceof DamagedError) return `Damaged data: ${e.message}. Nothing of it is shown.`;
  if (e instanceof ServerError && e.status === 404) return 'This disk safe does not exist, or you may not read it.';
  if (e instanceof ServerError) return `The server refused: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

export function BrowsePage() {
  const { id = '', '*': rest = '' } = useParams();
  const [safe, setSafe] = useState<ZkSafe | undefined>(() => opened.get(id));
  const [snapshotId, ...path] = rest.split('/').filter((p) => p !== '').map(decodeURIComponent);
  if (!safe) return <PasswordForm safeId={id} onOpen={(s) => { opened.set(id, s); setSafe(s); }} />;
  return (
    <section className="page browse">
      <div className="page-head"><h1>Snapshot browser</h1><span className="muted">decrypted in this browser; the server sees neither the password nor the files</span></div>
      {snapshotId === undefined ? <SnapshotList safe={safe} safeId={id} /> : <FolderView safe={safe} safeId={id} snapshotId={snapshotId} path={path} />}
    </section>
  );
}

function PasswordForm({ safeId, onOpen }: { safeId: string; onOpen: (s: ZkSafe) => void }) {
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onOpen(await ZkSafe.open(new HttpSafeSource(safeId, sessionToken), password));
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="page browse">
      <h1>Open the disk safe</h1>
      <p className="muted">The disk safe's password stays in this browser: the key is derived here, and the server only hands over encrypted data.</p>
      <form className="card form" onSubmit={(e) => void submit(e)}>
        <label>Disk safe password<input type="password" autoComplete="off" value={password} onChange={(e) => setPassword(e.target.value)} required /></label>
        <button type="submit" disabled={busy || password === ''}>{busy ? 'Opening…' : 'Open'}</button>
      </form>
      <ErrorBox error={error} />
    </section>
  );
}

function useAsync<T>(fn: () => Promise<T>, deps: unknown[]): { data?: T; error: string | null } {
  const [state, setState] = useState<{ data?: T; error: string | null }>({ error: null });
  useEffect(() => {
    let live = true;
    setState({ error: null });
    fn().then((data) => live && setState({ data, error: null }), (e: unknown) => live && setState({ error: describeError(e) }));
    return () => { live = false; };
  }, deps);
  return state;
}

/** A row of the snapshot list: one this browser authenticated (`size` from its summary), or one the server flags unauthentic. */
interface ListedSnapshot { id: string; time: string; hostname: string; paths: readonly string[]; size: number | null; unauthentic: boolean }

/**
 * The safe's snapshots, newest first: those that pass their MAC here, each
 * a link, and those the server flags unauthentic (its agent's census),
 * marked and never a link. A planted one fails its MAC here too, so without
 * the server's word it would be missing without a reason.
 */
function SnapshotList({ safe, safeId }: { safe: ZkSafe; safeId: string }) {
  const { api } = useSession();
  const { data, error } = useAsync(async (): Promise<ListedSnapshot[]> => {
    // The server's index only adds its flags: the list stays the key's when it cannot be read.
    const [mine, indexed] = await Promise.all([safe.snapshots(), api.safeSnapshots(safeId).catch(() => [])]);
    const flagged = new Map(indexed.filter((s) => s.unauthentic === true).map((s) => [s.id, s]));
    const rows: ListedSnapshot[] = mine.map((s) => ({
      id: s.id, time: s.time, hostname: s.hostname, paths: s.paths, size: typeof s.summary['totalBytes'] === 'number' ? s.summary['totalBytes'] : null, unauthentic: flagged.delete(s.id),
    }));
    for (const s of flagged.values()) rows.push({ id: s.id, time: s.time, hostname: s.hostname, paths: s.paths, size: null, unauthentic: true });
    return rows.sort((a, b) => Date.parse(b.time) - Date.parse(a.time) || b.id.localeCompare(a.id));
  }, [safe, safeId]);
  return (
    <>
      <ErrorBox error={error} />
      {data === undefined && !error ? <p className="muted">Loading snapshots…</p> : null}
      {data && data.length === 0 ? <p className="notice">This disk safe holds no snapshot yet.</p> : null}
      {data && data.length > 0 ? (
        <table className="list" aria-label="snapshots">
          <thead><tr><th>Time</th><th>Id</th><th className="wide">Host</th><th>Paths</th><th className="num wide">Size</th></tr></thead>
          <tbody>
            {data.map((s) => (
              <tr key={s.id}>
                <td>{s.unauthentic ? <>{new Date(s.time).toLocaleString()} <UnauthenticMark /></> : <Link to={`/safes/${safeId}/browse/${s.id}/`}>{new Date(s.time).toLocaleString()}</Link>}</td>
                <td><code>{s.id.slice(0, 8)}</code></td>
                <td className="wide">{s.hostname}</td>
                <td>{s.paths.join(', ')}</td>
                <td className="num wide">{s.size === null ? '—' : formatBytes(s.size)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </>
  );
}

/** `drwxr-xr-x` of a node as `ls -l` shows it, setuid, setgid and the sticky bit too (src/core/mode-string.ts is the CLI's; web/ imports only src/api). */
export function modeText(n: Pick<TreeNode, 'type' | 'mode'>): string {
  const letter = { file: '-', dir: 'd', symlink: 'l', fifo: 'p', chardev: 'c', blockdev: 'b', socket: 's' }[n.type];
  const triple = (shift: number, special: number, ch: string): string => {
    const x = (n.mode & (1 << shift)) !== 0;
    const xc = n.mode & special ? (x ? ch : ch.toUpperCase()) : x ? 'x' : '-';
    return (n.mode & (4 << shift) ? 'r' : '-') + (n.mode & (2 << shift) ? 'w' : '-') + xc;
  };
  return letter + triple(6, 0o4000, 's') + triple(3, 0o2000, 's') + triple(0, 0o1000, 't');
}

const ROW = 36;

function FolderView({ safe, safeId, snapshotId, path }: { safe: ZkSafe; safeId: string; snapshotId: string; path: string[] }) {
  const key = `${snapshotId}/${path.join('/')}`;
  // Apart from the folder's listing, so that the search stays while folders change.
  const snapshot = useAsync(() => safe.snapshot(snapshotId), [safe, snapshotId]);
  const listing = useAsync(async () => {
    const snapshot = await safe.snapshot(snapshotId);
    const tree = await safe.folderTree(snapshot, path);
    const { entries, refused } = await safe.list(tree, `/${path.map((p) => `${p}/`).join('')}`);
    return { snapshot, tree, entries, refused };
  }, [safe, key]);
  const [status, setStatus] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const base = `/safes/${safeId}/browse/${snapshotId}`;
  const here = (parts: string[]): string => `${base}/${parts.map(encodeURIComponent).join('/')}${parts.length > 0 ? '/' : ''}`;

  const download = async (what: string, run: () => Promise<string>): Promise<void> => {
    setError(null);
    setStatus(`Downloading ${what}…`);
    try {
      setStatus(await run());
    } catch (e) {
      setStatus(null);
      setError(`The download of ${what} failed: ${describeError(e)}`);
    }
  };
  const downloadFile = (n: TreeNode): Promise<void> => download(n.name, async () => {
    const mode = await saveStream(n.name, n.size, safe.fileBytes(n, `/${[...path, n.name].join('/')}`));
    return `Downloaded ${n.name}${mode === 'in-memory' ? ' (held in memory: this browser cannot stream downloads)' : ''}.`;
  });
  const downloadFolder = (kind: 'tar' | 'zip'): Promise<void> => download('the folder', async () => {
    const top = path.length > 0 ? path[path.length - 1]! : 'snapshot';
    const name = new TextEncoder().encode(top);
    const mode = await saveStream(`${top}.${kind}`, undefined, kind === 'tar' ? tarOf(safe, listing.data!.tree, name) : zipOf(safe, listing.data!.tree, name));
    return `Downloaded ${top}.${kind}${mode === 'in-memory' ? ' (held in memory: this browser cannot stream downloads)' : ''}.`;
  });
  const [comparing, setComparing] = useState<string | null>(null);

  return (
    <>
      <nav className="crumbs" aria-label="folder">
        <Link to={`/safes/${safeId}/browse/`}>Snapshots</Link>
        <span> / </span><Link to={here([])}>{snapshotId.slice(0, 8)}</Link>
        {path.map((p, i) => <span key={i}> / <Link to={here(path.slice(0, i + 1))}>{p}</Link></span>)}
      </nav>
      <div className="toolbar">
        <button type="button" className="secondary" disabled={!listing.data} onClick={() => void downloadFolder('tar')}>Download folder (tar)</button>
        <button type="button" className="secondary" disabled={!listing.data} onClick={() => void downloadFolder('zip')}>Download folder (zip)</button>
        <button type="button" className="secondary" disabled={!listing.data || comparing === key} onClick={() => setComparing(key)}>Compare with previous snapshot</button>
        {status ? <span role="status" className="muted">{status}</span> : null}
      </div>
      {snapshot.data ? <SnapshotSearch safe={safe} safeId={safeId} snapshot={snapshot.data} /> : null}
      <ErrorBox error={listing.error ?? error} />
      {comparing === key && listing.data ? <CompareView safe={safe} safeId={safeId} snapshot={listing.data.snapshot} tree={listing.data.tree} path={path} /> : null}
      {listing.data?.refused.length ? <p className="error" role="alert">{listing.data.refused.length} entries of this folder are refused and not shown: {listing.data.refused.map((r) => r.why).join('; ')}</p> : null}
      {listing.data ? <EntryList entries={listing.data.entries} open={(n) => here([...path, n.name])} onDownload={(n) => void downloadFile(n)} /> : listing.error ? null : <p className="muted">Opening the folder…</p>}
    </>
  );
}

/**
 * The changes of the folder shown and below since the previous snapshot
 * (zk/compare.ts), listed as they are found; leaving the folder stops the
 * comparison.
 */
function CompareView({ safe, safeId, snapshot, tree, path }: { safe: ZkSafe; safeId: string; snapshot: Snapshot; tree: string; path: string[] }) {
  const [state, setState] = useState<{ previous?: Snapshot | null; changes: Change[]; done: boolean; error: string | null }>({ changes: [], done: false, error: null });
  useEffect(() => {
    let live = true;
    setState({ changes: [], done: false, error: null });
    const run = async (): Promise<void> => {
      const previous = previousSnapshot(await safe.snapshots(), snapshot);
      if (!live) return;
      if (previous === undefined) {
        setState({ previous: null, changes: [], done: true, error: null });
        return;
      }
      let before: string | undefined;
      try {
        before = await safe.folderTree(previous, path);
      } catch (e) {
        // The folder is new since the previous snapshot: everything in it was added.
        if (!(e instanceof ZkError) || e instanceof DamagedError) throw e;
      }
      setState((s) => ({ ...s, previous }));
      // Shown in batches: one render per change would make a large comparison quadratic.
      let batch: Change[] = [];
      const flush = (done: boolean): void => {
        const add = batch;
        batch = [];
        setState((s) => ({ ...s, changes: [...s.changes, ...add], done }));
      };
      for await (const c of compareTrees(safe, before, tree, `/${path.map((p) => `${p}/`).join('')}`)) {
        if (!live) return;
        batch.push(c);
        if (batch.length >= 200) flush(false);
      }
      if (live) flush(true);
    };
    run().catch((e: unknown) => live && setState((s) => ({ ...s, done: true, error: describeError(e) })));
    return () => { live = false; };
  }, [safe, snapshot, tree, path.join('/')]);
  const { previous, changes, done, error } = state;
  const counts = (k: Change['kind']): number => changes.filter((c) => c.kind === k).length;
  return (
    <section className="card compare" aria-label="changes since the previous snapshot">
      <h2>Changes since the previous snapshot</h2>
      <ErrorBox error={error} />
      {previous === null ? <p className="notice">This is the first snapshot: there is none before it to compare with.</p> : null}
      {previous ? (
        <p className="muted">
          Compared with <Link to={`/safes/${safeId}/browse/${previous.id}/${path.map((p) => `${encodeURIComponent(p)}/`).join('')}`}>{new Date(previous.time).toLocaleString()}</Link>
          {' '}({previous.id.slice(0, 8)}): {counts('added')} added, {counts('removed')} removed, {counts('changed')} changed{done ? '' : ' so far…'}
        </p>
      ) : null}
      {done && previous && changes.length === 0 ? <p className="notice">Nothing changed in this folder.</p> : null}
      {changes.length > 0 ? (
        <table className="list" aria-label="changes">
          <thead><tr><th>Change</th><th>Path</th><th className="num">Size</th></tr></thead>
          <tbody>
            {changes.map((c) => (
              <tr key={c.path.join('/')} className={`change-${c.kind}`}>
                <td>{c.kind}</td>
                <td><code>{c.path.join('/')}{c.node.type === 'dir' ? '/' : ''}</code></td>
                <td className="num">{c.node.type === 'file' ? formatBytes(c.node.size) : ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}

function EntryList({ entries, open, onDownload }: { entries: TreeNode[]; open: (n: TreeNode) => string; onDownload: (n: TreeNode) => void }) {
  const scroller = useRef<HTMLDivElement>(null);
  const sorted = useMemo(() => [...entries].sort((a, b) => Number(b.type === 'dir') - Number(a.type === 'dir') || (a.name < b.name ? -1 : 1)), [entries]);
  const virtual = useVirtualizer({ count: sorted.length, getScrollElement: () => scroller.current, estimateSize: () => ROW, overscan: 20 });
  if (sorted.length === 0) return <p className="notice">This folder is empty.</p>;
  return (
    <div className="entries" role="table" aria-label="entries" aria-rowcount={sorted.length}>
      <div className="entry-row head" role="row">
        <span role="columnheader">Name</span><span role="columnheader" className="num">Size</span><span role="columnheader" className="wide">Mode</span>
        <span role="columnheader" className="wide">Owner</span><span role="columnheader" className="wide">Modified</span><span role="columnheader" />
      </div>
      <div className="entries-body" ref={scroller}>
        <div style={{ height: virtual.getTotalSize() }} className="entries-space">
          {virtual.getVirtualItems().map((v) => {
            const n = sorted[v.index]!;
            return (
              <div key={n.name} role="row" className="entry-row" style={{ transform: `translateY(${v.start}px)` }}>
                <span role="cell" className="name">{n.type === 'dir' && !n.damaged ? <Link to={open(n)}>{n.name}/</Link> : n.type === 'symlink' ? `${n.name} → ${new TextDecoder().decode(n.target)}` : n.name}{n.damaged ? <em className="warn"> damaged</em> : null}</span>
                <span role="cell" className="num">{n.type === 'file' ? formatBytes(n.size) : ''}</span>
                <span role="cell" className="wide"><code>{modeText(n)}</code></span>
                <span role="cell" className="wide">{n.user ?? n.uid}:{n.group ?? n.gid}</span>
                <span role="cell" className="wide">{new Date(Number(n.mtime / 1_000_000n)).toLocaleString()}</span>
                <span role="cell">{n.type === 'file' && !n.damaged ? <button type="button" className="link" aria-label={`Download ${n.name}`} onClick={() => onDownload(n)}>Download</button> : null}</span>
              </div>
            );
          })}
        </div>
      </div>
    </div>
  );
}


