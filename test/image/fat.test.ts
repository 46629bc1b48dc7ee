/**
 * FAT12/16/32 volumes (an EFI system partition is FAT32): free clusters are
 * skipped, even when they still hold a deleted file's bytes, and every file
 * reads back from the restored image. A volume with its dirty bit set is
 * read whole. Made with mkfs.fat and mtools, no root needed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { open, readFile, writeFile } from 'node:fs/promises';
import { Sandbox, type RunResult } from '../helpers/cli.js';
import { noise, sh, which } from './images.js';

const summaryOf = (r: RunResult): Record<string, number> & { filesystems: { type: string; understood: boolean }[] } => JSON.parse(r.stdout.trim().split('\n').pop()!) as never;
const missing = ['mkfs.fat', 'mcopy', 'fsck.fat'].find((t) => !which(t));

describe('FAT volumes', { skip: missing ? `${missing} is not installed (apt-get install -y dosfstools mtools)` : undefined }, () => {
  let s: Sandbox;
  before(async () => {
    s = await Sandbox.create('holdfast-fat-');
    await s.ok(['init']);
    await writeFile(s.path('a.bin'), noise(2 << 20, 1));
    await writeFile(s.path('b.bin'), noise(3 << 20, 2));
  });
  after(async () => s.remove());

  for (const [bits, mib] of [[32, 64], [16, 32], [12, 4]] as const) {
    it(`FAT${bits}: free clusters are skipped, deleted data included; files read back`, async () => {
      const img = s.path(`fat${bits}.img`);
      sh('truncate', ['-s', `${mib}M`, img]);
      sh('mkfs.fat', ['-F', String(bits), img]);
      const small = bits === 12;
      const a = small ? s.path('a-small.bin') : s.path('a.bin');
      if (small) await writeFile(a, noise(600_000, 3));
      sh('mcopy', ['-i', img, a, '::/a.bin']);
      if (!small) {
        sh('mcopy', ['-i', img, s.path('b.bin'), '::/b.bin']);
        sh('mdel', ['-i', img, '::/b.bin']);
      }
      const r = summaryOf(await s.ok(['backup', '--json', '--image', img, '--block-size', '4K'], { env: { HOLDFAST_CACHE_DIR: s.path('cache') } }));
      assert.deepEqual(r.filesystems.map((f) => [f.type, f.understood]), [['vfat', true]]);
      assert.ok(r['bytes_read']! < (small ? 1 << 20 : 4 << 20), `read ${r['bytes_read']} bytes: the deleted file's clusters must be skipped`);
      const out = s.path(`fat${bits}-restored.img`);
      await s.ok(['restore-image', 'latest', '--to', out, '--verify'], { env: { HOLDFAST_CACHE_DIR: s.path('cache') } });
      sh('fsck.fat', ['-n', out]);
      assert.ok(Buffer.from(sh('mcopy', ['-i', out, '::/a.bin', '-']), 'latin1').length > 0);
      sh('mcopy', ['-i', out, '::/a.bin', s.path(`back-${bits}.bin`)]);
      assert.ok((await readFile(s.path(`back-${bits}.bin`))).equals(await readFile(a)));
    });
  }

  it('a FAT32 volume that was not cleanly unmounted is read whole', async () => {
    const img = s.path('dirty.img');
    sh('truncate', ['-s', '64M', img]);
    sh('mkfs.fat', ['-F', '32', img]);
    // FAT[1] bit 27 clear = dirty. The FAT starts after the reserved sectors.
    const fh = await open(img, 'r+');
    const bs = Buffer.alloc(512);
    await fh.read(bs, 0, 512, 0);
    const fat = bs.readUInt16LE(14) * bs.readUInt16LE(11);
    const e = Buffer.alloc(4);
    await fh.read(e, 0, 4, fat + 4);
    e.writeUInt32LE(e.readUInt32LE(0) & ~0x08000000, 0);
    await fh.write(e, 0, 4, fat + 4);
    await fh.close();
    const r = await s.ok(['backup', '--json', '--image', img, '--block-size', '64K', '--no-cache']);
    assert.match(r.stderr, /vfat file system on the image: the volume was not cleanly unmounted/);
    assert.equal(summaryOf(r).blocks_unused, 0);
  });
});
