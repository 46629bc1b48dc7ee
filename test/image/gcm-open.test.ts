/**
 * The workers' AEAD work by the addon (native/gcm.cc). `gcmOpen`
 * opens what crypto.ts `seal` sealed, as `open` does, into the start of a
 * buffer it is given and reuses for blocks of every size; any change to the
 * nonce, ciphertext, tag, key or associated data, and bytes too short to be
 * sealed, fail authentication (-1) as they make `open` throw; an output
 * buffer too small is refused before anything is written. `gcmSeal` writes
 * `seal`'s layout with the nonce it is given, byte for byte what Node's
 * cipher makes of the same nonce, into a buffer at any offset, and `open`
 * opens it. `fingerprint` is the format's construction (the Poly1305 tag of
 * a ChaCha20-Poly1305 seal of nothing, the data as associated data, a zero
 * nonce) as Node's cipher computes it, for every length and key in turn on
 * the one context a thread keeps.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { native } from '../../src/sources/native.js';
import { AuthenticationError, NONCE_BYTES, SEAL_OVERHEAD, nextNonce, open, seal } from '../../src/core/crypto.js';

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

describe('gcmSeal', () => {
  it('seals as Node\'s AES-256-GCM does with the same nonce, at any offset of a reused buffer; open opens it', () => {
    const out = Buffer.alloc(300_000, 0xaa);
    let at = 0;
    for (const size of [0, 1, 16, 4095, 131_072, 25_000, 7]) {
      const plain = randomBytes(size);
      const nonce = Buffer.from(nextNonce());
      const n = native.gcmSeal(key, nonce, plain, aad, out.subarray(at));
      assert.equal(n, size + SEAL_OVERHEAD);
      const c = createCipheriv('aes-256-gcm', key, nonce).setAAD(aad);
      const expected = Buffer.concat([nonce, c.update(plain), c.final(), c.getAuthTag()]);
      const sealed = out.subarray(at, at + n);
      assert.deepEqual(sealed, expected);
      assert.deepEqual(open(key, sealed, aad, 'x'), plain);
      assert.equal(native.gcmOpen(key, sealed, aad, Buffer.alloc(size)), size);
      at += n + 3;
    }
    assert.equal(out[at - 1], 0xaa, 'nothing written past the sealed bytes');
  });

  it('refuses a nonce that is not 12 bytes, a key that is not 32, and too little room, writing nothing', () => {
    const plain = randomBytes(100);
    const out = Buffer.alloc(100 + SEAL_OVERHEAD - 1, 0x55);
    assert.throws(() => native.gcmSeal(key, Buffer.from(nextNonce()), plain, aad, out), RangeError);
    assert.throws(() => native.gcmSeal(key, Buffer.alloc(NONCE_BYTES - 1), plain, aad, Buffer.alloc(200)), RangeError);
    assert.throws(() => native.gcmSeal(key.subarray(0, 16), Buffer.from(nextNonce()), plain, aad, Buffer.alloc(200)), RangeError);
    assert.ok(out.every((x) => x === 0x55));
  });
});

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
