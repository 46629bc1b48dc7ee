/**
 * Which packs `check --read-data-subset` reads:
 *
 *   n/t     the n-th of t buckets; a pack is in bucket (first 4 bytes of its id as u32) mod t + 1.
 *           Pack ids are SHA-256, so buckets are even, and running 1/t … t/t
 *           (one a day, say) reads the whole repository once per t runs.
 *   x%      a random x percent of the packs (rounded up), different each run
 *   SIZE    random packs until SIZE bytes (K, M, G, T: powers of 1024) would be exceeded
 */
import { parseSize } from '../../core/size.js';

/** A choice of packs to read. */
export type DataSelection =
  | { readonly kind: 'all' }
  | { readonly kind: 'bucket'; readonly n: number; readonly of: number }
  | { readonly kind: 'fraction'; readonly fraction: number }
  | { readonly kind: 'bytes'; readonly bytes: number };


/** Parses "n/t", "x%" or "SIZE"; throws with a usage message otherwise. */
export function parseSubset(s: string): DataSelection {
  const t = s.trim();
  let m = /^(\d+)\/(\d+)$/.exec(t);
  if (m) {
    const n = Number(m[1]);
    const of = Number(m[2]);
    if (!(of >= 1 && n >= 1 && n <= of)) throw new Error(`bad subset "${s}": n/t needs 1 ≤ n ≤ t`);
    return { kind: 'bucket', n, of };
  }
  m = /^(\d+(?:\.\d+)?)%$/.exec(t);
  if (m) {
    const p = Number(m[1]);
    if (!(p > 0 && p <= 100)) throw new Error(`bad subset "${s}": a percentage must be above 0 and at most 100`);
    return { kind: 'fraction', fraction: p / 100 };
  }
  const bytes = parseSize(t);
  if (bytes !== undefined) {
    if (bytes <= 0) throw new Error(`bad subset "${s}": the size must be positive`);
    return { kind: 'bytes', bytes };
  }
  throw new Error(`bad subset "${s}": use n/t (e.g. 1/7), a percentage (e.g. 10%) or a size (e.g. 500M, 2G)`);
}

/** The bucket (1-based) of a pack among `of`. */
export function bucketOf(pack: string, of: number): number {
  return (parseInt(pack.slice(0, 8), 16) % of) + 1;
}

/** Picks packs (name → size) according to `sel`; `random` returns [0, 1). */
export function selectPacks(packs: ReadonlyMap<string, number>, sel: DataSelection, random: () => number = Math.random): string[] {
  const names = [...packs.keys()].sort();
  switch (sel.kind) {
    case 'all':
      return names;
    case 'bucket':
      return names.filter((p) => bucketOf(p, sel.of) === sel.n);
    case 'fraction':
      return shuffle(names, random).slice(0, Math.ceil(names.length * sel.fraction));
    case 'bytes': {
      const out: string[] = [];
      let total = 0;
      for (const p of shuffle(names, random)) {
        const size = packs.get(p)!;
        if (total + size > sel.bytes) continue;
        out.push(p);
        total += size;
      }
      return out;
    }
  }
}

function shuffle<T>(a: T[], random: () => number): T[] {
  const out = [...a];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
