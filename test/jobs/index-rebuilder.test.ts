// repair index (src/jobs/repair/index-rebuilder.ts) on an index file that
// lists one blob many times in a pack whose header cannot be read: the
// entries kept from the old index are deduplicated in linear time. Run
// through the CLI so that the test's own timer can stop a rebuild that
// blocks its thread (a quadratic one did, for about 54 s here; linear, the
// command takes about 1 s).

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { saveAddressed } from '../../src/repo/objects.js';
import { BlobType, type PackedBlob } from '../../src/repo/pack.js';
import { Store } from '../../src/repo/store.js';
import { LocalBackend } from '../../src/storage/local-backend.js';
import { Sandbox } from '../helpers/cli.js';

describe('repair index', () => {
  const sandboxes: Sandbox[] = [];
  after(() => Promise.all(sandboxes.map((s) => s.remove())));

  it('keeps each distinct entry of an unreadable pack once when an old index file lists 100,000 entries of one blob', async () => {
    const s = await Sandbox.create();
    sandboxes.push(s);
    await s.ok(['init']);
    const backend = new LocalBackend(s.repo);
    const store = await Store.open(backend);
    const distinct = 50_000;
    const pack = await saveAddressed(backend, 'data', randomBytes(distinct * 16 + 64)); // random trailer: no header to read
    const id = 'ab'.repeat(32);
    const entry = (i: number): PackedBlob => ({ type: BlobType.Data, flags: 0, offset: i * 16, length: 16, rawLength: 1, id });
    const blobs: PackedBlob[] = [];
    for (let i = 0; i < distinct; i++) blobs.push(entry(i), entry(i));
    blobs.push({ ...entry(distinct * 2), length: 1 << 20 }); // beyond the pack's end: not kept
    const old = await store.saveIndex({ packs: [{ pack, blobs }], supersedes: [] });

    const run = s.start(['repair', 'index']);
    const timer = setTimeout(() => run.child.kill('SIGKILL'), 30_000);
    const r = await run.done;
    clearTimeout(timer);
    assert.equal(r.signal, null, 'repair index did not finish within 30 s');
    assert.equal(r.code, 1, r.stderr); // an unreadable pack header is reported as a failure
    assert.match(r.stdout, new RegExp(`indexed ${distinct} blobs in 1 packs`));
    assert.match(r.stderr, new RegExp(`pack ${pack}: header cannot be read .*; kept ${distinct} blob\\(s\\) the old index listed`));

    const files = await store.loadIndexFiles();
    assert.equal(files.damaged.size, 0);
    assert.equal(files.ok.size, 1);
    const [written] = [...files.ok.values()];
    assert.deepEqual(written!.supersedes, [old]);
    assert.deepEqual(written!.packs.map((p) => p.pack), [pack]);
    assert.deepEqual(written!.packs[0]!.blobs, Array.from({ length: distinct }, (_, i) => entry(i)));
  });
});
