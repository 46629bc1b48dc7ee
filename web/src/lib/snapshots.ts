/**
 * A machine's snapshots as the machine page and the restore wizard show
 * them, from the server's snapshot index (GET /machines/ID/snapshots): the
 * time, the bytes the snapshot holds and the bytes its backup added, and
 * whether the server flags it unauthentic (planted without the key).
 * Plain TypeScript.
 */

/** The fields of the index's SnapshotBody the points need. */
export interface IndexedSnapshot {
  readonly id: string;
  readonly time: string;
  readonly image: boolean;
  readonly incomplete: boolean;
  readonly paths: readonly string[];
  readonly summary: Record<string, number | string>;
  readonly unauthentic?: boolean;
}

export interface SnapshotPoint {
  readonly id: string;
  readonly time: string;
  /** Bytes the snapshot holds (its files' or image's size), null when its summary does not say. */
  readonly size: number | null;
  /** Bytes its backup added to the disk safe (what changed, before compression), null when not said. */
  readonly added: number | null;
  readonly files: number | null;
  readonly image: boolean;
  readonly incomplete: boolean;
  readonly paths: readonly string[];
  /** The machine's agent found it failing its MAC: never a restore source without a warning. */
  readonly unauthentic: boolean;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** The points of `snapshots` (any order), oldest first. */
export function snapshotPoints(snapshots: readonly IndexedSnapshot[]): SnapshotPoint[] {
  return snapshots.map((s): SnapshotPoint => {
    const files = ['files_new', 'files_changed', 'files_unchanged'].map((k) => num(s.summary[k]));
    return {
      id: s.id, time: s.time, image: s.image, incomplete: s.incomplete, paths: s.paths, unauthentic: s.unauthentic === true,
      size: num(s.summary['total_bytes']), added: num(s.summary['data_added']),
      files: files.every((f) => f === null) ? null : files.reduce<number>((a, f) => a + (f ?? 0), 0),
    };
  }).sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
}

/** The snapshot a restore offers first among `snapshots` (newest first): the newest not flagged unauthentic, else `latest`. */
export function defaultRestoreSource(snapshots: readonly SnapshotPoint[]): string {
  return snapshots.find((s) => !s.unauthentic)?.id ?? 'latest';
}
