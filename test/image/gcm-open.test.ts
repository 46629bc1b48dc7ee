/**
 * The image restore's AES-256-GCM open by the addon (native/mapscan.cc
 * `gcmOpen`): it opens what crypto.ts `seal` sealed, as `open` does, into
 * the start of a buffer it is given and reuses for blocks of every size;
 * any change to the nonce, ciphertext, tag, key or associated data, and
 * bytes too short to be sealed, fail authentication (-1) as they make
 * `open` throw; an output buffer too small is refused before anything is
 * written.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { native } from '../../src/sources/native.js';
import { AuthenticationError, NONCE_BYTES, SEAL_OVERHEAD, open, seal } from '../../src/core/crypto.js';

const key = randomBytes(32);
const aad = Buffer.from('holdfast block aad');

/** Flips one bit of a copy of `b` at `i`. */
function flipped(b: Buffer, i: number): Buffer {
  const c = Buffer.from(b);
  c.writeUInt8(c.readUInt8(i) ^ 1, i);
  return c;
}

describe('gcmOpen', () => {
  it('opens what seal sealed, as open does, into one reused buffer', () => {
    const out = Buffer.alloc(200_000, 0xaa);
    for (const size of [0, 1, 15, 16, 17, 4096, 131_072, 25_000, 3]) {
      const plain = randomBytes(size);
      const sealed = seal(key, plain, aad);
      assert.equal(native.gcmOpen(key, sealed, aad, out), size);
      assert.deepEqual(out.subarray(0, size), plain);
      assert.deepEqual(open(key, sealed, aad, 'x'), plain);
    }
  });

  it('fails authentication where open does', () => {
    const plain = randomBytes(5000);
    const sealed = seal(key, plain, aad);
    const out = Buffer.alloc(plain.length);
    const bad: [string, Buffer, Buffer, Buffer][] = [
      ['nonce', flipped(sealed, 0), key, aad],
      ['ciphertext', flipped(sealed, NONCE_BYTES + 100), key, aad],
      ['tag', flipped(sealed, sealed.length - 1), key, aad],
      ['key', sealed, flipped(key, 7), aad],
      ['associated data', sealed, key, flipped(aad, 3)],
      ['no associated data', sealed, key, Buffer.alloc(0)],
      ['cut short', sealed.subarray(0, sealed.length - 1), key, aad],
      ['shorter than nonce and tag', sealed.subarray(0, SEAL_OVERHEAD - 1), key, aad],
    ];
    for (const [what, s, k, a] of bad) {
      assert.equal(native.gcmOpen(k, s, a, out), -1, what);
      assert.throws(() => open(k, s, a, what), AuthenticationError, what);
    }
    // The thread's context is still good after failures.
    assert.equal(native.gcmOpen(key, sealed, aad, out), plain.length);
    assert.deepEqual(out, plain);
  });

  it('refuses an output buffer too small for the plaintext, writing nothing', () => {
    const sealed = seal(key, randomBytes(100), aad);
    const out = Buffer.alloc(99, 0x55);
    assert.throws(() => native.gcmOpen(key, sealed, aad, out), RangeError);
    assert.ok(out.every((x) => x === 0x55));
    assert.throws(() => native.gcmOpen(key.subarray(0, 16), sealed, aad, Buffer.alloc(100)), RangeError);
  });
});
