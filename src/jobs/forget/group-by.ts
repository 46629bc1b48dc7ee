/**
 * Grouping snapshots before a retention policy is applied to each group
 * (restic's `--group-by`): by host, by the set of paths, by the set of tags,
 * any combination, or not at all (""). The default is host and paths, so the
 * backups of /etc and of /home on one host age independently.
 */

export interface GroupBy {
  readonly host: boolean;
  readonly paths: boolean;
  readonly tags: boolean;
}

export const DEFAULT_GROUP_BY: GroupBy = { host: true, paths: true, tags: false };

/** Parses "host,paths,tags" (singular forms too); "" means one group for everything. */
export function parseGroupBy(s: string): GroupBy {
  const g = { host: false, paths: false, tags: false };
  for (const part of s.split(',').map((p) => p.trim())) {
    if (part === 'host' || part === 'hosts') g.host = true;
    else if (part === 'path' || part === 'paths') g.paths = true;
    else if (part === 'tag' || part === 'tags') g.tags = true;
    else if (part !== '') throw new Error(`unknown grouping "${part}": use host, paths and/or tags, separated by commas`);
  }
  return g;
}

/** What the snapshots of a group share; `null` for what is not grouped on. */
export interface GroupKey {
  readonly hostname: string | null;
  readonly paths: readonly string[] | null;
  readonly tags: readonly string[] | null;
}

export interface SnapshotGroup<T> {
  readonly key: GroupKey;
  readonly items: T[];
}

interface Groupable {
  readonly snapshot: { readonly hostname: string; readonly paths: readonly string[]; readonly tags: readonly string[] };
}

/** Splits `list` into groups, in a stable order (sorted by key). */
export function groupSnapshots<T extends Groupable>(list: readonly T[], by: GroupBy): SnapshotGroup<T>[] {
  const groups = new Map<string, SnapshotGroup<T>>();
  for (const item of list) {
    const s = item.snapshot;
    const key: GroupKey = {
      hostname: by.host ? s.hostname : null,
      paths: by.paths ? [...s.paths].sort() : null,
      tags: by.tags ? [...s.tags].sort() : null,
    };
    const k = JSON.stringify(key);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { key, items: [] }));
    g.items.push(item);
  }
  return [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, g]) => g);
}

/** "host vm, paths /etc /home, tags daily" for a group header. */
export function describeGroup(k: GroupKey): string {
  const parts: string[] = [];
  if (k.hostname !== null) parts.push(`host ${k.hostname}`);
  if (k.paths !== null) parts.push(`paths ${k.paths.join(' ') || '(none)'}`);
  if (k.tags !== null) parts.push(`tags ${k.tags.join(',') || '(none)'}`);
  return parts.length === 0 ? 'all snapshots' : parts.join(', ');
}
