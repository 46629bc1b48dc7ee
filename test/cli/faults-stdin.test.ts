/**
 * Streams as backup sources: a producer command that fails must not leave a
 * snapshot that looks like a good dump; stdin round-trips byte for byte; a
 * stream name that is a path is refused.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Sandbox, snapshotsOf } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';

describe('backup of a stream', () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-faults-');
    await s.ok(['init']);
  });
  after(() => s.remove());

  it('--stdin round-trips through `dump latest /stdin` byte for byte', async () => {
    const data = Buffer.concat([randomBytes(3_000_000), Buffer.alloc(2_000_000), Buffer.from('tail\n')]);
    const r = await s.ok(['backup', '--stdin', '--json'], { input: data });
    assert.match(r.stdout, /"message_type":"summary"/);
    const dumped = await s.ok(['dump', 'latest', '/stdin']);
    assert.equal(dumped.stdoutBytes.length, data.length);
    assert.ok(dumped.stdoutBytes.equals(data), 'dumped bytes differ from what was backed up');
  });

  it('a failing --stdin-from-command exits 1, says no snapshot was written, and writes none', async () => {
    const before = await snapshotsOf(s);
    const r = await s.run(['backup', '--stdin-from-command', '--stdin-filename', 'db.sql', '--', 'sh', '-c', 'echo partial; exit 3']);
    failsWith(r, 1, /sh failed \(exit code 3\).*no snapshot was written/);
    assert.doesNotMatch(r.stdout, /saved/);
    assert.deepEqual(await snapshotsOf(s), before);
    // The earlier stream is still there.
    assert.equal((await s.run(['dump', 'latest', '/stdin'])).code, 0);
  });

  it('a --stdin-from-command that cannot be started exits 1 and writes no snapshot', async () => {
    const before = await snapshotsOf(s);
    failsWith(await s.run(['backup', '--stdin-from-command', '--', s.path('no-such-program')]), 1, /no-such-program.*no snapshot was written/);
    assert.deepEqual(await snapshotsOf(s), before);
  });

  it('a succeeding --stdin-from-command round-trips', async () => {
    const file = s.path('dump.sql');
    await fs.writeFile(file, randomBytes(1_500_000));
    await s.ok(['backup', '-q', '--stdin-from-command', '--stdin-filename', 'dump.sql', '--', 'cat', file]);
    const dumped = await s.ok(['dump', 'latest', '/dump.sql']);
    assert.ok(dumped.stdoutBytes.equals(await fs.readFile(file)));
  });

  it('a stream snapshot records the bytes it holds, for --stdin and --stdin-from-command', async () => {
    const data = Buffer.concat([randomBytes(700_000), Buffer.alloc(300_000)]);
    const piped = await s.ok(['backup', '--stdin', '--stdin-filename', 'piped.bin', '--json'], { input: data });
    assert.equal(JSON.parse(piped.stdout.trim().split('\n').pop()!).total_bytes_processed, data.length);
    const file = s.path('produced.bin');
    await fs.writeFile(file, data);
    await s.ok(['backup', '-q', '--stdin-from-command', '--stdin-filename', 'produced.bin', '--', 'cat', file]);
    for (const name of ['piped.bin', 'produced.bin']) {
      const snap = (await snapshotsOf(s)).find((x) => x.paths[0] === `/${name}`)!;
      assert.equal(snap.summary['total_bytes_processed'], data.length);
      assert.equal(snap.summary['bytes_read'], data.length);
      const stats = JSON.parse((await s.ok(['stats', snap.id, '--json'])).stdout) as { total_size: number };
      assert.equal(stats.total_size, data.length);
    }
  });

  for (const name of ['../x', 'a/b', '..', '.', '']) {
    it(`--stdin-filename ${JSON.stringify(name)} is refused before anything is written`, async () => {
      const before = await snapshotsOf(s);
      failsWith(await s.run(['backup', '--stdin', '--stdin-filename', name], { input: 'x\n' }), 2, /--stdin-filename/);
      assert.deepEqual(await snapshotsOf(s), before);
    });
  }
});
