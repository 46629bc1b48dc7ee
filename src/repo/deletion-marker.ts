/**
 * Pending-deletion markers (`deletions/<sha256>`): what phase 1 of a prune
 * condemns, and what phase 2 of a later prune may delete once the grace
 * period has passed (docs/format.md §15). Plain, like index files:
 *
 *   "HFDL" || u8 version (1) || u32 LE J || JSON {"time","hostname"} (J bytes) || index file (§4.4)
 *
 * The embedded index file lists every condemned pack with every blob it
 * holds, so the marker alone says what those packs held even after the index
 * files naming them are gone; its superseded ids are the index files that
 * phase 2 removes together with the packs.
 *
 * While a marker exists, writers do not deduplicate against the blobs of its
 * packs (they upload them again), readers still read them, and a backup that
 * references one copies it into a pack of its own before it writes its
 * snapshot (`snapshot-fence.ts`).
 */
import { hostname } from 'node:os';
import { ByteReader, asRecord, parseJson } from './binary.js';
import { CorruptObjectError, UnsupportedVersionError } from './errors.js';
import { decodeIndex, encodeIndex, type IndexedPack } from './index-file.js';

export const MARKER_VERSION = 1;
const MAGIC = 'HFDL';

/** One pending-deletion marker. */
export interface DeletionMarker {
  /** When phase 1 wrote it (ISO time, the pruning host's clock); the grace period counts from here. */
  readonly time: string;
  /** Host that wrote it (informational). */
  readonly hostname: string;
  /** The condemned packs, each with every blob it holds. */
  readonly packs: readonly IndexedPack[];
  /** Index files to remove once the packs are gone (their live content is in other index files). */
  readonly indexes: readonly string[];
}

/** A new marker stamped now. */
export function newMarker(packs: readonly IndexedPack[], indexes: readonly string[], now = new Date()): DeletionMarker {
  return { time: now.toISOString(), hostname: hostname(), packs, indexes };
}

export function encodeMarker(m: DeletionMarker): Buffer {
  const json = Buffer.from(JSON.stringify({ time: m.time, hostname: m.hostname }), 'utf8');
  const head = Buffer.alloc(9);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt8(MARKER_VERSION, 4);
  head.writeUInt32LE(json.length, 5);
  return Buffer.concat([head, json, encodeIndex({ packs: m.packs, supersedes: m.indexes })]);
}

export function decodeMarker(bytes: Buffer, what: string): DeletionMarker {
  const r = new ByteReader(bytes, what);
  r.magic(MAGIC);
  const version = r.u8('version');
  if (version !== MARKER_VERSION) throw new UnsupportedVersionError(what, version, MARKER_VERSION);
  const o = asRecord(parseJson(r.bytes(r.u32('json length'), 'json'), what), what);
  const time = o['time'];
  if (typeof time !== 'string' || Number.isNaN(Date.parse(time))) throw new CorruptObjectError(what, 'bad time');
  const host = typeof o['hostname'] === 'string' ? o['hostname'] : '';
  const f = decodeIndex(r.bytes(r.remaining, 'index'), what);
  return { time, hostname: host, packs: f.packs, indexes: f.supersedes };
}

/** Condemned pack → its blobs, over all markers. */
export function condemnedPacks(markers: Iterable<DeletionMarker>): Map<string, IndexedPack> {
  const out = new Map<string, IndexedPack>();
  for (const m of markers) for (const p of m.packs) if (!out.has(p.pack)) out.set(p.pack, p);
  return out;
}

// ---- the grace period ----

/** Default grace period between marking and deleting: one hour. */
export const DEFAULT_GRACE_MS = 60 * 60_000;
/**
 * The shortest grace period a prune accepts: 10 minutes. Backups rely on it
 * (see `commitWindowMs`); a process may lower it for tests, for the prunes
 * and the writers alike (`OpenOptions.minGraceMs`, `PruneOptions.minGraceMs`).
 */
export const DEFAULT_MIN_GRACE_MS = 10 * 60_000;

/**
 * The longest a snapshot commit may take from its last look at the markers
 * to the snapshot being durable: half the minimum grace period. A commit
 * that takes longer removes its snapshot and starts over (docs/format.md §15.4).
 */
export function commitWindowMs(minGraceMs = DEFAULT_MIN_GRACE_MS): number {
  return minGraceMs / 2;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "90s", "10m", "1h30m", "2d", "500ms" or "0" into milliseconds. */
export function parseDuration(s: string): number {
  const t = s.trim();
  if (t === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    end = re.lastIndex;
  }
  if (t === '' || end !== t.length) throw new Error(`bad duration "${s}": use a number with a unit, e.g. 90s, 10m, 1h30m, 2d`);
  return total;
}

/** Milliseconds for humans: "1h 30m", "45s". */
export function formatDurationMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.round(ms / 1000);
  const parts: string[] = [];
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d) parts.push(`${d}d`);
  if (h) parts.push(`${h}h`);
  if (m) parts.push(`${m}m`);
  if (sec && !d) parts.push(`${sec}s`);
  return parts.join(' ');
}
