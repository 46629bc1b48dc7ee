/**
 * Ids are 32-byte values (keyed blob ids, SHA-256 object names). In memory
 * and in JSON they travel as 64 lowercase hex characters.
 */
export const ID_BYTES = 32;

/** Lowercase hex of an id. */
export function idHex(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.length).toString('hex');
}

/** True when `s` is 64 lowercase hex characters. */
export function isIdHex(s: unknown): s is string {
  return typeof s === 'string' && /^[0-9a-f]{64}$/.test(s);
}

/** A short, unique-enough form for messages and listings. */
export function shortId(hex: string): string {
  return hex.slice(0, 8);
}
