/**
 * The headers of the snapshots a client authenticated, kept between its
 * runs. A backup chooses its parent from every snapshot's header, and a
 * snapshot is authenticated only whole: its MAC covers its blob list, which
 * is most of its bytes (3.6 MB for a 20 GiB disk, 64 MB for a terabyte). A
 * client that read them all at every run paid for its whole history each
 * time: 37 snapshots of the 20 GiB bench disk made its incremental 0.7 s
 * longer (docs/decisions.md, "Snapshots read for their header").
 *
 * The records say what a name held when this client authenticated it, not
 * what storage holds now: a backup reads its parent whole before it uses it
 * (`verifiedParent`, src/jobs/snapshots/select.ts).
 *
 *   file    records, then a MAC (32 bytes): HMAC-SHA-256 under
 *           macKey(master, 'snapshot-header') of the repository's id (32
 *           bytes) and the records, so that whoever can write the client's
 *           cache cannot choose a header, nor bring the records of another
 *           repository that shares the master key (`init --copy-from`)
 *   record  id (32 bytes) | length (u32 LE) | header (`snapshotHeaderBytes`)
 *
 * A file whose MAC fails is no records at all: every snapshot is read, and
 * the file written again.
 */
import { MAC_BYTES, mac, macMatches } from '../core/crypto.js';
import { ID_BYTES } from '../core/ids.js';

/** Where a client keeps its records between runs, by repository id; bytes only (the repository makes and checks them). */
export interface SnapshotHeaderStore {
  /** The records saved for the repository, or undefined. */
  load(repositoryId: string): Promise<Buffer | undefined>;
  /** Replaces them; a store that cannot write passes (a lost record costs a read, not a result). */
  save(repositoryId: string, records: Buffer): Promise<void>;
}

/** The largest header recorded: a snapshot's JSON (paths, tags, an image's layout) is a few kilobytes; a larger one is read each time. */
const MAX_HEADER_BYTES = 64 << 10;

/** The file of `headers` (snapshot id as hex → header bytes) for repository `repositoryId`. */
export function encodeHeaderRecords(repositoryId: string, headers: ReadonlyMap<string, Buffer>, key: Buffer): Buffer {
  const parts: Buffer[] = [Buffer.from(repositoryId, 'hex')];
  for (const [id, header] of headers) {
    if (header.length > MAX_HEADER_BYTES) continue;
    const head = Buffer.alloc(ID_BYTES + 4);
    head.write(id, 0, ID_BYTES, 'hex');
    head.writeUInt32LE(header.length, ID_BYTES);
    parts.push(head, header);
  }
  const signed = Buffer.concat(parts);
  return Buffer.concat([signed.subarray(ID_BYTES), mac(key, signed)]);
}

/** The headers in a file `encodeHeaderRecords` made for `repositoryId` under `key`, by snapshot id; none when its MAC fails. */
export function decodeHeaderRecords(repositoryId: string, bytes: Buffer, key: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  if (bytes.length < MAC_BYTES) return out;
  const records = bytes.subarray(0, bytes.length - MAC_BYTES);
  if (!macMatches(key, Buffer.concat([Buffer.from(repositoryId, 'hex'), records]), bytes.subarray(records.length))) return out;
  for (let at = 0; at < records.length;) {
    if (at + ID_BYTES + 4 > records.length) return new Map();
    const length = records.readUInt32LE(at + ID_BYTES);
    const end = at + ID_BYTES + 4 + length;
    if (length > MAX_HEADER_BYTES || end > records.length) return new Map();
    // A copy: the file's buffer is not kept.
    out.set(records.toString('hex', at, at + ID_BYTES), Buffer.from(records.subarray(at + ID_BYTES + 4, end)));
    at = end;
  }
  return out;
}
