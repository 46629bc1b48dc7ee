/**
 * Tests of `FaultBackend` itself: a transparent wrapper until a rule matches,
 * and each kind of fault doing what its rule says. It also passes the
 * conformance suite when it has no rules.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { FaultBackend } from '../../src/storage/fault-backend.js';
import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { backendConformance, bytes, handleOf, listAll } from './conformance.js';

backendConformance('FaultBackend without rules', async (o) => new FaultBackend(new MemoryBackend(o)));

function enospc(): Error {
  return Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
}

describe('FaultBackend', () => {
  it('fails saves after n successful ones, with the given error', async () => {
    const b = new FaultBackend(new MemoryBackend());
    b.inject({ op: 'save', after: 2, error: enospc() });
    await b.save(handleOf('data', '1'), bytes(1));
    await b.save(handleOf('data', '2'), bytes(1));
    await assert.rejects(b.save(handleOf('data', '3'), bytes(1)), { code: 'ENOSPC' });
    await assert.rejects(b.save(handleOf('data', '4'), bytes(1)), { code: 'ENOSPC' });
    assert.equal(await b.inner.stat(handleOf('data', '3')), undefined, 'a failed save does not reach the inner backend');
    assert.equal(b.faults, 2);
  });

  it('stops after `times` faults', async () => {
    const b = new FaultBackend(new MemoryBackend(), [{ op: 'save', times: 1, error: enospc() }]);
    const h = handleOf('index', 'retry');
    await assert.rejects(b.save(h, bytes(5)), { code: 'ENOSPC' });
    await b.save(h, bytes(5));
    assert.deepEqual(await b.load(h), bytes(5));
  });

  it('filters by type', async () => {
    const b = new FaultBackend(new MemoryBackend(), [{ op: 'load', type: 'index', error: new Error('boom') }]);
    await b.save(handleOf('index', 'i'), bytes(3));
    await b.save(handleOf('data', 'd'), bytes(3));
    await assert.rejects(b.load(handleOf('index', 'i')), /boom/);
    assert.deepEqual(await b.load(handleOf('data', 'd')), bytes(3));
  });

  it('corrupts and truncates loaded data without touching what is stored', async () => {
    const b = new FaultBackend(new MemoryBackend());
    const h = handleOf('data', 'bits');
    await b.save(h, bytes(10));
    b.inject({ op: 'load', times: 1, corrupt: true });
    const bad = await b.load(h);
    assert.equal(bad.length, 10);
    assert.deepEqual(
      [...bad].flatMap((v, i) => (v === bytes(10)[i] ? [] : [i])),
      [5],
      'exactly one byte differs',
    );
    b.inject({ op: 'load', times: 1, truncate: 4 });
    assert.deepEqual(await b.load(h), bytes(10).subarray(0, 4));
    assert.deepEqual(await b.load(h), bytes(10));
  });

  it('delays calls', async () => {
    const b = new FaultBackend(new MemoryBackend(), [{ op: 'stat', delayMs: 50 }]);
    const start = performance.now();
    assert.equal(await b.stat(handleOf('key', 'slow')), undefined);
    assert.ok(performance.now() - start >= 45);
  });

  it('fails listings and removals', async () => {
    const b = new FaultBackend(new MemoryBackend());
    const h = handleOf('lock', 'l');
    await b.save(h, bytes(1));
    b.inject({ op: 'list', type: 'lock', times: 1, error: new Error('list failed') });
    b.inject({ op: 'remove', times: 1, error: new Error('remove failed') });
    await assert.rejects(listAll(b, 'lock'), /list failed/);
    assert.equal((await listAll(b, 'lock')).length, 1);
    await assert.rejects(b.remove(h), /remove failed/);
    await b.remove(h);
  });

  it('refuses load-only faults on other operations, and clear() removes every rule', async () => {
    const b = new FaultBackend(new MemoryBackend());
    assert.throws(() => b.inject({ op: 'save', corrupt: true }), /load/);
    b.inject({ op: 'stat', error: new Error('stat failed') });
    await assert.rejects(b.stat(handleOf('key', 'k')), /stat failed/);
    b.clear();
    assert.equal(await b.stat(handleOf('key', 'k')), undefined);
  });
});
