/**
 * The NBD server against real clients (nbdinfo, nbdcopy from libnbd,
 * qemu-img) and against a raw client that sends what real clients never do:
 * option errors, reads past the end, writes to the read-only export,
 * garbage. The export is an image file, with its all-zero 64 KiB blocks
 * reported as holes through base:allocation.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { removeTree, tempDir, pseudoRandomBytes } from '../fixtures/tree.js';
import { NbdServer, type NbdExport } from '../../src/server-nbd/nbd-server.js';
import { missingTools } from '../image-files/ext-images.js';
import { RawClient } from './nbd-client.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const HOLE_BLOCK = 64 * 1024;

/** An export of an in-memory image whose all-zero 64 KiB blocks count as holes. */
function bufferExport(image: Buffer): NbdExport {
  const zero = Buffer.alloc(HOLE_BLOCK);
  return {
    name: 'disk',
    aliases: ['disk-full-name'],
    description: 'test disk',
    size: image.length,
    read: async (offset, length) => Buffer.from(image.subarray(offset, offset + length)),
    extents: async (offset, length) => {
      const out: { offset: number; length: number; hole: boolean }[] = [];
      for (let o = offset; o < offset + length;) {
        const end = Math.min(offset + length, (Math.floor(o / HOLE_BLOCK) + 1) * HOLE_BLOCK);
        const blockStart = Math.floor(o / HOLE_BLOCK) * HOLE_BLOCK;
        const hole = image.subarray(blockStart, blockStart + HOLE_BLOCK).equals(zero.subarray(0, Math.min(HOLE_BLOCK, image.length - blockStart)));
        const last = out[out.length - 1];
        if (last && last.hole === hole) last.length += end - o;
        else out.push({ offset: o, length: end - o, hole });
        o = end;
      }
      return out;
    },
  };
}

describe('NBD server', { timeout: 120_000 }, () => {
  let dir: string;
  let image: Buffer;
  let imagePath: string;
  let server: NbdServer;
  let port: number;
  let uri: string;
  const log: string[] = [];

  before(async () => {
    dir = await tempDir('nbd');
    // 24 MiB + 1000 bytes (not a multiple of any block size): data islands and zero runs.
    image = Buffer.alloc(24 * MiB + 1000);
    pseudoRandomBytes('head', 3 * MiB).copy(image, 0);
    pseudoRandomBytes('middle', 1 * MiB + 17).copy(image, 10 * MiB + 5);
    pseudoRandomBytes('tail', 1000).copy(image, 24 * MiB);
    imagePath = join(dir, 'disk.img');
    await writeFile(imagePath, image);
    server = new NbdServer(bufferExport(image), { handshakeTimeoutMs: 500, onLog: (m) => log.push(m) });
    port = (await server.listen(0, '127.0.0.1')).port;
    uri = `nbd://127.0.0.1:${port}`;
  });
  after(async () => {
    await server.close();
    await removeTree(dir);
  });

  describe('with real clients', { skip: missingTools('nbdinfo', 'nbdcopy', 'qemu-img') }, () => {
    it('nbdinfo sees the size, read-only, and base:allocation', async () => {
      const { stdout } = await run('nbdinfo', ['--json', uri]);
      const info = JSON.parse(stdout) as { protocol: string; exports: { 'export-size': number; is_read_only: boolean; contexts: string[]; description: string }[] };
      assert.equal(info.protocol, 'newstyle-fixed');
      assert.equal(info.exports[0]!['export-size'], image.length);
      assert.equal(info.exports[0]!.is_read_only, true);
      assert.deepEqual(info.exports[0]!.contexts, ['base:allocation']);
      assert.equal(info.exports[0]!.description, 'test disk');
      const map = await run('nbdinfo', ['--map', uri]);
      assert.match(map.stdout, /hole,zero/);
    });

    it('nbdcopy copies every byte, from two clients at once', async () => {
      const a = join(dir, 'copy-a.img');
      const b = join(dir, 'copy-b.img');
      await Promise.all([run('nbdcopy', [uri, a]), run('nbdcopy', ['--connections=2', `${uri}/disk`, b])]);
      assert.ok((await readFile(a)).equals(image));
      assert.ok((await readFile(b)).equals(image));
    });

    it('qemu-img converts the export to qcow2, vmdk and vhdx with the same bytes', async () => {
      for (const fmt of ['qcow2', 'vmdk', 'vhdx']) {
        const out = join(dir, `disk.${fmt}`);
        await run('qemu-img', ['convert', '-f', 'raw', '-O', fmt, uri, out]);
        const cmp = await run('qemu-img', ['compare', '-f', fmt, '-F', 'raw', out, imagePath]);
        assert.match(cmp.stdout, /Images are identical/);
      }
    });
  });

  describe('protocol', () => {
    it('negotiates options: LIST, INFO, unknown exports, TLS refused, unknown options', async () => {
      const c = await RawClient.connect(port);
      try {
        const flags = await c.handshake();
        assert.equal(flags, 3);
        c.sendOption(3);
        const srv = await c.optionReply();
        assert.equal(srv.reply, 2);
        assert.equal(srv.data.toString('utf8', 4, 4 + srv.data.readUInt32BE(0)), 'disk');
        assert.equal((await c.optionReply()).reply, 1);
        c.sendOption(3, Buffer.from('x'));
        assert.equal((await c.optionReply()).reply, 0x80000003);
        c.sendOption(5);
        const tls = await c.optionReply();
        assert.equal(tls.reply, 0x80000002);
        assert.match(tls.data.toString(), /TLS is not offered/);
        c.sendOption(99, Buffer.from('whatever'));
        assert.equal((await c.optionReply()).reply, 0x80000001);
        const bad = Buffer.alloc(4 + 5 + 2);
        bad.writeUInt32BE(5, 0);
        bad.write('nope!', 4);
        c.sendOption(6, bad);
        const unknown = await c.optionReply();
        assert.equal(unknown.reply, 0x80000006);
        assert.match(unknown.data.toString(), /no export named "nope!"/);
        // A name length that overruns the option is invalid, not a crash.
        const overrun = Buffer.alloc(6);
        overrun.writeUInt32BE(1000, 0);
        c.sendOption(7, overrun);
        assert.equal((await c.optionReply()).reply, 0x80000003);
        // Meta contexts need structured replies first.
        c.sendOption(10, Buffer.alloc(8));
        assert.equal((await c.optionReply()).reply, 0x80000003);
        const { size, flags: tflags } = await c.go('disk-full-name');
        assert.equal(size, BigInt(image.length));
        assert.ok(tflags & 2, 'read-only flag');
      } finally {
        c.close();
      }
    });

    it('serves reads and refuses writes, out-of-range and oversized requests, without dropping the client', async () => {
      const c = await RawClient.connect(port);
      try {
        await c.handshake();
        await c.go();
        c.request(0, 10n * BigInt(MiB), 4096, 7n);
        let r = await c.simpleReply();
        assert.deepEqual(r, { error: 0, cookie: 7n });
        assert.ok((await c.read(4096)).equals(image.subarray(10 * MiB, 10 * MiB + 4096)));
        c.request(1, 0n, 512, 8n, 0, Buffer.alloc(512, 1));
        assert.deepEqual(await c.simpleReply(), { error: 1, cookie: 8n }); // EPERM
        c.request(0, BigInt(image.length) - 10n, 20, 9n);
        assert.deepEqual(await c.simpleReply(), { error: 22, cookie: 9n }); // EINVAL: past the end
        c.request(0, 0xffffffffffffff00n, 512, 10n);
        assert.deepEqual(await c.simpleReply(), { error: 22, cookie: 10n });
        c.request(0, 0n, 64 * MiB, 11n);
        assert.deepEqual(await c.simpleReply(), { error: 22, cookie: 11n }); // larger than the maximum
        c.request(4, 0n, 4096, 12n);
        assert.deepEqual(await c.simpleReply(), { error: 1, cookie: 12n }); // TRIM: EPERM
        c.request(7, 0n, 4096, 13n);
        assert.deepEqual(await c.simpleReply(), { error: 22, cookie: 13n }); // BLOCK_STATUS without a context
        c.request(3, 0n, 0, 14n);
        assert.deepEqual(await c.simpleReply(), { error: 0, cookie: 14n }); // FLUSH
        c.request(0, BigInt(image.length) - 1000n, 1000, 15n);
        r = await c.simpleReply();
        assert.equal(r.error, 0);
        assert.ok((await c.read(1000)).equals(image.subarray(image.length - 1000)));
        c.request(2, 0n, 0, 16n); // DISC
        assert.ok(await c.closedWithin(2000), 'the server closes after NBD_CMD_DISC');
      } finally {
        c.close();
      }
    });

    it('answers pipelined requests, each with its own cookie', async () => {
      const c = await RawClient.connect(port);
      try {
        await c.handshake();
        await c.go();
        const n = 40;
        for (let i = 0; i < n; i++) c.request(0, BigInt(i * 100_000), 1000, BigInt(1000 + i));
        const seen = new Set<bigint>();
        for (let i = 0; i < n; i++) {
          const r = await c.simpleReply();
          assert.equal(r.error, 0);
          const data = await c.read(1000);
          const at = Number(r.cookie - 1000n) * 100_000;
          assert.ok(data.equals(image.subarray(at, at + 1000)), `cookie ${r.cookie}`);
          seen.add(r.cookie);
        }
        assert.equal(seen.size, n);
      } finally {
        c.close();
      }
    });

    it('uses structured replies and reports holes when asked', async () => {
      const c = await RawClient.connect(port);
      try {
        await c.handshake();
        c.sendOption(8);
        assert.equal((await c.optionReply()).reply, 1);
        const q = Buffer.from('base:allocation');
        const d = Buffer.alloc(4 + 4 + 4 + q.length);
        d.writeUInt32BE(0, 0);
        d.writeUInt32BE(1, 4);
        d.writeUInt32BE(q.length, 8);
        q.copy(d, 12);
        c.sendOption(10, d);
        const ctx = await c.optionReply();
        assert.equal(ctx.reply, 4);
        assert.equal(ctx.data.toString('utf8', 4), 'base:allocation');
        assert.equal((await c.optionReply()).reply, 1);
        await c.go();
        c.request(7, 0n, 12 * MiB, 21n);
        const bs = await c.chunk();
        assert.equal(bs.type, 5);
        assert.equal(bs.flags & 1, 1);
        const extents: [number, number][] = [];
        for (let o = 4; o < bs.payload.length; o += 8) extents.push([bs.payload.readUInt32BE(o), bs.payload.readUInt32BE(o + 4)]);
        assert.deepEqual(extents.slice(0, 2), [[3 * MiB, 0], [10 * MiB - 3 * MiB, 3]]);
        c.request(0, 5n, 100, 22n);
        const rd = await c.chunk();
        assert.equal(rd.type, 1);
        assert.equal(rd.payload.readBigUInt64BE(0), 5n);
        assert.ok(rd.payload.subarray(8).equals(image.subarray(5, 105)));
        c.request(0, BigInt(image.length), 1, 23n);
        const err = await c.chunk();
        assert.equal(err.type, 32769);
        assert.equal(err.payload.readUInt32BE(0), 22);
        assert.match(err.payload.toString('utf8', 6), /beyond the end/);
      } finally {
        c.close();
      }
    });

    it('survives garbage, truncated handshakes and silent clients, and keeps serving', async () => {
      let seed = 1;
      const garbage = async (make: (c: RawClient) => Promise<void> | void): Promise<void> => {
        const c = await RawClient.connect(port);
        try {
          await make(c);
          await c.closedWithin(1500);
        } finally {
          c.close();
        }
      };
      const tasks: Promise<void>[] = [];
      for (let i = 0; i < 20; i++) tasks.push(garbage((c) => c.write(randomBytes(1 + ((seed = (seed * 48271) % 2147483647) % 5000)))));
      for (let i = 0; i < 10; i++) {
        tasks.push(garbage(async (c) => {
          await c.handshake();
          c.write(randomBytes(200));
        }));
        tasks.push(garbage(async (c) => {
          await c.handshake();
          await c.go();
          c.write(randomBytes(300));
        }));
      }
      tasks.push(garbage(async (c) => {
        await c.handshake();
        const h = Buffer.alloc(16);
        Buffer.from('IHAVEOPT').copy(h);
        h.writeUInt32BE(7, 8);
        h.writeUInt32BE(0xffffffff, 12); // a 4 GiB option
        c.write(h);
      }));
      tasks.push(garbage(async (c) => {
        await c.handshake();
        await c.go();
        c.request(1, 0n, 0xffffffff, 1n); // a 4 GiB write payload announced
      }));
      tasks.push(garbage(async (c) => {
        await c.handshake(0x80); // unknown client flag
      }));
      tasks.push(garbage(() => undefined)); // says nothing: the handshake times out
      tasks.push(new Promise<void>((resolve) => {
        const s = connect(port, '127.0.0.1', () => {
          s.resume(); // consume the greeting, so that 'close' can come
          s.end(Buffer.from('NBDMAG'));
          s.on('close', () => resolve());
          s.on('error', () => resolve());
        });
      }));
      await Promise.all(tasks);
      // Still serving.
      const c = await RawClient.connect(port);
      try {
        await c.handshake();
        await c.go();
        c.request(0, 0n, 16, 1n);
        assert.equal((await c.simpleReply()).error, 0);
        assert.ok((await c.read(16)).equals(image.subarray(0, 16)));
      } finally {
        c.close();
      }
      for (let i = 0; i < 100 && server.connections > 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(server.connections, 0);
    });
  });
});
