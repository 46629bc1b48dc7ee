/**
 * crypto.ts `seal` and `open` are the format's AES-256-GCM (nonce || ciphertext
 * || tag) by the addon (native/gcm.cc), checked against Node's own cipher as
 * the reference: what Node's cipher sealed opens (every object stored before
 * the addon did the sealing), what `seal` makes Node's cipher opens, with the
 * nonce `seal` drew. Into a caller's buffer, at any offset and reused for
 * every size, nothing is written past the result, and a buffer too small is
 * refused before anything is written, as is one overlapping the input; a
 * failed open zeroes the room it was given. Any change to the nonce, ciphertext,
 * tag, key or associated data fails authentication, and the thread's context
 * stays good after failures. `reusingOpener` opens blob after blob into one
 * buffer.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { AuthenticationError, NONCE_BYTES, SEAL_OVERHEAD, TAG_BYTES, open, seal } from '../../src/core/crypto.js';
import { reusingOpener } from '../../src/repo/blob-codec.js';

const key = randomBytes(32);
const aad = Buffer.from('holdfast blob aad');
const SIZES = [0, 1, 15, 16, 17, 4095, 4096, 25_000, 131_072, 1_048_577, 3];

/** Node's AES-256-GCM in the format's layout. */
function nodeSeal(k: Buffer, nonce: Buffer, plain: Buffer, a: Buffer): Buffer {
  const c = createCipheriv('aes-256-gcm', k, nonce).setAAD(a);
  return Buffer.concat([nonce, c.update(plain), c.final(), c.getAuthTag()]);
}

function nodeOpen(k: Buffer, sealed: Buffer, a: Buffer): Buffer {
  const d = createDecipheriv('aes-256-gcm', k, sealed.subarray(0, NONCE_BYTES)).setAAD(a);
  d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  return Buffer.concat([d.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)), d.final()]);
}

/** Flips one bit of a copy of `b` at `i`. */
function flipped(b: Buffer, i: number): Buffer {
  const c = Buffer.from(b);
  c.writeUInt8(c.readUInt8(i) ^ 1, i);
  return c;
}

describe('seal and open against Node\'s AES-256-GCM', () => {
  it('opens what Node\'s cipher sealed, and Node\'s cipher opens what seal made, byte for byte under its nonce', () => {
    for (const size of SIZES) {
      const plain = randomBytes(size);
      const byNode = nodeSeal(key, randomBytes(NONCE_BYTES), plain, aad);
      assert.deepEqual(open(key, byNode, aad, 'x'), plain, `${size} bytes sealed by Node`);
      const sealed = seal(key, plain, aad);
      assert.equal(sealed.length, size + SEAL_OVERHEAD);
      assert.deepEqual(nodeOpen(key, sealed, aad), plain, `${size} bytes sealed by seal`);
      assert.deepEqual(sealed, nodeSeal(key, sealed.subarray(0, NONCE_BYTES), plain, aad), `${size} bytes: the same bytes as Node's under that nonce`);
    }
  });

  it('opens a plaintext into a buffer of its own, which a caller may transfer', () => {
    const opened = open(key, seal(key, randomBytes(100), aad), aad, 'x');
    assert.equal(opened.byteOffset, 0);
    assert.equal(opened.buffer.byteLength, 100);
  });

  it('seals and opens into a caller\'s buffer at any offset, reused for every size, writing nothing past the result', () => {
    const sealing = Buffer.alloc(2_500_000, 0xaa);
    const opening = Buffer.alloc(1_100_000, 0xbb);
    let at = 0;
    for (const size of SIZES) {
      const plain = randomBytes(size);
      const sealed = seal(key, plain, aad, sealing.subarray(at));
      assert.equal(sealed.length, size + SEAL_OVERHEAD);
      assert.equal(sealed.byteOffset, sealing.byteOffset + at);
      assert.equal(sealing[at + sealed.length], 0xaa, `${size} bytes: nothing sealed past the result`);
      assert.deepEqual(nodeOpen(key, sealed, aad), plain);
      opening.fill(0xbb);
      const opened = open(key, sealed, aad, 'x', opening);
      assert.equal(opened.buffer, opening.buffer);
      assert.deepEqual(opened, plain);
      assert.equal(opening[size], 0xbb, `${size} bytes: nothing opened past the result`);
      at += sealed.length + 3;
    }
  });

  it('refuses a buffer too small to seal or open into, writing nothing', () => {
    const plain = randomBytes(100);
    const small = Buffer.alloc(100 + SEAL_OVERHEAD - 1, 0x55);
    assert.throws(() => seal(key, plain, aad, small), RangeError);
    assert.ok(small.every((x) => x === 0x55));
    const sealed = seal(key, plain, aad);
    const out = Buffer.alloc(99, 0x55);
    assert.throws(() => open(key, sealed, aad, 'x', out), RangeError);
    assert.ok(out.every((x) => x === 0x55));
  });

  it('refuses to seal or open into bytes it reads, and leaves no unauthenticated bytes behind', () => {
    const b = randomBytes(3000);
    const plain = b.subarray(100, 1100);
    assert.throws(() => seal(key, plain, aad, b.subarray(0)), RangeError);
    assert.throws(() => seal(key, plain, b.subarray(1100, 1200), b.subarray(1150)), RangeError);
    const sealed = seal(key, plain, aad, b.subarray(1200));
    assert.throws(() => open(key, sealed, aad, 'x', b.subarray(1210)), RangeError);
    const into = Buffer.alloc(plain.length, 0x55);
    assert.throws(() => open(key, flipped(sealed, sealed.length - 1), aad, 'damaged', into), AuthenticationError);
    assert.ok(into.every((x) => x === 0), 'the room for the plaintext is zeroed after a failure');
    assert.deepEqual(open(key, sealed, aad, 'x', into), Buffer.from(plain));
  });

  it('fails authentication on any change, and opens again afterwards on the same thread', () => {
    const plain = randomBytes(5000);
    const sealed = seal(key, plain, aad);
    const into = Buffer.alloc(plain.length);
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
      assert.throws(() => open(k, s, a, what), AuthenticationError, what);
      assert.throws(() => open(k, s, a, what, into), AuthenticationError, what);
    }
    assert.deepEqual(open(key, sealed, aad, 'x', into), plain);
  });

  it('reusingOpener opens blob after blob into one buffer, each valid until the next', () => {
    const opener = reusingOpener();
    const plains = [4096, 100, 131_072, 0, 50_000].map((n) => randomBytes(n));
    const first = opener(key, seal(key, plains[0]!, aad), aad, 'x');
    assert.deepEqual(first, plains[0]);
    const buffers = new Set<ArrayBufferLike>();
    for (const p of plains) {
      const opened = opener(key, seal(key, p, aad), aad, 'x');
      assert.deepEqual(opened, p);
      buffers.add(opened.buffer);
    }
    assert.ok(buffers.size <= 2, `one buffer, grown once for the largest (${buffers.size})`);
    assert.throws(() => opener(key, flipped(seal(key, plains[1]!, aad), 20), aad, 'damaged blob'), AuthenticationError);
  });
});
