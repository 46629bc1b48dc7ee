/**
 * Runs the backend conformance suite against `MemoryBackend`, then checks
 * that a listing reads a page at a time after the last name it gave.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';

import { MemoryBackend } from '../../src/storage/memory-backend.js';
import { backendConformance, bytes } from './conformance.js';

backendConformance('MemoryBackend', async (o) => new MemoryBackend(o));

it('MemoryBackend lists a page at a time, after the last name listed, without a copy of the table', async () => {
  const b = new MemoryBackend({ listPageSize: 2 });
  for (const name of ['b1', 'b2', 'b3', 'b4']) await b.save({ type: 'snapshot', name }, bytes(1));
  const seen: string[] = [];
  for await (const info of b.list('snapshot')) {
    seen.push(info.name);
    if (info.name === 'b1') {
      // Within the first page: only the names after that page's last are read later.
      await b.save({ type: 'snapshot', name: 'a0' }, bytes(1));
      await b.save({ type: 'snapshot', name: 'b9' }, bytes(1));
      await b.remove({ type: 'snapshot', name: 'b4' });
    }
  }
  assert.deepEqual(seen, ['b1', 'b2', 'b3', 'b9']);
});
