/**
 * The conformance suite every `Backend` must pass. A backend's test file is a
 * few lines:
 *
 *   backendConformance('LocalBackend', async (o) => new LocalBackend(freshDir(), o));
 *
 * `make` must return a new, empty backend on each call, listing
 * `o.listPageSize` names a page (the suite sets it small, to list across
 * pages); the suite calls `create()` itself (it is idempotent) and `close()`
 * at the end of each test.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';

import {
  AlreadyExistsError,
  NotFoundError,
  OBJECT_TYPES,
  ObjectTooLargeError,
  ShortReadError,
  type Backend,
  type Handle,
  type LoadOptions,
  type ObjectInfo,
  type ObjectType,
} from '../../src/storage/backend.js';

/** A content-address-like name (64 lowercase hex digits) derived from `seed`. */
export function hexName(seed: string): string {
  return createHash('sha256').update(seed).digest('hex');
}

/** A valid handle of `type`: `config` for the config object, `hexName(seed)` otherwise. */
export function handleOf(type: ObjectType, seed = 'x'): Handle {
  return { type, name: type === 'config' ? 'config' : hexName(seed) };
}

/** `n` bytes of a recognisable pattern. */
export function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** Every entry of `b.list(type)`, sorted by name. */
export async function listAll(b: Backend, type: ObjectType): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of b.list(type)) out.push(info);
  return out.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
}

/** Registers the shared `Backend` tests under `describe(name)`. */
/** What the suite asks of the backends it makes. */
export interface ConformanceOptions {
  /** How many names a listing fetches at a time. */
  readonly listPageSize: number;
}

/** The page size the suite asks for: small, so that a few objects span several pages. */
export const CONFORMANCE_PAGE_SIZE = 3;

/** Every entry of `b.list(type, { prefix })`, as names, sorted. */
async function namesWith(b: Backend, type: ObjectType, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const info of b.list(type, { prefix })) out.push(info.name);
  return out.sort();
}

/** Drains an iterable (to see how it ends). */
async function drain(it: AsyncIterable<ObjectInfo>): Promise<number> {
  let n = 0;
  for await (const _ of it) n++;
  return n;
}

/** A reason to abort with that no backend would throw of its own accord. */
function abortReason(what: string): Error {
  return Object.assign(new Error(`test abort: ${what}`), { code: 'TEST_ABORT' });
}

/** Registers the shared `Backend` tests under `describe(name)`. */
export function backendConformance(name: string, make: (opts: ConformanceOptions) => Promise<Backend>): void {
  async function withBackend(fn: (b: Backend) => Promise<void>): Promise<void> {
    const b = await make({ listPageSize: CONFORMANCE_PAGE_SIZE });
    await b.create();
    try {
      await fn(b);
    } finally {
      await b.close();
    }
  }

  describe(`${name} conformance`, () => {
    it('has a location', () =>
      withBackend(async (b) => {
        assert.equal(typeof b.location, 'string');
        assert.ok(b.location.length > 0);
      }));

    for (const type of OBJECT_TYPES) {
      it(`saves and loads a ${type} object`, () =>
        withBackend(async (b) => {
          const h = handleOf(type, `round-${type}`);
          const data = bytes(1000, 7);
          await b.save(h, data);
          assert.deepEqual(await b.load(h), data);
          assert.deepEqual(await b.stat(h), { name: h.name, size: 1000 });
        }));
    }

    it('accepts a plain Uint8Array and returns a Buffer', () =>
      withBackend(async (b) => {
        const h = handleOf('index', 'u8');
        await b.save(h, new Uint8Array([1, 2, 3]));
        const got = await b.load(h);
        assert.ok(Buffer.isBuffer(got));
        assert.deepEqual([...got], [1, 2, 3]);
      }));

    it('reads ranges', () =>
      withBackend(async (b) => {
        const h = handleOf('data', 'range');
        const data = bytes(100);
        await b.save(h, data);
        assert.deepEqual(await b.load(h, { offset: 10, length: 20 }), data.subarray(10, 30));
        assert.deepEqual(await b.load(h, { offset: 0, length: 100 }), data);
        assert.deepEqual(await b.load(h, { offset: 90 }), data.subarray(90), 'offset without length reads to the end');
        assert.deepEqual(await b.load(h, { offset: 100 }), Buffer.alloc(0), 'offset at the end reads nothing');
        assert.deepEqual(await b.load(h, { offset: 50, length: 0 }), Buffer.alloc(0));
        assert.deepEqual(await b.load(h, { offset: -10 }), data.subarray(90), 'negative offset counts from the end');
        assert.deepEqual(await b.load(h, { offset: -10, length: 3 }), data.subarray(90), 'length is ignored with a negative offset');
        assert.deepEqual(await b.load(h, { offset: -100 }), data);
      }));

    it('rejects ranges past the end with ShortReadError', () =>
      withBackend(async (b) => {
        const h = handleOf('data', 'short');
        await b.save(h, bytes(100));
        await assert.rejects(b.load(h, { offset: 90, length: 20 }), ShortReadError);
        await assert.rejects(b.load(h, { offset: 0, length: 101 }), ShortReadError);
        await assert.rejects(b.load(h, { offset: 101 }), ShortReadError);
        await assert.rejects(b.load(h, { offset: 200, length: 1 }), ShortReadError);
        await assert.rejects(b.load(h, { offset: -101 }), ShortReadError);
        assert.deepEqual(await b.load(h), bytes(100), 'a failed range read leaves the object alone');
      }));

    it('refuses a load of more than maxBytes before reading it, and reads up to it', () =>
      withBackend(async (b) => {
        const h = handleOf('snapshot', 'max');
        const data = bytes(100);
        await b.save(h, data);
        const loads: [LoadOptions, number, number][] = [[{}, 0, 100], [{ offset: 10 }, 10, 100], [{ offset: -60 }, 40, 100], [{ offset: 0, length: 80 }, 0, 80]];
        for (const [opts, start, end] of loads) {
          await assert.rejects(b.load(h, { ...opts, maxBytes: end - start - 1 }), (e: unknown) => {
            assert.ok(e instanceof ObjectTooLargeError, String(e));
            assert.deepEqual([e.code, e.handle, e.size, e.maxBytes], ['TOO_LARGE', h, end - start, end - start - 1]);
            return true;
          });
          assert.deepEqual(await b.load(h, { ...opts, maxBytes: end - start }), data.subarray(start, end));
        }
        assert.deepEqual(await b.load(h, { offset: 10, length: 5, maxBytes: 5 }), data.subarray(10, 15));
        await assert.rejects(b.load(h, { maxBytes: -1 }), RangeError);
        await assert.rejects(b.load(h, { maxBytes: 1.5 }), RangeError);
        await assert.rejects(b.load(handleOf('snapshot', 'absent'), { maxBytes: 1 }), NotFoundError);
      }));

    it('reports missing objects', () =>
      withBackend(async (b) => {
        for (const type of OBJECT_TYPES) {
          const h = handleOf(type, 'missing');
          await assert.rejects(b.load(h), NotFoundError);
          await assert.rejects(b.load(h, { offset: 0, length: 1 }), NotFoundError);
          await assert.rejects(b.load(h, { offset: -1 }), NotFoundError);
          if (b.capabilities.removeMissingIsError) await assert.rejects(b.remove(h), NotFoundError);
          else await b.remove(h);
          assert.equal(await b.stat(h), undefined);
          assert.deepEqual(await listAll(b, type), []);
        }
      }));

    it('NotFoundError carries the handle', () =>
      withBackend(async (b) => {
        const h = handleOf('snapshot', 'nf');
        await assert.rejects(b.load(h), (err: unknown) => err instanceof NotFoundError && err.handle.name === h.name);
      }));

    it('refuses to overwrite and keeps the original bytes', () =>
      withBackend(async (b) => {
        for (const type of OBJECT_TYPES) {
          const h = handleOf(type, 'once');
          await b.save(h, bytes(50, 1));
          await assert.rejects(b.save(h, bytes(80, 2)), AlreadyExistsError);
          // The message names the object as a person would look for it: "config", not "config/config".
          await assert.rejects(b.save(h, Buffer.alloc(0)), (e: unknown) => e instanceof AlreadyExistsError && e.message === `${type === 'config' ? 'config' : `${type}/${h.name}`} already exists`);
          assert.deepEqual(await b.load(h), bytes(50, 1));
          assert.deepEqual(await b.stat(h), { name: h.name, size: 50 });
        }
      }));

    it('removes once; a second remove reports NotFoundError or resolves, as the capabilities say; the name can be saved again', () =>
      withBackend(async (b) => {
        const h = handleOf('lock', 'rm');
        await b.save(h, bytes(10));
        await b.remove(h);
        if (b.capabilities.removeMissingIsError) await assert.rejects(b.remove(h), NotFoundError);
        else await b.remove(h);
        await assert.rejects(b.load(h), NotFoundError);
        assert.equal(await b.stat(h), undefined);
        assert.deepEqual(await listAll(b, 'lock'), []);
        await b.save(h, bytes(3, 9));
        assert.deepEqual(await b.load(h), bytes(3, 9));
      }));

    it('stats objects', () =>
      withBackend(async (b) => {
        const h = handleOf('key', 'stat');
        assert.equal(await b.stat(h), undefined);
        await b.save(h, bytes(1234));
        assert.deepEqual(await b.stat(h), { name: h.name, size: 1234 });
      }));

    it('lists each type separately', () =>
      withBackend(async (b) => {
        // The same name under every type, plus one name of each type's own.
        const shared = hexName('shared');
        const expected = new Map<ObjectType, ObjectInfo[]>();
        for (const [i, type] of OBJECT_TYPES.entries()) {
          if (type === 'config') {
            await b.save({ type, name: 'config' }, bytes(5));
            expected.set(type, [{ name: 'config', size: 5 }]);
            continue;
          }
          const own = hexName(`own-${type}`);
          await b.save({ type, name: shared }, bytes(i + 1));
          await b.save({ type, name: own }, bytes(i + 100));
          const infos = [
            { name: shared, size: i + 1 },
            { name: own, size: i + 100 },
          ];
          expected.set(type, infos.sort((x, y) => (x.name < y.name ? -1 : 1)));
        }
        for (const type of OBJECT_TYPES) assert.deepEqual(await listAll(b, type), expected.get(type), `list(${type})`);
      }));

    it('declares its capabilities', () =>
      withBackend(async (b) => {
        const c = b.capabilities;
        assert.ok(Number.isSafeInteger(c.connections) && c.connections >= 1, `connections ${c.connections}`);
        assert.equal(typeof c.appendOnly, 'boolean');
        assert.equal(typeof c.removeMissingIsError, 'boolean');
        assert.ok(c.localPath === undefined || (typeof c.localPath === 'string' && c.localPath.startsWith('/')), `localPath ${c.localPath}`);
        assert.equal(b.capabilities.connections, c.connections, 'constant');
      }));

    it('lists by prefix, within one data subfolder and across several', () =>
      withBackend(async (b) => {
        // Names under data subfolders 0a, 0b and 1a, and the same names as index objects.
        const names = ['0a00', '0a01', '0a1f', '0b00', '0b9', '1a00', '1a0000'].map((n) => n + hexName(n).slice(0, 8));
        for (const n of names) await b.save({ type: 'data', name: n }, bytes(2));
        for (const n of names) await b.save({ type: 'index', name: n }, bytes(2));
        const expect = (prefix: string) => names.filter((n) => n.startsWith(prefix)).sort();
        for (const type of ['data', 'index'] as const) {
          for (const prefix of ['', '0', '0a', '0a0', '0a00', '0b', '1', '1a00', names[6] ?? '']) {
            assert.deepEqual(await namesWith(b, type, prefix), expect(prefix), `${type} prefix "${prefix}"`);
          }
          for (const prefix of ['2', '0c', '0a2', `${names[0]}0`, 'f', 'z', '-']) {
            assert.deepEqual(await namesWith(b, type, prefix), [], `${type} prefix "${prefix}" matches nothing`);
          }
        }
        assert.deepEqual(await namesWith(b, 'snapshot', '0'), [], 'other types hold none of them');
        await b.save({ type: 'config', name: 'config' }, bytes(1));
        assert.deepEqual(await namesWith(b, 'config', 'con'), ['config']);
        assert.deepEqual(await namesWith(b, 'config', 'x'), []);
        const infos: ObjectInfo[] = [];
        for await (const info of b.list('data', { prefix: '0a' })) infos.push(info);
        assert.ok(infos.every((i) => i.size === 2), 'a prefix listing gives sizes too');
      }));

    it(`lists more objects than one page of ${CONFORMANCE_PAGE_SIZE} holds, each exactly once`, () =>
      withBackend(async (b) => {
        for (const count of [CONFORMANCE_PAGE_SIZE - 1, CONFORMANCE_PAGE_SIZE, CONFORMANCE_PAGE_SIZE + 1, 4 * CONFORMANCE_PAGE_SIZE + 2]) {
          const type: ObjectType = count % 2 === 0 ? 'snapshot' : 'key';
          const names = Array.from({ length: count }, (_, i) => hexName(`page-${count}-${i}`));
          for (const n of names) await b.save({ type, name: n }, bytes(4));
          const listed: string[] = [];
          for await (const info of b.list(type)) listed.push(info.name);
          assert.deepEqual(listed.sort(), [...names].sort(), `${count} objects`);
          for (const n of names) await b.remove({ type, name: n });
        }
        // Data across subfolders, with one subfolder holding more than a page.
        const data = [...Array.from({ length: 2 * CONFORMANCE_PAGE_SIZE + 1 }, (_, i) => `ab${i}`), 'ac1', 'ff0', '000'];
        for (const n of data) await b.save({ type: 'data', name: n }, bytes(1));
        assert.deepEqual((await listAll(b, 'data')).map((i) => i.name), [...data].sort());
        assert.deepEqual(await namesWith(b, 'data', 'ab'), data.filter((n) => n.startsWith('ab')).sort());
      }));

    it('does nothing and rejects with the reason when the signal is aborted before the call', () =>
      withBackend(async (b) => {
        const ac = new AbortController();
        const reason = abortReason('before');
        ac.abort(reason);
        const signal = ac.signal;
        const there = handleOf('data', 'there');
        await b.save(there, bytes(8));
        const absent = handleOf('data', 'absent');
        const isReason = (e: unknown) => e === reason;
        await assert.rejects(b.save(absent, bytes(8), { signal }), isReason, 'save');
        await assert.rejects(b.load(there, { signal }), isReason, 'load');
        await assert.rejects(b.load(there, { offset: 1, length: 2, signal }), isReason, 'range load');
        await assert.rejects(b.stat(there, { signal }), isReason, 'stat');
        await assert.rejects(b.remove(there, { signal }), isReason, 'remove');
        await assert.rejects(b.create({ signal }), isReason, 'create');
        await assert.rejects(drain(b.list('data', { signal })), isReason, 'list');
        await assert.rejects(drain(b.list('data', { prefix: 'ab', signal })), isReason, 'prefix list');
        assert.equal(await b.stat(absent), undefined, 'the aborted save stored nothing');
        assert.deepEqual(await b.load(there), bytes(8), 'the aborted remove removed nothing');
      }));

    it('ends a listing with the reason when the signal is aborted during it', () =>
      withBackend(async (b) => {
        const names = Array.from({ length: 4 * CONFORMANCE_PAGE_SIZE }, (_, i) => hexName(`abort-list-${i}`));
        for (const n of names) await b.save({ type: 'snapshot', name: n }, bytes(1));
        const ac = new AbortController();
        const reason = abortReason('during list');
        const seen: string[] = [];
        await assert.rejects(
          (async () => {
            for await (const info of b.list('snapshot', { signal: ac.signal })) {
              seen.push(info.name);
              if (seen.length === CONFORMANCE_PAGE_SIZE + 1) ac.abort(reason);
            }
          })(),
          (e: unknown) => e === reason,
        );
        assert.equal(seen.length, CONFORMANCE_PAGE_SIZE + 1, 'no entry after the abort');
      }));

    it('leaves no object or the whole object when a save is aborted midway; a load aborted midway gives the reason or the bytes', () =>
      withBackend(async (b) => {
        const data = bytes(1 << 20, 5);
        for (let i = 0; i < 4; i++) {
          const h = handleOf('data', `abort-save-${i}`);
          const ac = new AbortController();
          const reason = abortReason('during save');
          const saving = b.save(h, data, { signal: ac.signal });
          // Aborted after 0, 1, 2, 3 turns of the event loop: somewhere inside the save.
          for (let t = 0; t < i; t++) await new Promise((r) => setImmediate(r));
          ac.abort(reason);
          const outcome = await saving.then(() => 'saved', (e: unknown) => e);
          if (outcome === 'saved') {
            assert.deepEqual(await b.load(h), data, 'a save that resolved stored the whole object');
          } else {
            assert.equal(outcome, reason, 'a save that rejected gives the reason');
            const st = await b.stat(h);
            if (st !== undefined) assert.deepEqual(await b.load(h), data, 'never a part of the object');
          }
          const lc = new AbortController();
          const loading = b.load(h, { signal: lc.signal });
          lc.abort(reason);
          const got = await loading.then((x) => x, (e: unknown) => e);
          if (Buffer.isBuffer(got)) assert.deepEqual(got, data);
          else assert.ok(got === reason || got instanceof NotFoundError, String(got));
        }
      }));

    it('lists names that share a prefix', () =>
      withBackend(async (b) => {
        const base = hexName('prefix');
        const names = [base, `${base}0`, `${base}.1`, `${base}-x`, base.slice(0, 10)];
        for (const n of names) await b.save({ type: 'data', name: n }, bytes(n.length));
        for (const n of names) await b.save({ type: 'index', name: n }, bytes(1));
        const listed = await listAll(b, 'data');
        assert.deepEqual(
          listed,
          names.map((n) => ({ name: n, size: n.length })).sort((x, y) => (x.name < y.name ? -1 : 1)),
        );
      }));

    it('lists more than 1000 objects', () =>
      withBackend(async (b) => {
        const names = Array.from({ length: 1100 }, (_, i) => hexName(`many-${i}`));
        for (let i = 0; i < names.length; i += 50) {
          await Promise.all(names.slice(i, i + 50).map((n) => b.save({ type: 'data', name: n }, bytes(3))));
        }
        await b.save({ type: 'snapshot', name: hexName('other') }, bytes(3));
        const listed = await listAll(b, 'data');
        assert.equal(listed.length, 1100);
        assert.deepEqual(
          listed.map((i) => i.name),
          [...names].sort(),
        );
        assert.ok(listed.every((i) => i.size === 3));
      }));

    it('stores empty objects', () =>
      withBackend(async (b) => {
        const h = handleOf('data', 'empty');
        await b.save(h, new Uint8Array(0));
        assert.deepEqual(await b.load(h), Buffer.alloc(0));
        assert.deepEqual(await b.load(h, { offset: 0, length: 0 }), Buffer.alloc(0));
        assert.deepEqual(await b.load(h, { offset: 0 }), Buffer.alloc(0));
        await assert.rejects(b.load(h, { offset: 0, length: 1 }), ShortReadError);
        await assert.rejects(b.load(h, { offset: -1 }), ShortReadError);
        assert.deepEqual(await b.stat(h), { name: h.name, size: 0 });
        assert.deepEqual(await listAll(b, 'data'), [{ name: h.name, size: 0 }]);
        await assert.rejects(b.save(h, new Uint8Array(0)), AlreadyExistsError);
      }));

    it('saves different names concurrently', () =>
      withBackend(async (b) => {
        const hs = Array.from({ length: 64 }, (_, i) => handleOf('data', `conc-${i}`));
        await Promise.all(hs.map((h, i) => b.save(h, bytes(100 + i, i))));
        const loaded = await Promise.all(hs.map((h) => b.load(h)));
        loaded.forEach((got, i) => assert.deepEqual(got, bytes(100 + i, i)));
        assert.equal((await listAll(b, 'data')).length, 64);
      }));

    it('lets exactly one of several concurrent saves of one name win', () =>
      withBackend(async (b) => {
        const h = handleOf('lock', 'race');
        const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => b.save(h, bytes(1000 + i, i))));
        const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
        assert.equal(won.length, 1, 'one save succeeds');
        for (const r of results) {
          if (r.status === 'rejected') assert.ok(r.reason instanceof AlreadyExistsError, String(r.reason));
        }
        const w = won[0] ?? -1;
        assert.deepEqual(await b.load(h), bytes(1000 + w, w), 'the stored bytes are the winner’s, whole');
      }));

    it('keeps its own copy of saved and loaded bytes', () =>
      withBackend(async (b) => {
        const h = handleOf('index', 'copy');
        const data = bytes(64);
        await b.save(h, data);
        data.fill(0);
        const loaded = await b.load(h);
        assert.deepEqual(loaded, bytes(64));
        loaded.fill(0xee);
        (await b.load(h, { offset: 0, length: 8 })).fill(0xee);
        assert.deepEqual(await b.load(h), bytes(64));
      }));

    it('create() is idempotent and keeps existing objects', () =>
      withBackend(async (b) => {
        const h = handleOf('snapshot', 'keep');
        await b.save(h, bytes(9));
        await b.create();
        await b.create();
        assert.deepEqual(await b.load(h), bytes(9));
        await b.save(handleOf('data', 'after-create'), bytes(1));
      }));

    it('rejects invalid names in every operation', () =>
      withBackend(async (b) => {
        const bad: Handle[] = [
          { type: 'key', name: '../x' },
          { type: 'key', name: 'a/b' },
          { type: 'key', name: '' },
          { type: 'key', name: '..' },
          { type: 'key', name: '.tmp-abc' },
          { type: 'key', name: 'ABC' },
          { type: 'key', name: 'a\0b' },
          { type: 'key', name: 'a\\b' },
          { type: 'index', name: 'x'.repeat(256) },
          { type: 'data', name: '../../config' },
          { type: 'data', name: 'zz01' },
          { type: 'data', name: 'a' },
          { type: 'config', name: 'other' },
          { type: 'bogus' as ObjectType, name: 'abc' },
        ];
        for (const h of bad) {
          const label = JSON.stringify(h);
          const notTyped = (err: unknown) =>
            err instanceof Error && !(err instanceof NotFoundError) && !(err instanceof AlreadyExistsError);
          await assert.rejects(b.save(h, bytes(1)), notTyped, `save ${label}`);
          await assert.rejects(b.load(h), notTyped, `load ${label}`);
          await assert.rejects(b.stat(h), notTyped, `stat ${label}`);
          await assert.rejects(b.remove(h), notTyped, `remove ${label}`);
        }
        await assert.rejects(listAll(b, 'bogus' as ObjectType), Error);
        for (const prefix of ['../', 'a/b', 'AB', '\0', '.'.repeat(300)]) {
          await assert.rejects(namesWith(b, 'data', prefix), /invalid listing prefix/, `prefix ${JSON.stringify(prefix)}`);
        }
        for (const type of OBJECT_TYPES) assert.deepEqual(await listAll(b, type), [], `nothing was stored under ${type}`);
      }));

    it('rejects nonsense ranges', () =>
      withBackend(async (b) => {
        const h = handleOf('data', 'nonsense');
        await b.save(h, bytes(10));
        await assert.rejects(b.load(h, { offset: 1.5 }), RangeError);
        await assert.rejects(b.load(h, { offset: 0, length: -1 }), RangeError);
        await assert.rejects(b.load(h, { offset: Number.NaN }), RangeError);
      }));
  });
}
