/**
 * The addon's keyed fingerprint (native/gcm.cc, format §6.1): the Poly1305
 * tag of a ChaCha20-Poly1305 seal of nothing, the data as associated data, a
 * zero nonce, as Node's cipher computes it, for every length and key in turn
 * on the one context a thread keeps.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { native } from '../../src/sources/native.js';

const key = randomBytes(32);

/** Flips one bit of a copy of `b` at `i`. */
function flipped(b: Buffer, i: number): Buffer {
  const c = Buffer.from(b);
  c.writeUInt8(c.readUInt8(i) ^ 1, i);
  return c;
}

describe('fingerprint', () => {
  /** The format's definition (§6.1), through Node's cipher. */
  const reference = (k: Buffer, data: Buffer): Buffer => {
    const c = createCipheriv('chacha20-poly1305', k, Buffer.alloc(12), { authTagLength: 16 });
    c.setAAD(data);
    c.final();
    return c.getAuthTag();
  };

  it('is the Poly1305 tag of sealing nothing with the data as associated data, key after key on one context', () => {
    const keys = [randomBytes(32), randomBytes(32), Buffer.alloc(32)];
    for (const size of [0, 1, 15, 16, 17, 63, 64, 65, 4096, 131_072, 3_000_001]) {
      const data = randomBytes(size);
      for (const k of keys) assert.deepEqual(native.fingerprint(k, data), reference(k, data), `${size} bytes`);
    }
  });

  it('tells apart data that differs in one bit, in length alone, or under another key', () => {
    const data = randomBytes(1000);
    const fp = native.fingerprint(key, data);
    assert.notDeepEqual(native.fingerprint(key, flipped(data, 999)), fp);
    assert.notDeepEqual(native.fingerprint(key, Buffer.concat([data, Buffer.alloc(1)])), fp);
    assert.notDeepEqual(native.fingerprint(flipped(key, 0), data), fp);
    assert.deepEqual(native.fingerprint(key, new Uint8Array(data.buffer, data.byteOffset, data.length)), fp);
  });

  it('refuses a key that is not 32 bytes', () => {
    assert.throws(() => native.fingerprint(key.subarray(0, 31), Buffer.alloc(10)), TypeError);
    assert.throws(() => native.fingerprint(Buffer.alloc(33), Buffer.alloc(10)), TypeError);
  });
});
