/**
 * MBR and GPT parsing against sfdisk: tables written by sfdisk on image
 * files read back with the same partitions; a damaged primary GPT falls back
 * to the backup header; garbage never throws.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { readPartitionTable } from '../../src/sources/image/partition-table.js';
import { openImageInput } from '../../src/sources/image/image-input.js';
import type { RandomAccessSource } from '../../src/sources/image/random-access.js';
import { mkfsUnavailable, sh } from './images.js';

const bufferSource = (b: Buffer): RandomAccessSource => ({
  size: b.length,
  read: async (o, n) => {
    if (o < 0 || o + n > b.length) throw new RangeError('outside');
    return b.subarray(o, o + n);
  },
});

async function tableOf(img: string): Promise<Awaited<ReturnType<typeof readPartitionTable>>> {
  const input = await openImageInput(img);
  try {
    return await readPartitionTable(input.random!);
  } finally {
    await input.close();
  }
}

interface SfdiskJson {
  partitiontable: { label: string; id: string; partitions: { start: number; size: number; type: string; uuid?: string; name?: string }[] };
}

describe('partition tables', { skip: mkfsUnavailable() }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'holdfast-pt-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('GPT: every partition as sfdisk wrote it', async () => {
    const img = join(dir, 'gpt.img');
    sh('truncate', ['-s', '64M', img]);
    sh('sfdisk', ['-q', img], 'label: gpt\nsize=10MiB, type=L, name=root\nsize=4MiB, type=S\nsize=20MiB, type=U, name="EFI system"\n');
    const want = (JSON.parse(sh('sfdisk', ['--json', img])) as SfdiskJson).partitiontable;
    const got = await tableOf(img);
    assert.equal(got.layout.table, 'gpt');
    assert.equal(got.layout.diskId, want.id.toLowerCase());
    assert.deepEqual(got.layout.partitions.map((p) => [p.number, p.start, p.size, p.type, p.uuid, p.name]),
      want.partitions.map((p, i) => [i + 1, p.start * 512, p.size * 512, p.type.toLowerCase(), p.uuid!.toLowerCase(), p.name]));
    assert.deepEqual(got.warnings, []);
  });

  it('GPT: a damaged primary header falls back to the backup header', async () => {
    const img = join(dir, 'gpt-damaged.img');
    sh('truncate', ['-s', '32M', img]);
    sh('sfdisk', ['-q', img], 'label: gpt\nsize=10MiB, type=L\nsize=10MiB, type=L\n');
    const fh = await open(img, 'r+');
    await fh.write(Buffer.from('garbage!'), 0, 8, 512 + 24);
    await fh.close();
    const got = await tableOf(img);
    assert.equal(got.layout.table, 'gpt');
    assert.equal(got.layout.partitions.length, 2);
    assert.ok(got.warnings.some((w) => /primary header is damaged; used the backup/.test(w)), got.warnings.join('; '));
  });

  it('MBR: primary, extended and logical partitions (numbered from 5)', async () => {
    const img = join(dir, 'mbr.img');
    sh('truncate', ['-s', '80M', img]);
    sh('sfdisk', ['-q', img], `label: dos\nsize=10MiB, type=83, bootable\nsize=50MiB, type=5\n${img}5 : size=10MiB, type=83\n${img}6 : size=12MiB, type=82\n`);
    const want = (JSON.parse(sh('sfdisk', ['--json', img])) as SfdiskJson).partitiontable;
    const got = await tableOf(img);
    assert.equal(got.layout.table, 'mbr');
    assert.deepEqual(got.layout.partitions.map((p) => [p.start, p.size, Number(p.type)]), want.partitions.map((p) => [p.start * 512, p.size * 512, parseInt(p.type, 16)]));
    assert.deepEqual(got.layout.partitions.map((p) => p.number), [1, 2, 5, 6]);
    assert.equal(got.layout.partitions[0]!.bootable, true);
    assert.equal(got.layout.diskId, want.id.replace(/^0x/, ''));
  });

  it('an image without a table, and garbage, give "none" and never throw', async () => {
    assert.equal((await readPartitionTable(bufferSource(Buffer.alloc(1 << 20)))).layout.table, 'none');
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 70_000 }), fc.boolean(), async (bytes, signed) => {
        const b = Buffer.from(bytes);
        if (signed && b.length >= 512) {
          b[510] = 0x55;
          b[511] = 0xaa;
          b[446 + 4] = 0xee;
        }
        const t = await readPartitionTable(bufferSource(b));
        for (const p of t.layout.partitions) assert.ok(Number.isSafeInteger(p.start) && Number.isSafeInteger(p.size));
      }),
      { numRuns: 200 },
    );
  });
});
