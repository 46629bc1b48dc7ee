// The in-memory index scenario (BENCH_SCENARIOS=index): bytes per blob and
// lookups per second of the compact MasterIndex beside a Map of hex ids to
// location objects, the index it replaced (kept here for the comparison):
//
//   node --expose-gc dist/bench/index-memory.js map|compact N    # one measurement, one JSON line
//
// Each measurement runs in a process of its own: heapUsed + arrayBuffers
// after a full GC, before and after adding N blobs (BENCH_INDEX_BLOBS,
// default 2,000,000) in packs of 16 (16 MiB packs of 1 MiB chunks), ids and
// pack names random. Times are CPU seconds of the process (the machine may be
// shared); each lookup is given an id string of its own, as ids decoded from
// trees or sent by workers are (a string's hash, once computed, is cached).

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { UserError } from './corpus.js';
import { MasterIndex, type BlobLocation, type IndexedPack } from '../src/repo/index-file.js';

const BLOBS_PER_PACK = 16;
const LOOKUPS = 500_000;
const ROUNDS = 3;
const KINDS = ['map', 'compact'] as const;
type Kind = (typeof KINDS)[number];

/** One process's measurement. */
export interface IndexMeasurement {
  kind: Kind;
  blobs: number;
  bytesPerBlob: number;
  /** Blobs added per CPU second (loading the index). */
  addsPerSecond: number;
  /** `has` of held ids, of ids not held, and `lookup` of held ids, per CPU second: the median of ROUNDS rounds. */
  hasPerSecond: number;
  hasMissingPerSecond: number;
  lookupsPerSecond: number;
}

/** The index before: one Map of hex ids to location objects, a Set of packs. */
class MapIndex {
  private readonly blobs = new Map<string, BlobLocation>();
  private readonly packs = new Set<string>();

  addPack(p: IndexedPack): void {
    this.packs.add(p.pack);
    for (const b of p.blobs) {
      if (!this.blobs.has(b.id)) this.blobs.set(b.id, { type: b.type, id: b.id, flags: b.flags, offset: b.offset, length: b.length, rawLength: b.rawLength, pack: p.pack });
    }
  }

  has(id: string): boolean {
    return this.blobs.has(id);
  }

  lookup(id: string): BlobLocation | undefined {
    return this.blobs.get(id);
  }
}

/** BENCH_INDEX_BLOBS: how many blobs the index scenario adds (default 2,000,000). */
export function indexBlobs(): number {
  const spec = process.env.BENCH_INDEX_BLOBS ?? '2000000';
  const n = Number(spec);
  if (!Number.isSafeInteger(n) || n < BLOBS_PER_PACK || n > 100_000_000) throw new UserError(`BENCH_INDEX_BLOBS=${spec}: give a blob count from ${BLOBS_PER_PACK} to 100000000`);
  return n;
}

function heapBytes(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
}

/** Measures one kind of index in this process. */
function measure(kind: Kind, blobs: number): IndexMeasurement {
  // The input: ids as one buffer, hex made per pack as an index file's decoder makes it.
  const ids = randomBytes(32 * blobs);
  const packIds = randomBytes(32 * Math.ceil(blobs / BLOBS_PER_PACK));
  const idAt = (i: number): string => ids.toString('hex', 32 * i, 32 * i + 32);
  const before = heapBytes();
  const index = kind === 'map' ? new MapIndex() : new MasterIndex();
  let addSeconds = 0;
  for (let p = 0; p * BLOBS_PER_PACK < blobs; p++) {
    const entries = [];
    for (let i = p * BLOBS_PER_PACK; i < Math.min(blobs, (p + 1) * BLOBS_PER_PACK); i++) {
      entries.push({ id: idAt(i), type: 0, flags: 1, offset: (i % BLOBS_PER_PACK) << 20, length: 900_000, rawLength: 1 << 20 });
    }
    const pack = { pack: packIds.toString('hex', 32 * p, 32 * p + 32), blobs: entries };
    const t = cpuSeconds();
    index.addPack(pack);
    addSeconds += cpuSeconds() - t;
  }
  const bytesPerBlob = (heapBytes() - before) / blobs;
  const rate = (run: (ids: string[]) => number, make: (k: number) => string): number => {
    const rates: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const q = Array.from({ length: LOOKUPS }, (_, k) => make(k + r * LOOKUPS));
      const t = cpuSeconds();
      if (run(q) !== LOOKUPS) throw new Error(`${kind}: lookups gave wrong answers`);
      rates.push(LOOKUPS / (cpuSeconds() - t));
    }
    return median(rates);
  };
  const held = (k: number): string => idAt((k * 7919) % blobs);
  const hasPerSecond = rate((q) => {
    let n = 0;
    for (const id of q) if (index.has(id)) n++;
    return n;
  }, held);
  const hasMissingPerSecond = rate((q) => {
    let n = 0;
    for (const id of q) if (!index.has(id)) n++;
    return n;
  }, () => randomBytes(32).toString('hex'));
  const lookupsPerSecond = rate((q) => {
    let n = 0;
    for (const id of q) if (index.lookup(id)?.rawLength === 1 << 20) n++;
    return n;
  }, held);
  return { kind, blobs, bytesPerBlob, addsPerSecond: blobs / addSeconds, hasPerSecond, hasMissingPerSecond, lookupsPerSecond };
}

/** Runs the scenario: each kind in a process of its own; prints a table. */
export async function runIndexScenario(): Promise<IndexMeasurement[]> {
  const blobs = indexBlobs();
  const self = fileURLToPath(import.meta.url);
  const out: IndexMeasurement[] = [];
  console.log(`\nIn-memory index (BENCH_SCENARIOS=index): ${blobs} random blobs in packs of ${BLOBS_PER_PACK}, each index in a process of its own`);
  for (const kind of KINDS) {
    const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--max-old-space-size=8192', self, kind, String(blobs)], { maxBuffer: 1 << 20 });
    out.push(JSON.parse(stdout) as IndexMeasurement);
  }
  const m = (x: number): string => `${(x / 1e6).toFixed(2)} M/s`;
  console.log(`  ${'index'.padEnd(30)} ${'bytes/blob'.padStart(10)} ${'add'.padStart(10)} ${'has'.padStart(10)} ${'has (absent)'.padStart(12)} ${'lookup'.padStart(10)}`);
  for (const r of out) {
    const name = r.kind === 'map' ? 'before: Map of hex → object' : 'after: MasterIndex (IdTable)';
    console.log(`  ${name.padEnd(30)} ${r.bytesPerBlob.toFixed(1).padStart(10)} ${m(r.addsPerSecond).padStart(10)} ${m(r.hasPerSecond).padStart(10)} ${m(r.hasMissingPerSecond).padStart(12)} ${m(r.lookupsPerSecond).padStart(10)}`);
  }
  console.log('  (heapUsed + arrayBuffers after a full GC, per blob; rates per CPU second, median of 3 rounds of 500,000, each id a fresh string; target ≤ 64 bytes/blob)');
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [kind, n] = process.argv.slice(2);
  if (!KINDS.includes(kind as Kind) || !Number.isSafeInteger(Number(n))) {
    process.stderr.write('usage: index-memory map|compact BLOBS\n');
    process.exit(2);
  }
  process.stdout.write(`${JSON.stringify(measure(kind as Kind, Number(n)))}\n`);
}
