/**
 * The folder-scan worker of file backups (see `DirScanner`): walks the tree
 * below each folder it is sent, depth-first in name order, and posts each
 * folder's listing, waiting whenever it is `held` entries ahead of the walk,
 * and then the end of that walk, also when the walk stopped it: a scanner
 * kept between backups waits for that end before the next backup's walk.
 */
import { workerData } from 'node:worker_threads';
import { FolderEntries, childPath, listDirStats } from '../../sources/file-tree.js';
import { ExcludeRules } from './excludes.js';
import { Counter, SCAN_PATH_LIMIT, type ScanMessage, type ScanRequest, type ScanWorkerData } from './dir-scanner.js';

const { port, counters: shared, held } = workerData as ScanWorkerData;
const counters = new Int32Array(shared);
/** Entries posted (modulo 2^32, as the walk counts what it took). */
let posted = 0;

const post = (m: ScanMessage, transfer: ArrayBuffer[] = []): void => {
  port.postMessage(m, transfer);
  Atomics.add(counters, Counter.Posted, 1);
  Atomics.notify(counters, Counter.Posted);
};

/** Waits while the walk is far behind; false once it has stopped. */
function caughtUp(): boolean {
  for (;;) {
    if (Atomics.load(counters, Counter.Stop) === 1) return false;
    const taken = Atomics.load(counters, Counter.Taken);
    if (((posted - taken) | 0) < held) return true;
    Atomics.wait(counters, Counter.Taken, taken);
  }
}

/** Lists `dir` and the folders below it, entering none `excludes` leaves out; false once the walk has stopped. */
function walk(dir: Buffer, devices: ReadonlySet<bigint> | undefined, excludes: ExcludeRules): boolean {
  if (!caughtUp()) return false;
  const listing = listDirStats(dir);
  if ('error' in listing) {
    post({ dir: dir.toString('latin1'), listing });
    return true;
  }
  // Read before the arrays are transferred.
  const below: Buffer[] = [];
  const entries = new FolderEntries(listing);
  // The walk's rules: a tagged folder keeps only its tag file, an excluded folder is not entered.
  const kept = excludes.keptIn(dir, entries.length, (i) => entries.name(i));
  for (let i = 0; i < entries.length; i++) {
    // A failed lstat left zeros: no type, so never a folder.
    if (entries.type(i) !== 'dir' || (devices && !devices.has(entries.device(i))) || (kept && !kept(entries.name(i)))) continue;
    const path = childPath(dir, entries.name(i));
    if (path.length < SCAN_PATH_LIMIT && !excludes.excludesPath(path)) below.push(path);
  }
  posted = (posted + listing.ends.length) | 0;
  post({ dir: dir.toString('latin1'), listing }, [listing.names.buffer, listing.ends.buffer, listing.fields.buffer] as ArrayBuffer[]);
  for (const d of below) if (!walk(d, devices, excludes)) return false;
  return true;
}

port.on('message', (r: ScanRequest) => {
  const dir = Buffer.from(r.dir.buffer, r.dir.byteOffset, r.dir.byteLength);
  walk(dir, r.devices ? new Set(r.devices) : undefined, new ExcludeRules(r.excludes));
  post({ done: true });
});
