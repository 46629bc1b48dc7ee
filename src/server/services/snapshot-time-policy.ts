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
 * The newest stored snapshot of the group comes from the caller
 * (`NewestOfGroup`): the server asks its snapshot index (snapshot-index.ts
 * `newestOfGroup`, one indexed query), where this rule read and decoded
 * every stored snapshot at each upload.
 */
import { createHash } from 'node:crypto';

import { decodeSnapshot } from '../../repo/snapshot.js';
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

/** The newest stored snapshot of a group. */
export interface NewestSnapshot {
  readonly id: string;
  /** Its time, in ms since the epoch. */
  readonly time: number;
}

/**
 * Finds the newest snapshot stored in the safe of group `groupKey`
 * (`snapshotGroupKey`), or undefined when it holds none. Every stored
 * snapshot that can be read counts, whoever stored it; one that cannot be
 * read (damaged, or not a snapshot) does not.
 */
export type NewestOfGroup = (groupKey: string, signal?: AbortSignal) => Promise<NewestSnapshot | undefined>;

/**
 * Throws `UploadRefusedError` (`SNAPSHOT_BACKDATED`, or `BAD_SNAPSHOT` for
 * bytes that are not a snapshot) when the snapshot `bytes` may not be added
 * to the safe whose newest snapshot of each group `newestOf` finds; see the
 * module comment. A host or user name with a NUL is `BAD_SNAPSHOT` too.
 */
export async function refuseBackdatedSnapshot(newestOf: NewestOfGroup, bytes: Buffer, opts: SnapshotTimeOptions = {}): Promise<void> {
  let time: number;
  let group: string;
  try {
    const s = decodeSnapshot(bytes, 'the uploaded snapshot', { blobList: false });
    // The index keeps these as text, which PostgreSQL's cannot hold with a NUL: stored, the snapshot would be missing from the index (the rest is kept as JSON, escaped).
    if (s.hostname.includes('\0') || s.username.includes('\0')) throw new Error('a NUL character in its host or user name');
    time = Date.parse(s.time);
    group = snapshotGroupKey(s.hostname, s.paths);
  } catch (e) {
    throw new UploadRefusedError(400, 'BAD_SNAPSHOT', `not a snapshot this server reads: ${(e as Error).message}`);
  }
  const now = opts.now ?? Date.now();
  const maxSkew = opts.maxSkewMs ?? DEFAULT_MAX_SNAPSHOT_SKEW_MS;
  if (Math.abs(time - now) > maxSkew) {
    throw new UploadRefusedError(403, 'SNAPSHOT_BACKDATED', `the snapshot's time ${new Date(time).toISOString()} is more than `
      + `${Math.round(maxSkew / 1000)} s from the server's clock (${new Date(now).toISOString()}); check the client's clock`);
  }
  const newest = await newestOf(group, opts.signal);
  opts.signal?.throwIfAborted();
  // Within the skew of the newest, a snapshot is not backdated: else one planted a few minutes ahead (allowed by the skew) would refuse every genuine backup until its time came, again and again.
  if (newest !== undefined && time < newest.time - maxSkew) {
    throw new UploadRefusedError(403, 'SNAPSHOT_BACKDATED', `the snapshot's time ${new Date(time).toISOString()} is earlier than `
      + `snapshot ${newest.id.slice(0, 8)} of the same host and paths (${new Date(newest.time).toISOString()}); the server refuses backdated snapshots`);
  }
}

/**
 * The key of the group a snapshot belongs to for this rule, its host name
 * and its paths in any order: the SHA-256 (hex) of the JSON of the host name
 * and the sorted paths, of one length whatever the paths, for the index to
 * hold (snapshot_index.group_key, migration 0023, which computed the key of
 * the rows before it: a change here needs a migration that computes them
 * again).
 */
export function snapshotGroupKey(hostname: string, paths: readonly string[]): string {
  return createHash('sha256').update(JSON.stringify([hostname, [...paths].sort()])).digest('hex');
}
