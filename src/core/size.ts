/**
 * Sizes as users type them, restic's way: a whole number of bytes with an
 * optional unit, k/K, m/M, g/G or t/T (powers of 1024), or b/B for bytes.
 */

/** Bytes per unit letter (lower case; '' and b are bytes), for every size the CLI parses. */
export const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** The bytes of "500", "64k", "2G"; undefined when the text is not a size. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+)([bkmgt]?)$/i.exec(text.trim());
  if (!m) return undefined;
  const bytes = Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}
