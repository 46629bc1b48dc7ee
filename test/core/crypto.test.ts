// Tests of src/core/crypto.ts: sealing round-trips and fails closed on any
// change (key, associated data, a single stored byte); blob ids are keyed
// (BLAKE3 against its official vectors, HMAC-SHA256 against node:crypto);
// scrypt parameters read from storage are checked before use; scrypt is
// RFC 7914's (its vectors, and OpenSSL's through node:crypto).

import assert from 'node:assert/strict';
import { randomBytes, scryptSync } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  AuthenticationError,
  KEY_BYTES,
  NONCE_BYTES,
  SEAL_OVERHEAD,
  TAG_BYTES,
  blobId,
  DEFAULT_SCRYPT_PARAMS,
  deriveKey,
  newMasterKey,
  open,
  scryptKey,
  seal,
  sha256,
  validScryptParams,
} from '../../src/core/crypto.js';

const key = (): Buffer => randomBytes(KEY_BYTES);
const bytes = (maxLength = 300): fc.Arbitrary<Uint8Array> => fc.uint8Array({ maxLength });

/** Runs `f` and checks it throws an AuthenticationError naming `what`. */
function assertAuthFails(f: () => unknown, what: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof AuthenticationError, `expected AuthenticationError, got ${String(e)}`);
    assert.ok(e.message.includes(what), e.message);
    return true;
  });
}

describe('seal / open', () => {
  it('round-trips any plaintext and associated data', () => {
    fc.assert(
      fc.property(bytes(), bytes(64), (plain, aad) => {
        const k = key();
        const sealed = seal(k, plain, aad);
        assert.equal(sealed.length, plain.length + SEAL_OVERHEAD);
        assert.deepEqual(open(k, sealed, aad, 'blob x'), Buffer.from(plain));
      }),
      { numRuns: 100 },
    );
  });

  it('opens a sealed message that is a view into a larger buffer', () => {
    const k = key();
    const sealed = seal(k, Buffer.from('hello'), Buffer.from('aad'));
    const big = Buffer.concat([Buffer.from('xxxx'), sealed, Buffer.from('yyyy')]);
    const view = new Uint8Array(big.buffer, big.byteOffset + 4, sealed.length);
    assert.equal(open(k, view, Buffer.from('aad'), 'blob x').toString(), 'hello');
  });

  it('fails with AuthenticationError under a wrong key', () => {
    fc.assert(
      fc.property(bytes(), bytes(32), (plain, aad) => {
        const sealed = seal(key(), plain, aad);
        assertAuthFails(() => open(key(), sealed, aad, 'blob wrong-key'), 'blob wrong-key');
      }),
      { numRuns: 30 },
    );
  });

  it('fails with AuthenticationError under different associated data', () => {
    fc.assert(
      fc.property(bytes(), bytes(32), bytes(32), (plain, aad, other) => {
        fc.pre(!Buffer.from(aad).equals(Buffer.from(other)));
        const k = key();
        const sealed = seal(k, plain, aad);
        assertAuthFails(() => open(k, sealed, other, 'blob wrong-aad'), 'blob wrong-aad');
      }),
      { numRuns: 30 },
    );
  });

  it('fails with AuthenticationError when any single byte (nonce, body or tag) is flipped', () => {
    fc.assert(
      fc.property(bytes(200), fc.nat(), fc.integer({ min: 1, max: 255 }), (plain, where, mask) => {
        const k = key();
        const aad = Buffer.from('aad');
        const sealed = seal(k, plain, aad);
        const i = where % sealed.length;
        sealed[i] = sealed[i]! ^ mask;
        assertAuthFails(() => open(k, sealed, aad, 'blob flipped'), 'blob flipped');
      }),
      { numRuns: 100 },
    );
  });

  it('flips in each region (first nonce byte, first body byte, last tag byte) all fail', () => {
    const k = key();
    const aad = Buffer.from('aad');
    const plain = Buffer.from('some plaintext');
    for (const i of [0, NONCE_BYTES - 1, NONCE_BYTES, NONCE_BYTES + plain.length - 1, NONCE_BYTES + plain.length, NONCE_BYTES + plain.length + TAG_BYTES - 1]) {
      const sealed = seal(k, plain, aad);
      sealed[i] = sealed[i]! ^ 0x01;
      assertAuthFails(() => open(k, sealed, aad, `byte ${i}`), `byte ${i}`);
    }
  });

  it('fails with AuthenticationError on input shorter than nonce + tag, and on every truncation', () => {
    const k = key();
    const aad = Buffer.alloc(0);
    const sealed = seal(k, Buffer.from('0123456789'), aad);
    for (let n = 0; n < sealed.length; n++) {
      assertAuthFails(() => open(k, sealed.subarray(0, n), aad, `prefix ${n}`), `prefix ${n}`);
    }
  });

  it('uses a fresh nonce for every seal of the same plaintext', () => {
    const k = key();
    const plain = Buffer.from('same plaintext every time');
    const aad = Buffer.from('same aad');
    const nonces = new Set<string>();
    const ciphertexts = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const s = seal(k, plain, aad);
      nonces.add(s.subarray(0, NONCE_BYTES).toString('hex'));
      ciphertexts.add(s.toString('hex'));
    }
    assert.equal(nonces.size, 50);
    assert.equal(ciphertexts.size, 50);
  });
});

/**
 * BLAKE3's official keyed_hash test vectors (BLAKE3-team/BLAKE3,
 * test_vectors/test_vectors.json): the first 32 bytes of each output. The
 * input is the repeating sequence 0, 1, ..., 250.
 */
const BLAKE3_KEY = Buffer.from('whats the Elvish word for friend', 'ascii');
const BLAKE3_KEYED: [number, string][] = [
  [0, '92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26'],
  [1, '6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b'],
  [1023, 'c951ecdf03288d0fcc96ee3413563d8a6d3589547f2c2fb36d9786470f1b9d6e'],
  [1024, '75c46f6f3d9eb4f55ecaaee480db732e6c2105546f1e675003687c31719c7ba4'],
  [1025, '357dc55de0c7e382c900fd6e320acc04146be01db6a8ce7210b7189bd664ea69'],
  [4097, '00df940cd36bb9fa7cbbc3556744e0dbc8191401afe70520ba292ee3ca80abbc'],
  [7169, 'ed9b1a922c046fdb3d423ae34e143b05ca1bf28b710432857bf738bcedbfa511'],
];
const vectorInput = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => i % 251));

describe('blobId', () => {
  it('is BLAKE3 in keyed mode: the official test vectors', () => {
    for (const [n, hex] of BLAKE3_KEYED) assert.equal(blobId(BLAKE3_KEY, vectorInput(n)).toString('hex'), hex, `input of ${n} bytes`);
  });

  it('hashes a view by its own bytes, and each call alone (the hasher is reused)', () => {
    const whole = Buffer.concat([Buffer.from('prefix'), vectorInput(1025), Buffer.from('suffix')]);
    const other = key();
    assert.equal(blobId(BLAKE3_KEY, whole.subarray(6, 6 + 1025)).toString('hex'), BLAKE3_KEYED[4]![1]);
    blobId(other, whole);
    assert.equal(blobId(BLAKE3_KEY, vectorInput(1)).toString('hex'), BLAKE3_KEYED[1]![1]);
    assert.equal(blobId(BLAKE3_KEY, vectorInput(1)).toString('hex'), BLAKE3_KEYED[1]![1]);
  });

  it('32 bytes, deterministic for one key, different between keys and from the plain hash', () => {
    fc.assert(
      fc.property(bytes(), (data) => {
        const k1 = key();
        const k2 = key();
        assert.equal(blobId(k1, data).length, 32);
        assert.deepEqual(blobId(k1, data), blobId(Buffer.from(k1), data));
        assert.notDeepEqual(blobId(k1, data), blobId(k2, data));
        assert.notDeepEqual(blobId(k1, data), sha256(data), 'a keyed id must not be the plain hash');
      }),
      { numRuns: 50 },
    );
  });
});

describe('newMasterKey', () => {
  it('makes three independent 32-byte secrets, fresh each time', () => {
    const a = newMasterKey();
    const b = newMasterKey();
    for (const k of [a.encryption, a.id, a.chunker]) assert.equal(k.length, KEY_BYTES);
    assert.notDeepEqual(a.encryption, a.id);
    assert.notDeepEqual(a.id, a.chunker);
    assert.notDeepEqual(a.encryption, b.encryption);
  });
});

describe('scrypt parameters', () => {
  it('accepts the defaults and small powers of two', () => {
    assert.ok(validScryptParams({ N: 2 ** 17, r: 8, p: 1 }));
    assert.ok(validScryptParams({ N: 2, r: 1, p: 1 }));
    assert.ok(validScryptParams({ N: 1024, r: 8, p: 1 }));
  });

  it(
    'refuses parameters whose cost would let a planted key file stall open (more than 4 times the default N·r·p, so at most 256 MiB)',
    () => {
      assert.equal(validScryptParams({ N: 2 ** 22, r: 32, p: 16 }), false);
      assert.equal(validScryptParams({ N: 2 ** 20, r: 8, p: 1 }), false, '1 GiB and 16 times the work');
      assert.equal(validScryptParams({ N: 2 ** 19, r: 8, p: 1 }), false, '8 times the work');
      assert.equal(validScryptParams({ N: 2 ** 18, r: 8, p: 1 }), true, '256 MiB is the most a key file may ask');
      assert.equal(validScryptParams({ N: 2 ** 18, r: 8, p: 2 }), false, 'too much work');
      assert.equal(validScryptParams({ N: 2 ** 16, r: 8, p: 4 }), true, 'p adds work but no memory');
    },
  );

  it('rejects N that is not a power of two, out of range or not an integer', () => {
    for (const N of [0, 1, 3, 1000, 2 ** 23, -1024, 1024.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.equal(validScryptParams({ N, r: 8, p: 1 }), false, `N=${N}`);
    }
  });

  it('rejects r and p out of range or not integers', () => {
    for (const r of [0, 33, 1.5, -8, Number.NaN]) assert.equal(validScryptParams({ N: 1024, r, p: 1 }), false, `r=${r}`);
    for (const p of [0, 17, 0.5, -1, Number.NaN]) assert.equal(validScryptParams({ N: 1024, r: 8, p }), false, `p=${p}`);
  });

  it('rejects values of the wrong JSON type (as read from a key file)', () => {
    for (const v of ['1024', null, undefined, true, [1024], {}]) {
      assert.equal(validScryptParams({ N: v, r: 8, p: 1 } as unknown as { N: number; r: number; p: number }), false, `N=${JSON.stringify(v)}`);
      assert.equal(validScryptParams({ N: 1024, r: v, p: 1 } as unknown as { N: number; r: number; p: number }), false, `r=${JSON.stringify(v)}`);
    }
  });

  it('never accepts random numbers that are not valid', () => {
    fc.assert(
      fc.property(fc.double(), fc.double(), fc.double(), (N, r, p) => {
        const ok = validScryptParams({ N, r, p });
        if (ok) {
          assert.ok(Number.isInteger(N) && N >= 2 && N <= 2 ** 21 && Number.isInteger(Math.log2(N)));
          assert.ok(Number.isInteger(r) && r >= 1 && r <= 32);
          assert.ok(Number.isInteger(p) && p >= 1 && p <= 16);
          assert.ok(N * r * p <= 2 ** 21);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('the default KDF cost is valid and not cheap', () => {
    assert.ok(validScryptParams(DEFAULT_SCRYPT_PARAMS));
    assert.ok(DEFAULT_SCRYPT_PARAMS.N >= 2 ** 14, `default N=${DEFAULT_SCRYPT_PARAMS.N} is too cheap for a password KDF`);
  });
});

describe('deriveKey', () => {
  const params = { N: 1024, r: 8, p: 1 };

  it('is deterministic for password, salt and parameters', async () => {
    const salt = randomBytes(32);
    const a = await deriveKey('pw', salt, params);
    assert.equal(a.length, KEY_BYTES);
    assert.deepEqual(await deriveKey('pw', Buffer.from(salt), params), a);
    assert.notDeepEqual(await deriveKey('pw2', salt, params), a);
    assert.notDeepEqual(await deriveKey('pw', randomBytes(32), params), a);
    assert.notDeepEqual(await deriveKey('pw', salt, { N: 2048, r: 8, p: 1 }), a);
  });

  it('normalises the password to NFC, so composed and decomposed forms agree', async () => {
    const salt = randomBytes(32);
    const composed = 'caf\u00e9';
    const decomposed = 'cafe\u0301';
    assert.notEqual(composed, decomposed);
    assert.deepEqual(await deriveKey(composed, salt, params), await deriveKey(decomposed, salt, params));
  });

  it('takes the password as UTF-8 bytes alike, normalised the same, and leaves the bytes as they were', async () => {
    const salt = randomBytes(32);
    for (const [text, bytes] of [['pw', Buffer.from('pw')], ['caf\u00e9', Buffer.from('cafe\u0301')]] as const) {
      const copy = Buffer.from(bytes);
      assert.deepEqual(await deriveKey(bytes, salt, params), await deriveKey(text, salt, params), text);
      assert.deepEqual(bytes, copy);
    }
  });

  it('rejects (not throws synchronously) on parameters scrypt refuses', async () => {
    await assert.rejects(deriveKey('pw', randomBytes(32), { N: 1000, r: 8, p: 1 }));
  });
});

describe('scryptKey', () => {
  it('gives RFC 7914\'s test vectors', async () => {
    const vectors = [
      ['', '', 16, 1, 1, '77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906'],
      ['password', 'NaCl', 1024, 8, 16, 'fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640'],
      ['pleaseletmein', 'SodiumChloride', 16384, 8, 1, '7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887'],
    ] as const;
    for (const [password, salt, N, r, p, hex] of vectors) {
      const key = await scryptKey(Buffer.from(password), Buffer.from(salt), 64, { N, r, p });
      assert.equal(key.toString('hex'), hex, `N=${N}, r=${r}, p=${p}`);
    }
  });

  it('equals OpenSSL\'s scrypt (node:crypto) for any password, salt, parameters and length', async () => {
    await fc.assert(fc.asyncProperty(bytes(80), bytes(40), fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 96 }),
      async (password, salt, logN, r, p, length) => {
        const N = 2 ** logN;
        const want = scryptSync(password, salt, length, { N, r, p });
        assert.deepEqual(await scryptKey(password, salt, length, { N, r, p }), want);
      }), { numRuns: 60 });
  });

  it('leaves the caller\'s password as it was', async () => {
    const password = Buffer.from('correct horse battery staple');
    const copy = Buffer.from(password);
    await scryptKey(password, randomBytes(16), 32, { N: 1024, r: 8, p: 1 });
    assert.deepEqual(password, copy);
  });

  it('rejects what scrypt cannot compute, with a message', async () => {
    await assert.rejects(scryptKey(Buffer.from('pw'), Buffer.alloc(16), 32, { N: 1, r: 8, p: 1 }), /scrypt: parameters out of range/);
    await assert.rejects(scryptKey(Buffer.from('pw'), Buffer.alloc(16), 32, { N: 2 ** 40, r: 8, p: 1 }), /scrypt: (parameters out of range|not enough memory)/);
    await assert.rejects(scryptKey(Buffer.from('pw'), Buffer.alloc(16), 32, { N: 1024, r: 0, p: 1 }), TypeError);
    await assert.rejects(scryptKey(Buffer.from('pw'), Buffer.alloc(16), 0, { N: 1024, r: 8, p: 1 }), TypeError);
  });

  it('runs at most two derivations at once, and every one it was given, in order of arrival', async () => {
    const params = { N: 2 ** 12, r: 8, p: 1 };
    const passwords = Array.from({ length: 7 }, (_, i) => Buffer.from(`password ${i}`));
    const salt = randomBytes(16);
    const keys = await Promise.all(passwords.map((pw) => scryptKey(pw, salt, 32, params)));
    keys.forEach((key, i) => assert.deepEqual(key, scryptSync(passwords[i]!, salt, 32, params)));
    // A failed derivation hands its turn on too: none is left waiting.
    const mixed = await Promise.allSettled([0, 1, 2, 3, 4].map((i) => scryptKey(passwords[i]!, salt, 32, i % 2 === 0 ? { N: 1000, r: 8, p: 1 } : params)));
    assert.deepEqual(mixed.map((m) => m.status), ['rejected', 'fulfilled', 'rejected', 'fulfilled', 'rejected']);
  });
});
