// Tests of src/core/compress.ts: every mode round-trips, a blob is only
// stored compressed when that makes it smaller, and decompression checks the
// recorded size (before inflating anything, where the frame declares its
// size) and turns every failure into a DecompressionError.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { BlobCompressor, COMPRESSION_MODES, DecompressionError, decompress, parseCompressionMode, type CompressionMode } from '../../src/core/compress.js';
import { zstdBomb } from '../helpers/zstd-bomb.js';

/** Compressible data: a few short random words repeated. */
const repetitive = fc
  .tuple(fc.array(fc.uint8Array({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 4 }), fc.integer({ min: 64, max: 20_000 }))
  .map(([words, length]) => {
    const unit = Buffer.concat(words);
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i++) out[i] = unit[i % unit.length]!;
    return out;
  });

function assertDecompressionFails(f: () => unknown, what: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof DecompressionError, `expected DecompressionError, got ${String(e)}`);
    assert.ok(e.message.includes(what), e.message);
    return true;
  });
}

describe('BlobCompressor', () => {
  for (const mode of COMPRESSION_MODES.filter((m) => m !== 'off')) {
    it(`${mode}: compresses repetitive data smaller and round-trips it`, () => {
      const c = new BlobCompressor(mode);
      assert.equal(c.mode, mode);
      fc.assert(
        fc.property(repetitive, (data) => {
          const out = c.compress(data);
          assert.ok(out !== undefined, 'repetitive data should compress');
          assert.ok(out.length < data.length);
          assert.deepEqual(decompress(out, data.length, 'blob r'), data);
        }),
        { numRuns: mode === 'max' ? 10 : 30 },
      );
    });

    it(`${mode}: any data either is left alone or round-trips`, () => {
      const c = new BlobCompressor(mode);
      fc.assert(
        fc.property(fc.oneof(fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b)), repetitive), (data) => {
          const out = c.compress(data);
          if (out === undefined) return;
          assert.ok(out.length < data.length, 'compressed output must be smaller than its input');
          assert.deepEqual(decompress(out, data.length, 'blob a'), data);
        }),
        { numRuns: mode === 'max' ? 10 : 40 },
      );
    });

    it(`${mode}: leaves random (incompressible) data and tiny blobs uncompressed`, () => {
      const c = new BlobCompressor(mode);
      assert.equal(c.compress(randomBytes(64 * 1024)), undefined);
      assert.equal(c.compress(Buffer.alloc(63)), undefined, 'blobs under 64 bytes are never compressed');
      assert.equal(c.compress(Buffer.alloc(0)), undefined);
    });
  }

  it('off: never compresses', () => {
    const c = new BlobCompressor('off');
    fc.assert(
      fc.property(repetitive, (data) => {
        assert.equal(c.compress(data), undefined);
      }),
      { numRuns: 20 },
    );
    assert.equal(c.compress(Buffer.alloc(1 << 20)), undefined);
  });

  it('higher levels do not compress repetitive data worse than the default', () => {
    const data = Buffer.from('the quick brown fox jumps over the lazy dog. '.repeat(2000));
    const sizes = new Map<CompressionMode, number>();
    for (const m of ['default', 'better', 'max'] as const) sizes.set(m, new BlobCompressor(m).compress(data)!.length);
    assert.ok(sizes.get('max')! <= sizes.get('default')!, JSON.stringify([...sizes]));
  });
});

describe('the default level by the data', () => {
  // 128 KiB of word salad from a fixed seed: compressible, and compressed differently at levels 1 and 3.
  const words = ['block', 'inode', 'extent', 'journal', 'bitmap', 'group', 'superblock', 'directory', 'mode', 'owner', 'ctime', 'mtime', 'size', 'link'];
  let seed = 12345;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  const parts: string[] = [];
  while (parts.join(' ').length < 128 << 10) parts.push(`${words[next() % words.length]}${next() % 1000}`);
  const data = Buffer.from(parts.join(' ')).subarray(0, 128 << 10);
  const out = (c: BlobCompressor): Buffer => Buffer.from(c.compress(data)!);

  it('compresses disk-image blocks at zstd 3 (as better) and chunks at zstd 1', () => {
    const blocks = out(new BlobCompressor('default', 'blocks'));
    assert.deepEqual(blocks, out(new BlobCompressor('better')));
    assert.deepEqual(out(new BlobCompressor('default')), out(new BlobCompressor('default', 'chunks')));
    assert.notDeepEqual(out(new BlobCompressor('default')), blocks);
    assert.deepEqual(decompress(blocks, data.length, 'block'), data);
  });

  it('leaves a chosen mode as chosen for disk-image blocks', () => {
    assert.equal(new BlobCompressor('off', 'blocks').compress(data), undefined);
    assert.deepEqual(out(new BlobCompressor('max', 'blocks')), out(new BlobCompressor('max')));
  });
});

describe('decompress', () => {
  it('throws DecompressionError naming the blob when rawLength is wrong', () => {
    const data = Buffer.alloc(10_000, 'ab');
    const out = new BlobCompressor('default').compress(data)!;
    assert.deepEqual(decompress(out, data.length, 'blob ok'), data);
    assertDecompressionFails(() => decompress(out, data.length - 1, 'blob short'), 'blob short');
    assertDecompressionFails(() => decompress(out, data.length + 1, 'blob long'), 'blob long');
    assertDecompressionFails(() => decompress(out, 0, 'blob zero'), 'blob zero');
  });

  it('throws DecompressionError on truncated compressed data', () => {
    const data = Buffer.alloc(10_000, 'xyz');
    const out = new BlobCompressor('default').compress(data)!;
    for (let n = 1; n < out.length; n++) {
      assertDecompressionFails(() => decompress(out.subarray(0, n), data.length, `prefix ${n}`), `prefix ${n}`);
    }
  });

  it('throws DecompressionError (never another error) on garbage', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 500 }), fc.nat({ max: 100_000 }), (garbage, rawLength) => {
        assertDecompressionFails(() => decompress(garbage, rawLength, 'blob garbage'), 'blob garbage');
      }),
      { numRuns: 200 },
    );
  });

  it('throws DecompressionError on garbage behind a valid zstd magic', () => {
    const magic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (rest) => {
        const input = Buffer.concat([magic, rest]);
        try {
          // Random frame headers may, rarely, describe an empty frame.
          const out = decompress(input, 1, 'blob framed');
          assert.fail(`decoded ${out.length} bytes from garbage`);
        } catch (e) {
          assert.ok(e instanceof DecompressionError, `expected DecompressionError, got ${String(e)}`);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('rejects a frame header that claims a huge size without allocating it', () => {
    // Frame content size 2^36 bytes, no data.
    const header = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0, 0x10, 0, 0, 0]);
    assertDecompressionFails(() => decompress(header, 100, 'blob huge'), 'blob huge');
  });

  it('refuses a bomb that declares more than rawLength by its header, and never writes past rawLength into a frame that declares nothing', () => {
    const declared = zstdBomb(2 << 20);
    assert.equal(declared.length, 77);
    assertDecompressionFails(() => decompress(declared, 1 << 20, 'blob bomb'), 'blob bomb: cannot decompress (the frame declares 2097152 bytes, expected 1048576)');
    const silent = zstdBomb(2 << 20, { declare: false });
    const into = Buffer.alloc((1 << 20) + 16, 0x5a);
    assertDecompressionFails(() => decompress(silent, 1 << 20, 'blob silent', into), 'blob silent');
    assert.ok(into.subarray(1 << 20).every((b) => b === 0x5a), 'decompress wrote past rawLength');
    assert.deepEqual(decompress(zstdBomb(1 << 20, { declare: false }), 1 << 20, 'blob exact'), Buffer.alloc(1 << 20, 0x41));
  });
});

describe('parseCompressionMode', () => {
  it('accepts every mode name', () => {
    for (const m of COMPRESSION_MODES) assert.equal(parseCompressionMode(m), m);
  });

  it('rejects anything else, listing the choices', () => {
    for (const s of ['', 'zstd', 'OFF', 'Default', 'fast', ' better', 'max ', 'none', '1']) {
      assert.throws(() => parseCompressionMode(s), (e: unknown) => {
        assert.ok(e instanceof Error);
        assert.match(e.message, /unknown compression/);
        assert.ok(e.message.includes(JSON.stringify(s)), e.message);
        for (const m of COMPRESSION_MODES) assert.ok(e.message.includes(m), e.message);
        return true;
      });
    }
  });
});
