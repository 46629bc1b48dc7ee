/**
 * The headers of the snapshots a client authenticated, kept between its
 * runs. A backup chooses its parent from every snapshot's header, and a
 * snapshot is authenticated only whole: its MAC covers its blob list, which
 * is most of its bytes (3.6 MB for a 20 GiB disk, 64 MB for a terabyte). A
 * client that read them all at every run paid for its whole history each
 * time: 37 snapshots of the 20 GiB bench disk made its incremental 0.7 s
 * longer (docs/decisions.md, "Snapshots read for their header").
 *
 * A record holds what the client authenticated, under a key of its own from
 * the master key, so that whoever can write the client's cache (or storage)
 * cannot choose a header; the name of a snapshot is the SHA-256 of its
 * bytes, so a header recorded for a name stays that snapshot's header.
 *
 *   record  id (32 bytes) | length (u32 LE) | header (`snapshotHeaderBytes`)
 *           | MAC (32 bytes): HMAC-SHA-256 under macKey(master,
 *           'snapshot-header') of id | length | header
 *
 * Where the records are kept is the client's (`SnapshotHeaderStore`; the
 * CLI: a file in its cache). A record whose MAC fails, or that does not
 * decode, is left out, and its snapshot is read again.
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

/** The largest header a record holds: a snapshot's JSON (paths, tags, an image's layout) is a few kilobytes. */
const MAX_HEADER_BYTES = 1 << 20;

/** Records of `headers` (snapshot id as hex → header bytes). */
export function encodeHeaderRecords(headers: ReadonlyMap<string, Buffer>, key: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (const [id, header] of headers) {
    const head = Buffer.alloc(ID_BYTES + 4);
    head.write(id, 0, ID_BYTES, 'hex');
    head.writeUInt32LE(header.length, ID_BYTES);
    const body = Buffer.concat([head, header]);
    parts.push(body, mac(key, body));
  }
  return Buffer.concat(parts);
}

/** The headers of the records in `bytes` whose MAC holds under `key`, by snapshot id; reading stops at the first record cut short. */
export function decodeHeaderRecords(bytes: Buffer, key: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (let at = 0; at + ID_BYTES + 4 <= bytes.length;) {
    const length = bytes.readUInt32LE(at + ID_BYTES);
    const end = at + ID_BYTES + 4 + length;
    if (length > MAX_HEADER_BYTES || end + MAC_BYTES > bytes.length) break;
    const body = bytes.subarray(at, end);
    // A copy: the records' buffer is not kept.
    if (macMatches(key, body, bytes.subarray(end, end + MAC_BYTES))) out.set(body.toString('hex', 0, ID_BYTES), Buffer.from(body.subarray(ID_BYTES + 4)));
    at = end + MAC_BYTES;
  }
  return out;
}
