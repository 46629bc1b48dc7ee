/**
 * What every backup, of files or of an image, records about where and when
 * it ran: the same options and the same snapshot fields for both.
 */
import { hostname as osHostname, userInfo } from 'node:os';
import type { Snapshot } from '../repo/snapshot.js';

/** The options of a backup that end up in its snapshot's header. */
export interface SnapshotOrigin {
  readonly tags?: readonly string[];
  readonly hostname?: string;
  readonly time?: Date;
  /** The parent snapshot; none when undefined or null. */
  readonly parent?: { id: string; snapshot: Snapshot } | null;
}

/**
 * The header fields of a snapshot of `paths` started at `start`, with
 * `parent` (an id) recorded, in the order docs/format.md §4.5 writes them.
 */
export function snapshotHeader(o: SnapshotOrigin, start: Date, parent: string | undefined, paths: readonly string[]): Pick<Snapshot, 'time' | 'hostname' | 'username' | 'paths' | 'tags' | 'parent'> {
  let username = 'unknown';
  try {
    username = userInfo().username;
  } catch {
    // no passwd entry for this uid
  }
  return {
    time: (o.time ?? start).toISOString(),
    hostname: o.hostname ?? osHostname(),
    username,
    paths: [...paths],
    tags: [...(o.tags ?? [])],
    ...(parent ? { parent } : {}),
  };
}
