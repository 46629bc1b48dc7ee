/**
 * The server's refusal of backdated snapshots (rest-server issue 292): a
 * client that can only add must not be able to add a snapshot whose time
 * would push genuine ones out of a count-based retention policy. The server's
 * own clock and the snapshots already stored are the authority:
 *
 *   the new snapshot's time (its plain JSON, readable without the key,
 *   docs/format.md §4.5) must be
 *     within `maxSkewMs` of the server's clock, and
 *     no earlier than the newest stored snapshot of its group
 *     (same host name and the same paths), less the same skew (a
 *     snapshot planted a few minutes ahead must not refuse the genuine
 *     backups that follow it)
 *
 * The repository protocol calls it through `SafeAccess.beforeCommit`
 * (src/server/http/repo-routes.ts) for each snapshot upload, after the
 * upload's bytes were checked against its name and before it is stored.
 */
import type { Backend } from '../../storage/backend.js';
import { decodeSnapshot } from '../../repo/snapshot.js';
import { Store } from '../../repo/store.js';
import { UploadRefusedError } from './upload-refused-error.js';

/** How far a new snapshot's time may be from the server's clock, either way, by default: 5 minutes. */
export const DEFAULT_MAX_SNAPSHOT_SKEW_MS = 5 * 60_000;

/** What `refuseBackdatedSnapshot` compares against. */
export interface SnapshotTimeOptions {
  /** The server's clock, in ms since the epoch (tests pass their own). */
  readonly now?: number;
  /** The largest distance allowed between the snapshot's time and `now`. */
  readonly maxSkewMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * Throws `UploadRefusedError` (`SNAPSHOT_BACKDATED`, or `BAD_SNAPSHOT` for
 * bytes that are not a snapshot) when the snapshot `bytes` may not be added
 * to the repository at `backend`; see the module comment. Reads every stored
 * snapshot's plain part; ones that cannot be read do not count.
 */
export async function refuseBackdatedSnapshot(backend: Backend, bytes: Buffer, opts: SnapshotTimeOptions = {}): Promise<void> {
  let time: number;
  let group: string;
  try {
    const s = decodeSnapshot(bytes, 'the uploaded snapshot');
    time = Date.parse(s.time);
    group = groupOf(s.hostname, s.paths);
  } catch (e) {
    throw new UploadRefusedError(400, 'BAD_SNAPSHOT', `not a snapshot this server reads: ${(e as Error).message}`);
  }
  const now = opts.now ?? Date.now();
  const maxSkew = opts.maxSkewMs ?? DEFAULT_MAX_SNAPSHOT_SKEW_MS;
  if (Math.abs(time - now) > maxSkew) {
    throw new UploadRefusedError(403, 'SNAPSHOT_BACKDATED', `the snapshot's time ${new Date(time).toISOString()} is more than `
      + `${Math.round(maxSkew / 1000)} s from the server's clock (${new Date(now).toISOString()}); check the client's clock`);
  }
  const store = await Store.open(backend);
  const { ok } = await store.listSnapshots();
  opts.signal?.throwIfAborted();
  let newest: { id: string; time: number } | undefined;
  for (const { id, snapshot } of ok) {
    if (groupOf(snapshot.hostname, snapshot.paths) !== group) continue;
    const t = Date.parse(snapshot.time);
    if (newest === undefined || t > newest.time) newest = { id, time: t };
  }
  // Within the skew of the newest, a snapshot is not backdated: else one planted a few minutes ahead (allowed by the skew) would refuse every genuine backup until its time came, again and again.
  if (newest !== undefined && time < newest.time - maxSkew) {
    throw new UploadRefusedError(403, 'SNAPSHOT_BACKDATED', `the snapshot's time ${new Date(time).toISOString()} is earlier than `
      + `snapshot ${newest.id.slice(0, 8)} of the same host and paths (${new Date(newest.time).toISOString()}); the server refuses backdated snapshots`);
  }
}

/** The group a snapshot belongs to for this rule: host name and paths. */
function groupOf(hostname: string, paths: readonly string[]): string {
  return JSON.stringify([hostname, [...paths].sort()]);
}
