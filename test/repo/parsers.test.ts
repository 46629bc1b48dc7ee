// Property tests of every parser of stored objects: config, key files, pack
// trailer + header, index, snapshot and tree. Storage is not trusted, so for
// each format:
//
//   (a) decode(encode(x)) equals x for generated valid objects;
//   (b) random and near-valid bytes either decode or fail with
//       CorruptObjectError / UnsupportedVersionError naming the object,
//       never another error, never a hang;
//   (c) every truncation of a valid encoding fails that way (all prefixes
//       of small encodings, a sample of large ones);
//   (d) a flipped byte in a valid encoding fails that way or decodes.
//
// A successful decode of damaged bytes must still satisfy the invariants the
// parser promises (checked by each format's `check`).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MAX_SCRYPT_COST, scryptCost, sha256, type ScryptParams, AuthenticationError, newMasterKey } from '../../src/core/crypto.js';
import { COMPRESSION_MODES } from '../../src/core/compress.js';
import { isIdHex } from '../../src/core/ids.js';
import { CorruptObjectError, ForgedObjectError, RetiredVersionError, UnsupportedVersionError } from '../../src/repo/errors.js';
import { FORMAT_VERSION, authenticateConfig, decodeConfig, encodeConfig, newConfig, type RepoConfig } from '../../src/repo/config.js';
import { decodeKeyFile, KeyDerivation, unwrapMasterKey, wrapMasterKey, type KeyFile } from '../../src/repo/key-file.js';
import { BlobType, FLAG_COMPRESSED, PACK_TRAILER_BYTES, PackWriter, parsePackHeader, parsePackTrailer, type PackedBlob } from '../../src/repo/pack.js';
import { decodeIndex, encodeIndex, type IndexFile } from '../../src/repo/index-file.js';
import { authenticateSnapshot, blobIdList, decodeSnapshot, encodeSnapshot, type Snapshot } from '../../src/repo/snapshot.js';
import { MAX_TREE_NODES, decodeTree, encodeTree, type NodeType, type TreeNode } from '../../src/repo/tree.js';
import { DEFAULT_CHUNKER_PARAMS } from '../../src/core/chunker.js';

// ---- checking outcomes ----

/** Asserts `e` is one of the two errors a parser may throw, and that its message names the object. */
function assertCleanError(e: unknown, names: RegExp): asserts e is CorruptObjectError | UnsupportedVersionError {
  assert.ok(
    e instanceof CorruptObjectError || e instanceof UnsupportedVersionError,
    `expected CorruptObjectError or UnsupportedVersionError, got ${e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e)}`,
  );
  assert.match(e.message, names);
}

/** Runs a decode; returns its value, or undefined after checking the error is a clean one. */
function decodeOrCleanError<T>(decode: () => T, names: RegExp): T | undefined {
  try {
    return decode();
  } catch (e) {
    assertCleanError(e, names);
    return undefined;
  }
}

/** Asserts a decode fails cleanly. */
function assertFailsCleanly(decode: () => unknown, names: RegExp, context: string): void {
  let value: unknown;
  try {
    value = decode();
  } catch (e) {
    assertCleanError(e, names);
    return;
  }
  assert.fail(`${context}: decoded instead of failing: ${inspectShort(value)}`);
}

function inspectShort(v: unknown): string {
  const s = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));
  return s === undefined ? String(v) : s.slice(0, 300);
}

/** Prefix lengths to try: all for small encodings, the first and last 128 and an even spread for large ones. */
function prefixLengths(n: number): number[] {
  if (n <= 1024) return Array.from({ length: n }, (_, i) => i);
  const out = new Set<number>();
  for (let i = 0; i < 128; i++) {
    out.add(i);
    out.add(n - 1 - i);
  }
  for (let i = 0; i < 256; i++) out.add(Math.floor((i * n) / 256));
  return [...out].filter((i) => i < n).sort((a, b) => a - b);
}

// ---- JSON mutation, for near-valid inputs to the JSON-based formats ----

type Path = (string | number)[];

function jsonPaths(v: unknown, at: Path = [], out: Path[] = []): Path[] {
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      out.push([...at, i]);
      jsonPaths(x, [...at, i], out);
    });
  } else if (typeof v === 'object' && v !== null) {
    for (const [k, x] of Object.entries(v)) {
      out.push([...at, k]);
      jsonPaths(x, [...at, k], out);
    }
  }
  return out;
}

const DELETE = Symbol('delete');

/** A copy of `v` with the value at `path` replaced (or deleted). */
function withReplaced(v: unknown, path: Path, replacement: unknown): unknown {
  const copy = JSON.parse(JSON.stringify(v)) as unknown;
  let parent = copy as Record<string | number, unknown>;
  for (const p of path.slice(0, -1)) parent = parent[p] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (replacement !== DELETE) parent[last] = replacement;
  else if (Array.isArray(parent)) parent.splice(last as number, 1);
  else delete parent[last];
  return copy;
}

/** Values that tend to find gaps in field validation. */
const nastyJson: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(-1, 0, 1, 2, 1.5, -0.5, 2 ** 31, 2 ** 32, 2 ** 53, 1e300, '', 'x', '1', '-1', 'zz', '0'.repeat(64), 'f'.repeat(64), 'F'.repeat(64), [], {}, null, true, false),
);

/** Valid objects from `arb`, as JSON, with one value somewhere replaced or deleted. */
function mutatedJson<T>(arb: fc.Arbitrary<T>, toJson: (x: T) => unknown): fc.Arbitrary<unknown> {
  return fc.tuple(arb, fc.nat(), fc.option(nastyJson, { nil: DELETE, freq: 4 })).map(([x, i, replacement]) => {
    const j = toJson(x);
    const paths = jsonPaths(j);
    return paths.length === 0 ? j : withReplaced(j, paths[i % paths.length]!, replacement);
  });
}

// ---- shared arbitraries ----

const hexId = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));
/** Strings with anything in them, lone surrogates included. */
const anyString = (maxLength = 20): fc.Arbitrary<string> =>
  fc.oneof(
    fc.string({ maxLength }),
    fc.string({ unit: 'binary', maxLength }),
    fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength }),
  );
const isoTime = fc.date({ min: new Date('1900-01-01T00:00:00Z'), max: new Date('2200-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString());
const u32 = fc.nat({ max: 0xffffffff });
const u32le = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
const randomBuffer = (maxLength: number): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength }).map((b) => Buffer.from(b));

// ---- the shared property suite ----

interface Format<T> {
  /** Test-suite title. */
  readonly title: string;
  /** What messages must name. */
  readonly names: RegExp;
  readonly valid: fc.Arbitrary<T>;
  encode(x: T): Buffer;
  decode(b: Buffer): unknown;
  /** The value a decode of `encode(x)` must equal (default: `x`). */
  canonical?(x: T): unknown;
  /** Random and near-valid inputs beyond plain random bytes. */
  readonly garbage: readonly fc.Arbitrary<Buffer>[];
  /** Invariants of any successfully decoded value. */
  check(v: unknown): void;
  /** True when every changed byte must be detected (checksummed formats). */
  readonly flipsAlwaysFail?: boolean;
}

function formatSuite<T>(f: Format<T>): void {
  describe(f.title, () => {
    it('(a) decode(encode(x)) equals x', { timeout: 20_000 }, () => {
      fc.assert(
        fc.property(f.valid, (x) => {
          const decoded = f.decode(f.encode(x));
          assert.deepStrictEqual(decoded, f.canonical ? f.canonical(x) : x);
          f.check(decoded);
        }),
        { numRuns: 100 },
      );
    });

    it('(b) random and near-valid bytes decode or fail with a clean error naming the object', { timeout: 20_000 }, () => {
      const inputs = fc.oneof(randomBuffer(200), ...f.garbage);
      fc.assert(
        fc.property(inputs, (bytes) => {
          const v = decodeOrCleanError(() => f.decode(bytes), f.names);
          if (v !== undefined) f.check(v);
        }),
        { numRuns: 600 },
      );
    });

    it('(c) every truncation of a valid encoding fails cleanly', { timeout: 20_000 }, () => {
      fc.assert(
        fc.property(f.valid, (x) => {
          const bytes = f.encode(x);
          for (const n of prefixLengths(bytes.length)) {
            assertFailsCleanly(() => f.decode(bytes.subarray(0, n)), f.names, `prefix of ${n}/${bytes.length} bytes`);
          }
        }),
        { numRuns: 25 },
      );
    });

    it('(d) a flipped byte fails cleanly or decodes to a well-formed value', { timeout: 20_000 }, () => {
      fc.assert(
        fc.property(f.valid, fc.nat(), fc.integer({ min: 1, max: 255 }), (x, where, mask) => {
          const bytes = Buffer.from(f.encode(x));
          const i = where % bytes.length;
          bytes[i] = bytes[i]! ^ mask;
          if (f.flipsAlwaysFail) {
            assertFailsCleanly(() => f.decode(bytes), f.names, `byte ${i} flipped`);
          } else {
            const v = decodeOrCleanError(() => f.decode(bytes), f.names);
            if (v !== undefined) f.check(v);
          }
        }),
        { numRuns: 400 },
      );
    });
  });
}

// ---- config ----

const KiB = 1024;
const MiB = 1024 * KiB;

const chunkerParams = fc.integer({ min: 7, max: 25 }).chain((log) => {
  const avg = 2 ** log;
  return fc.record(
    {
      algorithm: fc.constant('fastcdc-2020' as const),
      minSize: fc.integer({ min: 64, max: avg - 1 }),
      avgSize: fc.constant(avg),
      maxSize: fc.integer({ min: avg + 1, max: 64 * MiB }),
    },
    { noNullPrototype: true },
  );
});

const configArb: fc.Arbitrary<RepoConfig> = fc.record(
  {
    version: fc.constant(FORMAT_VERSION),
    id: hexId,
    created: fc.oneof(isoTime, anyString()),
    chunker: chunkerParams,
    packSize: fc.integer({ min: 1 << 16, max: 1 << 30 }),
    compression: fc.constantFrom(...COMPRESSION_MODES),
    masterKey: hexId,
  },
  { noNullPrototype: true },
);

/** Any 32 bytes: the parsers never check a MAC (the keyed readers do, test/cli/forgery.test.ts). */
const MAC_KEY = Buffer.alloc(32, 7);

/**
 * A config object around any JSON (an object without a `mac` gets a
 * well-formed one), with a correct checksum: only the JSON checks stand
 * between it and the client.
 */
function configBytes(json: unknown): Buffer {
  const withMac = json !== null && typeof json === 'object' && !Array.isArray(json) && !('mac' in json) ? { ...json, mac: 'ab'.repeat(32) } : json;
  const body = Buffer.concat([Buffer.from('HFCF', 'latin1'), Buffer.from(JSON.stringify(withMac), 'utf8')]);
  return Buffer.concat([body, sha256(body)]);
}

const CONFIG_NAMES = /^(config is damaged|the repository has format version|repository format version [12] is not supported)/;

function checkConfig(v: unknown): void {
  const c = v as RepoConfig;
  assert.equal(c.version, FORMAT_VERSION);
  assert.ok(isIdHex(c.id));
  assert.ok(isIdHex(c.masterKey));
  assert.ok(Number.isInteger(c.packSize) && c.packSize >= 1 << 16 && c.packSize <= 1 << 30);
  assert.ok(COMPRESSION_MODES.includes(c.compression));
  assert.equal(c.chunker.algorithm, 'fastcdc-2020');
  assert.ok(c.chunker.minSize < c.chunker.avgSize && c.chunker.avgSize < c.chunker.maxSize);
}

formatSuite<RepoConfig>({
  title: 'config',
  names: CONFIG_NAMES,
  valid: configArb,
  encode: (c) => encodeConfig(c, MAC_KEY),
  decode: decodeConfig,
  garbage: [
    fc.jsonValue({ maxDepth: 3 }).map(configBytes),
    mutatedJson(configArb, (c) => c).map(configBytes),
    randomBuffer(100).map((b) => {
      const body = Buffer.concat([Buffer.from('HFCF', 'latin1'), b]);
      return Buffer.concat([body, sha256(body)]);
    }),
  ],
  check: checkConfig,
  flipsAlwaysFail: true,
});

describe('config: specific cases', () => {
  const valid = newConfig(DEFAULT_CHUNKER_PARAMS, 16 * MiB, 'default', 'ab'.repeat(32));

  it('a config written by a newer holdfast (version 4) is refused with a message to upgrade', () => {
    assert.throws(
      () => decodeConfig(encodeConfig({ ...valid, version: 4 }, MAC_KEY)),
      (e: unknown) => {
        assert.ok(e instanceof UnsupportedVersionError, String(e));
        assert.match(e.message, /version 4/);
        assert.match(e.message, /reads version 3/);
        assert.match(e.message, /upgrade holdfast/);
        return true;
      },
    );
  });

  it('a version 1 config (no MAC) or 2 (HMAC-SHA256 ids, JSON trees) is refused: which version, why, and what to do', () => {
    const v1 = Buffer.concat([Buffer.from('HFCF', 'latin1'), Buffer.from(JSON.stringify({ ...valid, version: 1 }), 'utf8')]);
    const v2 = configBytes({ ...valid, version: 2, blobIds: 'hmac-sha256', trees: 'json' });
    for (const [version, bytes, why] of [[1, Buffer.concat([v1, sha256(v1)]), /carry no MAC/], [2, v2, /blob ids may be HMAC-SHA256 and its trees JSON/]] as const) {
      assert.throws(
        () => decodeConfig(bytes),
        (e: unknown) => {
          assert.ok(e instanceof RetiredVersionError, String(e));
          assert.match(e.message, new RegExp(`^repository format version ${version} is not supported by this holdfast, which reads version 3: `));
          assert.match(e.message, why);
          assert.match(e.message, /Restore what you need with the holdfast that wrote it, then back up again into a new repository made with this one \("holdfast init"\)$/);
          return true;
        },
      );
    }
  });

  it('a config without a well-formed masterKey is damaged', () => {
    for (const masterKey of [undefined, 'AB'.repeat(32), 'ab', 5, null]) {
      assert.throws(() => decodeConfig(configBytes({ ...valid, masterKey })), /config is damaged: bad masterKey/, String(masterKey));
    }
  });

  it('a config without a well-formed mac is damaged', () => {
    for (const mac of [undefined, 'AB'.repeat(32), 'ab', 5]) {
      const bytes = Buffer.concat([Buffer.from('HFCF', 'latin1'), Buffer.from(JSON.stringify({ ...valid, mac }), 'utf8')]);
      assert.throws(() => decodeConfig(Buffer.concat([bytes, sha256(bytes)])), /config is damaged: bad mac/, String(mac));
    }
  });

  it('a version that is not the number 3 is refused as unsupported', () => {
    for (const version of [0, '1', '3', null, 2.5, { toString: null }]) {
      assert.throws(() => decodeConfig(configBytes({ ...valid, version })), UnsupportedVersionError, JSON.stringify(version));
    }
    assert.throws(() => decodeConfig(configBytes(withReplaced(valid, ['version'], DELETE))), UnsupportedVersionError);
  });

  it('with the key: the MAC verifies, and a change to any byte of the JSON, re-checksummed, fails it', () => {
    fc.assert(
      fc.property(configArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (c, where, mask) => {
        const bytes = encodeConfig(c, MAC_KEY);
        authenticateConfig(bytes, MAC_KEY);
        assert.throws(() => authenticateConfig(bytes, Buffer.alloc(32, 8)), ForgedObjectError, 'another key');
        const body = Buffer.from(bytes.subarray(0, bytes.length - 32));
        body[4 + (where % (body.length - 4))]! ^= mask;
        assert.throws(() => authenticateConfig(Buffer.concat([body, sha256(body)]), MAC_KEY), (e: unknown) => e instanceof ForgedObjectError && /^config fails its MAC/.test(e.message));
      }),
      { numRuns: 200 },
    );
  });

  it('a checksum mismatch is a CorruptObjectError saying so', () => {
    const bytes = encodeConfig(valid, MAC_KEY);
    for (const i of [4, 20, bytes.length - 33, bytes.length - 32, bytes.length - 1]) {
      const damaged = Buffer.from(bytes);
      damaged[i] = damaged[i]! ^ 0x20;
      assert.throws(
        () => decodeConfig(damaged),
        (e: unknown) => {
          assert.ok(e instanceof CorruptObjectError, String(e));
          assert.equal(e.object, 'config');
          assert.match(e.message, /checksum mismatch/);
          return true;
        },
      );
    }
  });

  it('bad magic and short input are CorruptObjectErrors', () => {
    const bytes = encodeConfig(valid, MAC_KEY);
    const other = Buffer.from(bytes);
    other.write('HFXX', 0, 'latin1');
    assert.throws(() => decodeConfig(other), /config is damaged: not a holdfast config/);
    assert.throws(() => decodeConfig(Buffer.alloc(0)), CorruptObjectError);
    assert.throws(() => decodeConfig(Buffer.from('HFCF')), CorruptObjectError);
  });

  it('out-of-range fields are refused by name', () => {
    const cases: [string, unknown, RegExp][] = [
      ['packSize', 65535, /bad packSize/],
      ['packSize', 2 ** 30 + 1, /bad packSize/],
      ['packSize', 1.5 * MiB + 0.5, /bad packSize/],
      ['compression', 'zstd', /bad compression/],
      ['id', 'A'.repeat(64), /bad id/],
      ['created', 5, /bad created/],
      ['chunker', { ...DEFAULT_CHUNKER_PARAMS, avgSize: 1000 }, /avgSize/],
      ['chunker', { ...DEFAULT_CHUNKER_PARAMS, extra: 1 }, /unknown field/],
    ];
    for (const [field, value, message] of cases) {
      assert.throws(() => decodeConfig(configBytes({ ...valid, [field]: value })), (e: unknown) => {
        assert.ok(e instanceof CorruptObjectError, `${field}: ${String(e)}`);
        assert.match(e.message, message);
        return true;
      });
    }
  });
});

// ---- key files ----

const KEY_WHAT = `key ${'ab'.repeat(32)}`;
const base64 = fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b).toString('base64'));

const keyFileArb: fc.Arbitrary<KeyFile> = fc.record(
  {
    version: fc.constant(1),
    created: fc.oneof(isoTime, anyString()),
    hostname: anyString(),
    username: anyString(),
    kdf: fc.record(
      {
        algorithm: fc.constant('scrypt' as const),
        salt: base64,
        N: fc.integer({ min: 1, max: 17 }).map((l) => 2 ** l),
        r: fc.integer({ min: 1, max: 32 }),
        p: fc.integer({ min: 1, max: 8 }),
      },
      { noNullPrototype: true },
    ).filter((kdf) => scryptCost(kdf) <= MAX_SCRYPT_COST),
    data: base64,
  },
  { noNullPrototype: true },
);

const jsonBytes = (v: unknown): Buffer => Buffer.from(JSON.stringify(v), 'utf8');

formatSuite<KeyFile>({
  title: 'key file',
  names: new RegExp(`^${KEY_WHAT} (is damaged|has format version)`),
  valid: keyFileArb,
  encode: jsonBytes,
  decode: (b) => decodeKeyFile(b, KEY_WHAT),
  garbage: [fc.jsonValue({ maxDepth: 3 }).map(jsonBytes), mutatedJson(keyFileArb, (k) => k).map(jsonBytes), mutatedJson(keyFileArb, (k) => k).map(jsonBytes)],
  check: (v) => {
    const k = v as KeyFile;
    assert.equal(k.version, 1);
    assert.equal(k.kdf.algorithm, 'scrypt');
    assert.equal(typeof k.kdf.salt, 'string');
    for (const f of ['created', 'hostname', 'username', 'data'] as const) assert.equal(typeof k[f], 'string');
  },
});

describe('key file: wrapping', () => {
  const params: ScryptParams = { N: 1024, r: 8, p: 1 };

  it('decodes and unwraps what wrapMasterKey wrote', async () => {
    const key = newMasterKey();
    const repoId = 'cd'.repeat(32);
    const bytes = await wrapMasterKey(key, repoId, 'pw', params);
    const file = decodeKeyFile(bytes, KEY_WHAT);
    assert.equal(file.kdf.N, 1024);
    const back = await unwrapMasterKey(file, 'pw', repoId, KEY_WHAT);
    assert.deepEqual(back, key);
    await assert.rejects(unwrapMasterKey(file, 'other', repoId, KEY_WHAT), AuthenticationError);
    await assert.rejects(unwrapMasterKey(file, 'pw', 'ef'.repeat(32), KEY_WHAT), /belongs to another repository/);
  });

  it('a derivation started ahead is taken once, and only for its key file and password', async () => {
    const key = newMasterKey();
    const repoId = 'cd'.repeat(32);
    const file = decodeKeyFile(await wrapMasterKey(key, repoId, 'pw', params), KEY_WHAT);
    const other = decodeKeyFile(await wrapMasterKey(key, repoId, 'pw', params), KEY_WHAT);
    const ahead = new KeyDerivation(file.kdf, Buffer.from('pw'));
    // Another salt, another password: not taken, and still there for its own file.
    assert.equal(ahead.take(other, 'pw'), undefined);
    assert.equal(ahead.take(file, 'pW'), undefined);
    assert.equal(ahead.take(file, Buffer.from('pw!')), undefined);
    await assert.rejects(unwrapMasterKey(file, 'other', repoId, KEY_WHAT, ahead), AuthenticationError);
    assert.deepEqual(await unwrapMasterKey(file, Buffer.from('pw'), repoId, KEY_WHAT, ahead), key);
    assert.equal(ahead.take(file, 'pw'), undefined, 'taken by the unwrap');
    // A second one, never taken: disposed, it is gone.
    const unused = new KeyDerivation(file.kdf, Buffer.from('pw'));
    unused.dispose();
    assert.equal(unused.take(file, 'pw'), undefined);
  });

  it('a key file with a damaged sealed part fails authentication, not parsing', async () => {
    const bytes = await wrapMasterKey(newMasterKey(), 'cd'.repeat(32), 'pw', params);
    const file = decodeKeyFile(bytes, KEY_WHAT);
    const data = Buffer.from(file.data, 'base64');
    data[20] = data[20]! ^ 1;
    await assert.rejects(unwrapMasterKey({ ...file, data: data.toString('base64') }, 'pw', 'cd'.repeat(32), KEY_WHAT), AuthenticationError);
  });

  it('refuses scrypt parameters outside the allowed range before deriving', () => {
    const file = { version: 1, created: '', hostname: '', username: '', data: '', kdf: { algorithm: 'scrypt', salt: '', N: 2 ** 23, r: 8, p: 1 } };
    assert.throws(() => decodeKeyFile(jsonBytes(file), KEY_WHAT), /refused: scrypt N=2\^23, r=8, p=1 would cost 128 times the default/);
    assert.throws(() => decodeKeyFile(jsonBytes({ ...file, kdf: { ...file.kdf, N: 1000 } }), KEY_WHAT), /bad kdf parameters/);
    assert.throws(() => decodeKeyFile(jsonBytes({ ...file, version: 2 }), KEY_WHAT), UnsupportedVersionError);
  });
});

// ---- packs ----

const PACK_WHAT = `pack ${'01'.repeat(32)}`;
const PACK_NAMES = new RegExp(`^${PACK_WHAT} (is damaged|has format version)`);

interface BlobSpec {
  readonly type: BlobType;
  readonly id: string;
  readonly flags: number;
  readonly rawLength: number;
  readonly sealed: Buffer;
}

const blobSpec: fc.Arbitrary<BlobSpec> = fc.record(
  {
    type: fc.constantFrom(BlobType.Data, BlobType.Tree),
    id: hexId,
    flags: fc.constantFrom(0, FLAG_COMPRESSED),
    rawLength: u32,
    sealed: randomBuffer(120),
  },
  { noNullPrototype: true },
);

function buildPack(blobs: readonly BlobSpec[]): { bytes: Buffer; blobs: PackedBlob[] } {
  const w = new PackWriter();
  for (const b of blobs) w.add(b.type, b.id, b.flags, b.rawLength, b.sealed);
  return w.finish();
}

/** Parses a whole pack the way Repository.readPackHeader does: trailer, then header. */
function parsePack(bytes: Buffer): PackedBlob[] {
  const trailer = bytes.subarray(Math.max(0, bytes.length - PACK_TRAILER_BYTES));
  const headerLength = parsePackTrailer(trailer, bytes.length, PACK_WHAT);
  const headerStart = bytes.length - PACK_TRAILER_BYTES - headerLength;
  return parsePackHeader(bytes.subarray(headerStart, bytes.length - PACK_TRAILER_BYTES), headerStart, PACK_WHAT);
}

/** Structured pack garbage: random blob bytes, a header of loosely valid entries, a trailer with the right magic. */
const packGarbage: fc.Arbitrary<Buffer> = fc
  .record({
    body: randomBuffer(100),
    version: fc.oneof(fc.constant(1), fc.nat({ max: 255 })),
    entries: fc.array(
      fc.record({
        type: fc.constantFrom(0, 1, 2, 255),
        flags: fc.constantFrom(0, 1, 2, 3, 128),
        reserved: fc.constantFrom(0, 1, 0xffff),
        length: fc.oneof(fc.nat({ max: 60 }), u32),
        rawLength: u32,
        id: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      }),
      { maxLength: 4 },
    ),
    countDelta: fc.constantFrom(0, 0, 0, 1, -1, 0x7fffffff),
    headerLengthDelta: fc.constantFrom(0, 0, 0, 1, -1, 4, -5, 0x7fffffff),
    extra: fc.constantFrom(0, 0, 1, 43),
  })
  .map((g) => {
    const entries = g.entries.map((e) =>
      Buffer.concat([Buffer.from([e.type, e.flags]), Buffer.from([e.reserved & 0xff, e.reserved >> 8]), u32le(e.length), u32le(e.rawLength), Buffer.from(e.id)]),
    );
    const header = Buffer.concat([Buffer.from([g.version]), u32le(g.entries.length + g.countDelta), ...entries, Buffer.alloc(g.extra)]);
    const trailer = Buffer.concat([u32le(header.length + g.headerLengthDelta), Buffer.from('HFPK', 'latin1')]);
    return Buffer.concat([g.body, header, trailer]);
  });

/** Valid packs whose blob lengths were taken from the header: the blobs fill the pack, sometimes. */
const consistentPackGarbage: fc.Arbitrary<Buffer> = fc.array(blobSpec, { maxLength: 5 }).chain((blobs) =>
  fc.nat({ max: 2 }).map((slack) => {
    const { bytes } = buildPack(blobs);
    return slack === 0 ? bytes : Buffer.concat([Buffer.alloc(slack), bytes]);
  }),
);

function checkPack(v: unknown): void {
  const blobs = v as PackedBlob[];
  let offset = 0;
  for (const b of blobs) {
    assert.ok(b.type === BlobType.Data || b.type === BlobType.Tree || b.type === BlobType.ImageMap);
    assert.equal(b.flags & ~FLAG_COMPRESSED, 0);
    assert.ok(isIdHex(b.id));
    assert.equal(b.offset, offset);
    offset += b.length;
  }
}

formatSuite<BlobSpec[]>({
  title: 'pack trailer + header',
  names: PACK_NAMES,
  valid: fc.array(blobSpec, { maxLength: 12 }),
  encode: (blobs) => buildPack(blobs).bytes,
  decode: parsePack,
  canonical: (blobs) => buildPack(blobs).blobs,
  garbage: [packGarbage, consistentPackGarbage],
  check: checkPack,
});

describe('pack: specific cases', () => {
  it('the blobs of a parsed pack are where the header says', () => {
    fc.assert(
      fc.property(fc.array(blobSpec, { maxLength: 8 }), (specs) => {
        const { bytes } = buildPack(specs);
        const blobs = parsePack(bytes);
        assert.equal(blobs.length, specs.length);
        blobs.forEach((b, i) => assert.deepEqual(bytes.subarray(b.offset, b.offset + b.length), specs[i]!.sealed));
      }),
      { numRuns: 50 },
    );
  });

  it('an empty pack (no blobs) round-trips', () => {
    const { bytes } = buildPack([]);
    assert.equal(bytes.length, 5 + PACK_TRAILER_BYTES);
    assert.deepEqual(parsePack(bytes), []);
  });

  it('a header length that does not fit the pack is refused by the trailer check', () => {
    const t = Buffer.concat([u32le(1000), Buffer.from('HFPK', 'latin1')]);
    assert.throws(() => parsePackTrailer(t, 500, PACK_WHAT), /header length 1000 does not fit a 500-byte pack/);
    assert.throws(() => parsePackTrailer(Buffer.concat([u32le(4), Buffer.from('HFPK', 'latin1')]), 500, PACK_WHAT), CorruptObjectError);
    assert.throws(() => parsePackTrailer(Buffer.concat([u32le(0xffffffff), Buffer.from('HFPK', 'latin1')]), 2 ** 32, PACK_WHAT), CorruptObjectError);
    assert.throws(() => parsePackTrailer(Buffer.from('HFPK'), 500, PACK_WHAT), /not a pack/);
  });

  it('a header claiming 2^32-1 entries fails at once', () => {
    const header = Buffer.concat([Buffer.from([1]), u32le(0xffffffff)]);
    assert.throws(() => parsePackHeader(header, 0, PACK_WHAT), /header holds 0 bytes for 4294967295 entries/);
  });

  it('a pack format version other than 1 is unsupported, naming the pack', () => {
    const { bytes } = buildPack([]);
    bytes[0] = 2;
    assert.throws(() => parsePack(bytes), (e: unknown) => e instanceof UnsupportedVersionError && e.message.startsWith(PACK_WHAT) && /upgrade/.test(e.message));
  });
});

// ---- index files ----

const INDEX_WHAT = `index ${'23'.repeat(32)}`;

const packedBlob: fc.Arbitrary<PackedBlob> = fc.record(
  {
    type: fc.constantFrom(BlobType.Data, BlobType.Tree),
    id: hexId,
    flags: fc.constantFrom(0, FLAG_COMPRESSED),
    offset: u32,
    length: u32,
    rawLength: u32,
  },
  { noNullPrototype: true },
);

const indexArb: fc.Arbitrary<IndexFile> = fc.record(
  {
    packs: fc.array(fc.record({ pack: hexId, blobs: fc.array(packedBlob, { maxLength: 6 }) }, { noNullPrototype: true }), { maxLength: 6 }),
    supersedes: fc.array(hexId, { maxLength: 4 }),
  },
  { noNullPrototype: true },
);

formatSuite<IndexFile>({
  title: 'index file',
  names: new RegExp(`^${INDEX_WHAT} (is damaged|has format version)`),
  valid: indexArb,
  encode: encodeIndex,
  decode: (b) => decodeIndex(b, INDEX_WHAT),
  garbage: [
    randomBuffer(200).map((b) => Buffer.concat([Buffer.from('HFIX', 'latin1'), b])),
    randomBuffer(300).map((b) => Buffer.concat([Buffer.from('HFIX\x01', 'latin1'), b])),
    fc.tuple(fc.nat({ max: 3 }), randomBuffer(300)).map(([n, b]) => Buffer.concat([Buffer.from('HFIX\x01', 'latin1'), u32le(n), b])),
    // a valid index with one u32 somewhere overwritten
    fc.tuple(indexArb, fc.nat(), u32).map(([f, at, v]) => {
      const b = encodeIndex(f);
      const i = 5 + (at % Math.max(1, b.length - 8));
      b.writeUInt32LE(v, Math.min(i, b.length - 4));
      return b;
    }),
  ],
  check: (v) => {
    const f = v as IndexFile;
    for (const p of f.packs) {
      assert.ok(isIdHex(p.pack));
      for (const b of p.blobs) {
        assert.ok(isIdHex(b.id));
        assert.ok(b.type === BlobType.Data || b.type === BlobType.Tree || b.type === BlobType.ImageMap);
        assert.equal(b.flags & ~FLAG_COMPRESSED, 0);
      }
    }
    for (const s of f.supersedes) assert.ok(isIdHex(s));
  },
});

describe('index file: specific cases', () => {
  it('huge counts fail at once, without allocating', () => {
    const head = Buffer.from('HFIX\x01', 'latin1');
    assert.throws(() => decodeIndex(Buffer.concat([head, u32le(0xffffffff)]), INDEX_WHAT), /claims 4294967295 packs/);
    assert.throws(() => decodeIndex(Buffer.concat([head, u32le(1), randomBytes(32), u32le(0xffffffff)]), INDEX_WHAT), /claims 4294967295 blobs/);
    assert.throws(() => decodeIndex(Buffer.concat([head, u32le(0), u32le(0xffffffff)]), INDEX_WHAT), /claims 4294967295 superseded/);
  });

  it('an unknown version is unsupported; trailing bytes are damage', () => {
    const b = encodeIndex({ packs: [], supersedes: [] });
    b[4] = 9;
    assert.throws(() => decodeIndex(b, INDEX_WHAT), UnsupportedVersionError);
    const extra = Buffer.concat([encodeIndex({ packs: [], supersedes: [] }), Buffer.alloc(1)]);
    assert.throws(() => decodeIndex(extra, INDEX_WHAT), CorruptObjectError);
  });
});

// ---- snapshots ----

const SNAPSHOT_WHAT = `snapshot ${'45'.repeat(32)}`;

const summaryArb = fc.record(
  {
    filesNew: fc.nat(),
    filesChanged: fc.nat(),
    filesUnchanged: fc.nat(),
    dirs: fc.nat(),
    otherNodes: fc.nat(),
    errors: fc.nat(),
    totalBytes: fc.maxSafeNat(),
    bytesRead: fc.maxSafeNat(),
    blobsAdded: fc.nat(),
    dataAdded: fc.maxSafeNat(),
    dataAddedStored: fc.maxSafeNat(),
    start: isoTime,
    end: isoTime,
  },
  { noNullPrototype: true },
);

const snapshotArb: fc.Arbitrary<Snapshot> = fc.record(
  {
    time: isoTime,
    hostname: anyString(),
    username: anyString(),
    paths: fc.array(anyString(30).map((s) => `/${s}`), { maxLength: 5 }).map((a) => a.sort()),
    tags: fc.array(anyString(10), { maxLength: 5 }),
    parent: hexId,
    tree: hexId,
    incomplete: fc.constant(true),
    summary: summaryArb,
    blobs: fc.uniqueArray(hexId, { maxLength: 40 }).map((a) => a.sort()),
  },
  { requiredKeys: ['time', 'hostname', 'username', 'paths', 'tags', 'tree', 'summary', 'blobs'], noNullPrototype: true },
);

/** A snapshot object from raw parts: any JSON text and any ids. */
function rawSnapshot(json: Buffer, ids: readonly Buffer[], countDelta = 0): Buffer {
  return Buffer.concat([Buffer.from('HFSN\x02', 'latin1'), u32le(json.length), json, u32le(ids.length + countDelta), ...ids, MAC_KEY]);
}

const snapshotMeta = (s: Snapshot): unknown => {
  const { blobs: _blobs, ...meta } = s;
  return meta;
};

formatSuite<Snapshot>({
  title: 'snapshot',
  names: new RegExp(`^${SNAPSHOT_WHAT} (is damaged|has format version)`),
  valid: snapshotArb,
  encode: (s) => encodeSnapshot(s, MAC_KEY),
  decode: (b) => decodeSnapshot(b, SNAPSHOT_WHAT),
  garbage: [
    fc.tuple(mutatedJson(snapshotArb, snapshotMeta), fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 3 })).map(([j, ids]) =>
      rawSnapshot(jsonBytes(j), ids.map((b) => Buffer.from(b))),
    ),
    fc.tuple(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom(0, 1, -1, 0x7fffffff)).map(([j, d]) => rawSnapshot(jsonBytes(j), [], d)),
    randomBuffer(200).map((b) => Buffer.concat([Buffer.from('HFSN\x02', 'latin1'), b])),
    fc.tuple(randomBuffer(50), u32).map(([b, n]) => Buffer.concat([Buffer.from('HFSN\x02', 'latin1'), u32le(n), b])),
  ],
  check: (v) => {
    const s = v as Snapshot;
    assert.ok(!Number.isNaN(Date.parse(s.time)));
    assert.ok(isIdHex(s.tree));
    if (s.parent !== undefined) assert.ok(isIdHex(s.parent));
    for (const b of s.blobs) assert.ok(isIdHex(b));
    for (const p of [...s.paths, ...s.tags]) assert.equal(typeof p, 'string');
    assert.equal(typeof s.hostname, 'string');
    assert.equal(typeof s.summary, 'object');
    assert.ok(s.incomplete === undefined || s.incomplete === true);
  },
});

describe('snapshot: specific cases', () => {
  it('encoding sorts and de-duplicates the blob list', () => {
    const ids = ['ff'.repeat(32), '00'.repeat(32), 'ff'.repeat(32), '80'.repeat(32)];
    const s = fc.sample(snapshotArb, { seed: 1, numRuns: 1 })[0]!;
    const back = decodeSnapshot(encodeSnapshot({ ...s, blobs: ids }, MAC_KEY), SNAPSHOT_WHAT);
    assert.deepEqual(back.blobs, ['00'.repeat(32), '80'.repeat(32), 'ff'.repeat(32)]);
  });

  it('encoding sorts and de-duplicates any blob list as a sort of the hex would, ids sharing their first bytes included', () => {
    const s = fc.sample(snapshotArb, { seed: 4, numRuns: 1 })[0]!;
    // Few distinct first bytes and tails, so that runs of equal prefixes and duplicates are common.
    const id = fc.tuple(fc.constantFrom('00000000', '0000ffff', 'ffffffff', '80000001'), fc.constantFrom('00', '7f', 'ff', 'a5'), fc.constantFrom('00', '01', 'fe'))
      .map(([head, mid, tail]) => `${head}${mid.repeat(27)}${tail}`);
    fc.assert(fc.property(fc.array(id, { maxLength: 60 }), (ids) => {
      const back = decodeSnapshot(encodeSnapshot({ ...s, blobs: ids }, MAC_KEY), SNAPSHOT_WHAT);
      assert.deepEqual(back.blobs, [...new Set(ids)].sort());
    }));
  });

  it('a blob list made from bytes is the list, and the encoding, that the same ids as hex give', () => {
    const s = fc.sample(snapshotArb, { seed: 6, numRuns: 1 })[0]!;
    const id = fc.tuple(fc.constantFrom('00000000', '0000ffff', 'ffffffff', '80000001'), fc.constantFrom('00', '7f', 'ff', 'a5'), fc.constantFrom('00', '01', 'fe'))
      .map(([head, mid, tail]) => `${head}${mid.repeat(27)}${tail}`);
    fc.assert(fc.property(fc.array(id, { maxLength: 60 }), fc.integer({ min: 0, max: 5 }), (ids, skew) => {
      // At an offset that is not a multiple of four, as a slice of a larger buffer may be.
      const bytes = Buffer.concat([Buffer.alloc(skew), ...ids.map((h) => Buffer.from(h, 'hex'))]).subarray(skew);
      const list = blobIdList(bytes);
      assert.deepEqual([...list], [...new Set(ids)].sort());
      assert.ok(Object.isFrozen(list), 'frozen: its kept encoding cannot go stale');
      assert.deepEqual(encodeSnapshot({ ...s, blobs: list }, MAC_KEY), encodeSnapshot({ ...s, blobs: [...ids] }, MAC_KEY));
    }));
    assert.throws(() => blobIdList(Buffer.alloc(33)), /32 bytes/);
  });

  it('encoding refuses a blob list with an id that is not 64 hex characters', () => {
    const s = fc.sample(snapshotArb, { seed: 5, numRuns: 1 })[0]!;
    for (const bad of [['ab'.repeat(31)], ['zz'.repeat(32)], ['ab'.repeat(31) + 'a', 'ab'.repeat(32) + 'b']]) {
      assert.throws(() => encodeSnapshot({ ...s, blobs: bad }, MAC_KEY), /64 hex characters/, JSON.stringify(bad));
    }
  });

  it('the blob list is made into hex when first read, once, and from the bytes decoded (not from a buffer reused since)', () => {
    const ids = ['01'.repeat(32), 'ab'.repeat(32), 'fe'.repeat(32)];
    const s = fc.sample(snapshotArb, { seed: 2, numRuns: 1 })[0]!;
    const bytes = encodeSnapshot({ ...s, blobs: ids }, MAC_KEY);
    const back = decodeSnapshot(bytes, SNAPSHOT_WHAT);
    // A listing reads every snapshot for its time, host and paths: the list (most of its bytes) waits.
    assert.equal(typeof Object.getOwnPropertyDescriptor(back, 'blobs')?.get, 'function');
    assert.ok(Object.keys(back).includes('blobs'), 'the list is still an enumerable field');
    const first = back.blobs;
    assert.deepEqual(first, ids);
    assert.equal(back.blobs, first, 'made once');
    // The bytes were authenticated as they were when decoded; a buffer the caller reuses later changes nothing.
    const again = decodeSnapshot(bytes, SNAPSHOT_WHAT);
    bytes.fill(0);
    assert.deepEqual(again.blobs, ids);
  });

  it('a version 1 snapshot is refused as planted, not as something to upgrade for', () => {
    const v1 = Buffer.from(encodeSnapshot(fc.sample(snapshotArb, { seed: 3, numRuns: 1 })[0]!, MAC_KEY));
    v1[4] = 1;
    assert.throws(() => decodeSnapshot(v1, SNAPSHOT_WHAT), (e: unknown) => e instanceof CorruptObjectError && /version 1 snapshot \(without a MAC\).*planted/.test(e.message));
  });

  it('with the key: the MAC verifies, and a change to any byte it covers, or to the MAC, fails it', () => {
    fc.assert(
      fc.property(snapshotArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (x, where, mask) => {
        const bytes = encodeSnapshot(x, MAC_KEY);
        authenticateSnapshot(bytes, MAC_KEY, 'ab');
        assert.throws(() => authenticateSnapshot(bytes, Buffer.alloc(32, 8), 'ab'), ForgedObjectError, 'another key');
        const forged = Buffer.from(bytes);
        forged[where % forged.length]! ^= mask;
        assert.throws(() => authenticateSnapshot(forged, MAC_KEY, 'ab'), (e: unknown) => e instanceof ForgedObjectError && /^snapshot ab fails its MAC/.test(e.message));
      }),
      { numRuns: 200 },
    );
  });

  it('huge lengths fail at once', () => {
    assert.throws(() => decodeSnapshot(Buffer.concat([Buffer.from('HFSN\x02', 'latin1'), u32le(0xffffffff)]), SNAPSHOT_WHAT), /truncated while reading json/);
    assert.throws(() => decodeSnapshot(rawSnapshot(Buffer.from('{}'), [], 0xffffffff), SNAPSHOT_WHAT), /claims 4294967295 blob ids/);
  });

  it('a bad time, tree, parent or summary is refused by name', () => {
    const s = fc.sample(snapshotArb, { seed: 2, numRuns: 1 })[0]!;
    const meta = snapshotMeta(s) as Record<string, unknown>;
    const cases: [string, unknown, RegExp][] = [
      ['time', 'yesterday', /bad time/],
      ['tree', 'AB'.repeat(32), /bad tree id/],
      ['parent', null, /bad parent id/],
      ['paths', ['/a', 1], /bad paths/],
      ['summary', [], /bad summary$/],
      ['summary', null, /bad summary$/],
      ['summary', { ...(meta['summary'] as object), filesNew: '1e400' }, /bad summary\.filesNew$/],
      ['summary', { ...(meta['summary'] as object), totalBytes: { a: 1 } }, /bad summary\.totalBytes$/],
      ['summary', { ...(meta['summary'] as object), dataAdded: -5 }, /bad summary\.dataAdded$/],
      ['summary', { ...(meta['summary'] as object), dirs: 1.5 }, /bad summary\.dirs$/],
      ['summary', { ...(meta['summary'] as object), dirsNew: -1 }, /bad summary\.dirsNew$/],
      ['summary', { ...(meta['summary'] as object), treeBlobs: '2' }, /bad summary\.treeBlobs$/],
      ['summary', { ...(meta['summary'] as object), errors: 2 ** 53 }, /bad summary\.errors$/],
      ['summary', { ...(meta['summary'] as object), bytesRead: undefined }, /bad summary\.bytesRead$/],
      ['summary', { ...(meta['summary'] as object), end: null }, /bad summary\.end$/],
      ['summary', { ...(meta['summary'] as object), start: 'soon' }, /bad summary\.start$/],
    ];
    for (const [field, value, message] of cases) {
      assert.throws(() => decodeSnapshot(rawSnapshot(jsonBytes({ ...meta, [field]: value }), []), SNAPSHOT_WHAT), message);
    }
  });
});

// ---- trees ----

const TREE_WHAT = `tree ${'67'.repeat(32)}`;
const NODE_TYPES: readonly NodeType[] = ['file', 'dir', 'symlink', 'fifo', 'chardev', 'blockdev', 'socket'];

/** Name bytes: UTF-8 text, arbitrary bytes (mostly not UTF-8), and known awkward ones. */
const nameBytes: fc.Arbitrary<Buffer> = fc.oneof(
  anyString(16).filter((s) => s.length > 0).map((s) => Buffer.from(s, 'utf8')),
  fc.uint8Array({ minLength: 1, maxLength: 16 }).map((b) => Buffer.from(b)),
  fc.constantFrom(
    Buffer.from([0xff]),
    Buffer.from([0xc3, 0x28]),
    Buffer.from('caf\xe9', 'latin1'),
    Buffer.from([0xed, 0xa0, 0x80]), // an encoded surrogate: not valid UTF-8
    Buffer.from([0xef, 0xbb, 0xbf, 0x41]), // BOM then "A"
    Buffer.from('e\u0301', 'utf8'),
    Buffer.from('\u00e9', 'utf8'),
    Buffer.from('\u0000\n\\"'),
  ),
);

const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const i64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });

/** Extended attributes: names of bytes without NUL (any bytes else), values of any bytes, sorted by name. */
const xattrList = fc.uniqueArray(
  fc.record({ name: fc.uint8Array({ minLength: 1, maxLength: 12 }).map((b) => Buffer.from(b.map((x) => x || 1))), value: randomBuffer(24) }, { noNullPrototype: true }),
  { selector: (x) => x.name.toString('hex'), minLength: 1, maxLength: 4 },
).map((xs) => xs.sort((a, b) => Buffer.compare(a.name, b.name)));

const nodeBase = fc.record(
  {
    name: nameBytes,
    mode: fc.integer({ min: 0, max: 0o7777 }),
    uid: u32,
    gid: u32,
    user: anyString(8),
    group: anyString(8),
    mtime: i64,
    ctime: i64,
    inode: u64,
    device: u64,
    links: u32,
    size: fc.maxSafeNat(),
    xattrs: xattrList,
  },
  { requiredKeys: ['name', 'mode', 'uid', 'gid', 'mtime', 'ctime', 'inode', 'device', 'links', 'size'], noNullPrototype: true },
);

/** Holes are positive zero runs; ids are hex; slices have an offset and a positive length. */
const contentEntry = fc.oneof(
  hexId,
  fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  fc.record({ blob: hexId, offset: fc.maxSafeNat(), length: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }) }, { noNullPrototype: true }),
);
const fingerprintHex = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b).toString('hex'));

const nodeExtra: fc.Arbitrary<{ type: NodeType } & Partial<TreeNode>> = fc.oneof(
  fc.record(
    { type: fc.constant('file' as const), content: fc.array(contentEntry, { maxLength: 6 }), fingerprint: fingerprintHex },
    { requiredKeys: ['type', 'content'], noNullPrototype: true },
  ),
  fc.record({ type: fc.constant('dir' as const), subtree: hexId }, { noNullPrototype: true }),
  fc.record({ type: fc.constant('symlink' as const), target: fc.oneof(nameBytes, randomBuffer(40)) }, { noNullPrototype: true }),
  fc.record({ type: fc.constantFrom('chardev' as const, 'blockdev' as const), rdev: u64 }, { noNullPrototype: true }),
  fc.record({ type: fc.constantFrom('fifo' as const, 'socket' as const) }, { noNullPrototype: true }),
);

const treeNode: fc.Arbitrary<TreeNode> = fc.tuple(nodeBase, nodeExtra).map(([b, e]) => ({ ...b, ...e }) as TreeNode);
/**
 * Binary trees store user and group names as UTF-8, so only well-formed
 * strings survive (names come from /etc/passwd and /etc/group decoded as
 * UTF-8, which never yields a lone surrogate).
 */
const treeArb = fc.uniqueArray(
  fc.tuple(treeNode, fc.option(fc.string({ unit: 'grapheme', maxLength: 8 }), { nil: undefined }), fc.option(fc.string({ unit: 'grapheme', maxLength: 8 }), { nil: undefined })).map(([n, user, group]) => {
    const { user: _u, group: _g, ...rest } = n;
    return { ...rest, ...(user === undefined ? {} : { user }), ...(group === undefined ? {} : { group }) } as TreeNode;
  }),
  { selector: (n) => n.name.toString('hex'), maxLength: 8 },
);
const byName = (a: TreeNode, b: TreeNode): number => Buffer.compare(a.name, b.name);

function checkTree(v: unknown): void {
  for (const n of v as TreeNode[]) {
    assert.ok(Buffer.isBuffer(n.name) && n.name.length > 0);
    assert.ok(NODE_TYPES.includes(n.type));
    assert.ok(Number.isInteger(n.mode) && n.mode >= 0 && n.mode <= 0o7777);
    for (const f of ['uid', 'gid', 'links', 'size'] as const) assert.ok(Number.isSafeInteger(n[f]) && n[f] >= 0, f);
    for (const f of ['mtime', 'ctime', 'inode', 'device'] as const) assert.equal(typeof n[f], 'bigint', f);
    if (n.type === 'file') {
      assert.ok(Array.isArray(n.content));
      for (const c of n.content) {
        if (typeof c === 'object') assert.ok(isIdHex(c.blob) && Number.isSafeInteger(c.offset) && c.offset >= 0 && Number.isSafeInteger(c.length) && c.length > 0);
        else assert.ok(isIdHex(c) || (typeof c === 'number' && Number.isSafeInteger(c) && c > 0));
      }
      if (n.fingerprint !== undefined) assert.match(n.fingerprint, /^[0-9a-f]{32}$/);
    }
    if (n.type === 'dir') assert.ok(isIdHex(n.subtree));
    if (n.type === 'symlink') assert.ok(Buffer.isBuffer(n.target));
    if (n.type === 'chardev' || n.type === 'blockdev') assert.equal(typeof n.rdev, 'bigint');
    if (n.xattrs !== undefined) {
      assert.ok(n.xattrs.length > 0);
      for (const x of n.xattrs) assert.ok(Buffer.isBuffer(x.name) && x.name.length > 0 && !x.name.includes(0) && Buffer.isBuffer(x.value));
    }
  }
}

formatSuite<TreeNode[]>({
  title: 'tree',
  names: new RegExp(`^${TREE_WHAT} is damaged|^${TREE_WHAT} has format version`),
  valid: treeArb,
  encode: (t) => encodeTree(t),
  decode: (b) => decodeTree(b, TREE_WHAT),
  canonical: (nodes) => [...nodes].sort(byName),
  garbage: [
    // Past the magic and version, so the node decoder meets the garbage.
    randomBuffer(200).map((b) => Buffer.concat([Buffer.from('HFTR\x01', 'latin1'), b])),
    fc.tuple(fc.integer({ min: 0, max: 20 }), randomBuffer(300)).map(([n, b]) => {
      const head = Buffer.from('HFTR\x01\0\0\0\0', 'latin1');
      head.writeUInt32LE(n, 5);
      return Buffer.concat([head, b]);
    }),
  ],
  check: checkTree,
});

const u16le = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
};
const i64le = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(v);
  return b;
};

describe('tree: specific cases', () => {
  const base = { mode: 0o644, uid: 0, gid: 0, mtime: 0n, ctime: 0n, inode: 1n, device: 1n, links: 1, size: 0 };

  it('gives each node its own user and group where neighbours share, differ, or differ in bytes of the same length', () => {
    const owners: [string | undefined, string | undefined][] = [['root', 'wheel'], ['root', 'wheel'], ['www', 'ü'], ['wwx', 'ü'], [undefined, 'wheel'], ['root', undefined], ['', 'ab'], ['ba', 'ab']];
    const nodes: TreeNode[] = owners.map(([user, group], i) => ({
      ...base, name: Buffer.from(`n${i}`), type: 'fifo', ...(user === undefined ? {} : { user }), ...(group === undefined ? {} : { group }),
    }));
    const back = decodeTree(encodeTree(nodes), TREE_WHAT);
    assert.deepEqual(back.map((n) => [n.user, n.group]), owners);
  });

  it('refuses to encode an id that is not hex and integers outside their fields, as Buffer\'s writes did', () => {
    const file = (c: string): TreeNode => ({ ...base, name: Buffer.from('f'), type: 'file', content: [c] });
    for (const bad of ['g'.repeat(64), 'ab'.repeat(31), 'ab'.repeat(33), `${'ab'.repeat(31)}\u00e9a`, `${'ab'.repeat(31)}\u0130a`, `${'ab'.repeat(31)}a `]) {
      assert.throws(() => encodeTree([file(bad)]), (e: unknown) => e instanceof RangeError && /is not 32 bytes of hex/.test(e.message), JSON.stringify(bad));
    }
    const upper = decodeTree(encodeTree([file('AB'.repeat(32))]), TREE_WHAT)[0]!;
    assert.deepEqual(upper.content, ['ab'.repeat(32)]);
    for (const n of [{ mtime: 2n ** 63n }, { ctime: -(2n ** 63n) - 1n }, { inode: -1n }, { device: 2n ** 64n }]) {
      assert.throws(() => encodeTree([{ ...base, name: Buffer.from('x'), type: 'fifo', ...n }]), RangeError, JSON.stringify(Object.keys(n)));
    }
    const edges = { mtime: -(2n ** 63n), ctime: 2n ** 63n - 1n, inode: 2n ** 64n - 1n, device: 0n };
    assert.deepEqual(decodeTree(encodeTree([{ ...base, name: Buffer.from('x'), type: 'fifo', ...edges }]), TREE_WHAT)[0], { ...base, name: Buffer.from('x'), type: 'fifo', ...edges });
  });

  it('keeps names and targets that are not UTF-8 byte for byte', () => {
    const bad = Buffer.from([0x66, 0xff, 0x6f]);
    const nodes: TreeNode[] = [
      { ...base, name: bad, type: 'symlink', target: bad },
      { ...base, name: Buffer.from('ok'), type: 'symlink', target: Buffer.from('/t') },
    ];
    assert.deepEqual(decodeTree(encodeTree(nodes), TREE_WHAT), [...nodes].sort(byName));
  });

  it('refuses a JSON tree (the encoding of repositories before format version 3) as damaged', () => {
    for (const json of ['{"nodes":[]}', '{"nodes":[{"name":"a","type":"fifo","mode":420,"uid":0,"gid":0,"mtime":"0","ctime":"0","inode":"1","device":"1","links":1,"size":0}]}']) {
      assert.throws(() => decodeTree(Buffer.from(json), TREE_WHAT), (e: unknown) => e instanceof CorruptObjectError && /is damaged: not a HFTR object \(bad magic\)/.test(e.message), json);
    }
  });

  it('refuses a tree with a duplicate or unsorted name once, as damage of the tree (one warning per node and path made ls print 213 M lines)', () => {
    const fifo = (name: string): TreeNode => ({ ...base, name: Buffer.from(name), type: 'fifo' });
    const binary = (names: string[]): Buffer => {
      const one = encodeTree([fifo('a')]);
      const node = one.subarray(9);
      const b = Buffer.concat([one.subarray(0, 9), ...names.map((n) => Buffer.concat([node.subarray(0, 2), Buffer.from(n), node.subarray(3)]))]);
      b.writeUInt32LE(names.length, 5);
      return b;
    };
    for (const names of [['a', 'a'], ['b', 'a'], ['a', 'c', 'b']]) {
      assert.throws(() => decodeTree(binary(names), TREE_WHAT), (e: unknown) => e instanceof CorruptObjectError && /is damaged: the name of node \d is a duplicate or out of order/.test(e.message), names.join());
    }
    assert.equal(decodeTree(binary(['a', 'b']), TREE_WHAT).length, 2);
  });

  it(`refuses a tree of more than ${MAX_TREE_NODES} nodes, and refuses to write one or one with two nodes of one name`, () => {
    const header = Buffer.alloc(9);
    header.write('HFTR', 0, 'latin1');
    header.writeUInt8(1, 4);
    header.writeUInt32LE(MAX_TREE_NODES + 1, 5);
    assert.throws(() => decodeTree(header, TREE_WHAT), /is damaged: 2097153 nodes are more than a tree may hold \(2097152\)/);
    const node: TreeNode = { ...base, name: Buffer.from('a'), type: 'fifo' };
    const tooMany: TreeNode[] = new Array<TreeNode>(MAX_TREE_NODES + 1).fill(node);
    assert.throws(() => encodeTree(tooMany), /a folder of 2097153 entries is more than one tree may hold \(2097152/);
    assert.throws(() => encodeTree([node, { ...node }]), /two entries of one folder are named "a"/);
  });

  it('keeps holes in a file content list', () => {
    const content = ['aa'.repeat(32), 4096, 'bb'.repeat(32), Number.MAX_SAFE_INTEGER];
    const [n] = decodeTree(encodeTree([{ ...base, name: Buffer.from('f'), type: 'file', content }]), TREE_WHAT);
    assert.deepEqual(n?.content, content);
  });

  it('keeps slices of blobs and the fingerprint', () => {
    const content = [{ blob: 'aa'.repeat(32), offset: 0, length: 10 }, 4096, { blob: 'bb'.repeat(32), offset: 77, length: 1 }];
    const [n] = decodeTree(encodeTree([{ ...base, name: Buffer.from('f'), type: 'file', content, fingerprint: 'cc'.repeat(16) }]), TREE_WHAT);
    assert.deepEqual(n?.content, content);
    assert.equal(n?.fingerprint, 'cc'.repeat(16));
  });

  it('binary: lays out a node as docs/format.md §6.5 says', () => {
    const bytes = encodeTree([{ ...base, name: Buffer.from('d'), type: 'dir', mode: 0o755, uid: 1000, gid: 100, mtime: -5n, ctime: 7n, inode: 2n ** 64n - 1n, device: 3n, links: 2, size: 0, user: 'al', subtree: 'ab'.repeat(32) }]);
    const expected = Buffer.concat([
      Buffer.from('HFTR\x01', 'latin1'), u32le(1),
      u16le(1), Buffer.from('d'), Buffer.from([1, 1]), u16le(0o755), u32le(1000), u32le(100),
      i64le(-5n), i64le(7n), i64le(-1n), i64le(3n), i64le(2n), i64le(0n),
      u16le(2), Buffer.from('al'), Buffer.from('ab'.repeat(32), 'hex'),
    ]);
    assert.deepEqual(bytes, expected);
  });

  it('binary: refuses an unknown version, unknown flags, a fingerprint outside a file, a mode above 0o7777, trailing bytes', () => {
    const good = encodeTree([{ ...base, name: Buffer.from('x'), type: 'fifo' }]);
    const at = (i: number, v: number): Buffer => {
      const b = Buffer.from(good);
      b[i] = v;
      return b;
    };
    const flags = 4 + 1 + 4 + 2 + 1 + 1;
    assert.throws(() => decodeTree(at(4, 2), TREE_WHAT), (e: unknown) => e instanceof UnsupportedVersionError && /format version 2/.test(e.message));
    assert.throws(() => decodeTree(at(flags, 0x20), TREE_WHAT), /unknown node flags/);
    assert.throws(() => decodeTree(at(flags, 4), TREE_WHAT), /a fingerprint on a node that is not a file/);
    assert.throws(() => decodeTree(at(flags + 2, 0x10), TREE_WHAT), /bad mode/);
    assert.throws(() => decodeTree(at(flags - 1, 7), TREE_WHAT), /bad node type/);
    assert.throws(() => decodeTree(Buffer.concat([good, Buffer.from([0])]), TREE_WHAT), /1 unexpected trailing bytes/);
    assert.throws(() => decodeTree(at(0, 0x68), TREE_WHAT), /bad magic/);
  });

  it('binary: lays out extended attributes after the group, as docs/format.md §6.5 says, names and values byte for byte', () => {
    const xattrs = [{ name: Buffer.from([0x61, 0xff]), value: Buffer.from([0, 1]) }, { name: Buffer.from('user.x'), value: Buffer.alloc(0) }];
    const node: TreeNode = { ...base, name: Buffer.from('f'), type: 'fifo', group: 'g', xattrs };
    const bytes = encodeTree([node]);
    const head = 4 + 1 + 4 + 2 + 1 + 1 + 1 + 2 + 4 + 4 + 6 * 8;
    assert.equal(bytes[4 + 1 + 4 + 2 + 1 + 1], 0x10 | 2);
    assert.deepEqual(bytes.subarray(head), Buffer.concat([
      u16le(1), Buffer.from('g'),
      u32le(2), Buffer.from([2, 0x61, 0xff]), u32le(2), Buffer.from([0, 1]), Buffer.from([6]), Buffer.from('user.x'), u32le(0),
    ]));
    assert.deepEqual(decodeTree(bytes, TREE_WHAT), [node]);
  });

  it('binary: refuses an empty list of extended attributes, an empty name, one with a NUL, a duplicate or one out of order, and will not write them', () => {
    const fifo = (xattrs: { name: Buffer; value: Buffer }[]): TreeNode => ({ ...base, name: Buffer.from('x'), type: 'fifo', xattrs });
    const good = encodeTree([fifo([{ name: Buffer.from('a'), value: Buffer.from('1') }, { name: Buffer.from('b'), value: Buffer.from('2') }])]);
    const list = 4 + 1 + 4 + 2 + 1 + 1 + 1 + 2 + 4 + 4 + 6 * 8;
    const at = (i: number, v: number): Buffer => {
      const b = Buffer.from(good);
      b[i] = v;
      return b;
    };
    const empty = Buffer.concat([good.subarray(0, list), u32le(0)]);
    assert.throws(() => decodeTree(empty, TREE_WHAT), /is damaged: an empty list of extended attributes/);
    assert.throws(() => decodeTree(at(list + 5, 0), TREE_WHAT), /is damaged: an extended attribute name that is empty or holds a NUL/);
    assert.throws(() => decodeTree(at(list + 5 + 1 + 4 + 1 + 1, 0x61), TREE_WHAT), /is damaged: an extended attribute name that is a duplicate or out of order/);
    assert.throws(() => decodeTree(at(list + 5 + 1 + 4 + 1 + 1, 0x30), TREE_WHAT), /is damaged: an extended attribute name that is a duplicate or out of order/);
    const cut = Buffer.concat([good.subarray(0, list), u32le(0xffff_ffff)]);
    assert.throws(() => decodeTree(cut, TREE_WHAT), /is damaged: 4294967295 extended attributes cannot fit/);
    for (const bad of [[], [{ name: Buffer.alloc(0), value: Buffer.alloc(0) }], [{ name: Buffer.from('a\0b'), value: Buffer.alloc(0) }], [{ name: Buffer.alloc(256, 0x61), value: Buffer.alloc(0) }],
      [{ name: Buffer.from('b'), value: Buffer.alloc(0) }, { name: Buffer.from('a'), value: Buffer.alloc(0) }], [{ name: Buffer.from('a'), value: Buffer.alloc(0) }, { name: Buffer.from('a'), value: Buffer.alloc(0) }]]) {
      assert.throws(() => encodeTree([fifo(bad)]), RangeError, JSON.stringify(bad.map((x) => x.name.toString())));
    }
  });

  it('binary: refuses an empty name, an empty hole or slice, an unknown content entry, a number above 2^53 - 1', () => {
    const fifo = encodeTree([{ ...base, name: Buffer.from('x'), type: 'fifo' }]);
    assert.throws(() => decodeTree(Buffer.concat([fifo.subarray(0, 9), u16le(0), fifo.subarray(12)]), TREE_WHAT), /is damaged: node without a name/);
    const hole = encodeTree([{ ...base, name: Buffer.from('f'), type: 'file', content: [4096] }]);
    const slice = encodeTree([{ ...base, name: Buffer.from('f'), type: 'file', content: [{ blob: 'aa'.repeat(32), offset: 0, length: 1 }] }]);
    /** `b` with its last bytes replaced by `tail`. */
    const ending = (b: Buffer, tail: number[]): Buffer => Buffer.concat([b.subarray(0, b.length - tail.length), Buffer.from(tail)]);
    assert.throws(() => decodeTree(ending(hole, [0, 0, 0, 0, 0, 0, 0, 0]), TREE_WHAT), /is damaged: bad file content list: an empty hole/);
    assert.throws(() => decodeTree(ending(slice, [0, 0, 0, 0, 0, 0, 0, 0]), TREE_WHAT), /is damaged: bad file content list: an empty slice/);
    assert.throws(() => decodeTree(ending(hole, [3, 0, 16, 0, 0, 0, 0, 0, 0]), TREE_WHAT), /is damaged: bad file content list: unknown entry/);
    assert.throws(() => decodeTree(ending(hole, [0, 0, 0, 0, 0, 0, 0x20, 0]), TREE_WHAT), /is damaged: hole is larger than 2\^53 - 1/);
    assert.equal(decodeTree(ending(hole, [0, 0, 0, 0, 0, 0, 0x1f, 0]), TREE_WHAT)[0]?.content?.[0], 0x1f * 2 ** 48);
  });
});
