/**
 * Sizes as users type them: a number of bytes with an optional unit, k, m,
 * g or t (powers of 1024), written as restic takes them ("64k", "2G") or
 * with a byte suffix ("64 KiB", "1MB", "500b"); a fraction is rounded down
 * to whole bytes ("1.5G"). Every size the CLI parses (--exclude-larger-than,
 * --block-size, --read-data-subset) goes through `parseSize`; each option
 * then checks its own range. `formatBytes` writes sizes for people to read.
 */

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** The bytes of "500", "64k", "2G", "64 KiB", "1.5G"; undefined when the text is not a size. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?$/i.exec(text.trim());
  if (!m) return undefined;
  const bytes = Math.floor(Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase()]!);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Bytes for humans: 1.5 GiB, 512 B. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(n)} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`;
}
