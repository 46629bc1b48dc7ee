/** Sizes as people type them ("500 GiB", "2T", "1.5 TB") and back. Plain TypeScript. */

const FACTORS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1000, kib: 1024,
  m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
  p: 1024 ** 5, pb: 1000 ** 5, pib: 1024 ** 5,
};

/** Bytes of a size text; '' is null (no quota); throws an Error in words for anything else. */
export function parseSize(text: string): number | null {
  const t = text.trim();
  if (!t) return null;
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)$/.exec(t);
  const factor = m ? FACTORS[m[2]!.toLowerCase()] : undefined;
  if (!m || factor === undefined) throw new Error(`"${t}" is not a size: write a number and a unit, such as 500 GiB or 2 TB`);
  const bytes = Math.round(Number(m[1]) * factor);
  if (bytes < 1) throw new Error(`"${t}" is less than a byte`);
  return bytes;
}
