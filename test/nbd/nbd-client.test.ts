/**
 * The NBD client (src/sources/image/nbd-client.ts) against real servers
 * (holdfast's own serve-nbd server and qemu-nbd: reads, pipelining, block
 * status) and against a small hostile server in this file that answers the
 * handshake properly and then misbehaves: a refused export, a connection cut
 * in the middle of a read, a short reply, data beyond what was asked, an
 * extent beyond the export, a cookie never sent, garbage.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { mkdir, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { removeTree, tempDir, pseudoRandomBytes } from '../fixtures/tree.js';
import { NbdServer } from '../../src/server-nbd/nbd-server.js';
import { NbdClient, NbdCommandError, NbdProtocolError, NbdRefusedError, parseNbdUri } from '../../src/sources/image/nbd-client.js';
import {
  BASE_ALLOCATION, CMD, ERR, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT, INFO, NBDMAGIC, OPT, REP, REPLY_FLAG_DONE, REPLY_TYPE, STATE_HOLE, STATE_ZERO,
  errorPayload, optionReply, simpleReply, structuredChunk,
} from '../../src/sources/image/nbd-protocol.js';
import { missingTools } from '../image-files/ext-images.js';
import { openImageInput } from '../../src/sources/image/image-input.js';
import { QCOW2_MAGIC, QemuError } from '../../src/sources/image/qemu.js';

const MiB = 1024 * 1024;
const SIZE = 4 * MiB;

/** A request the hostile server received. */
interface Request {
  readonly type: number;
  readonly cookie: Buffer;
  readonly offset: number;
  readonly length: number;
}

/**
 * A server that does the fixed-newstyle handshake by the book (one export,
 * "disk", of SIZE bytes; base:allocation as context 7) and answers each
 * request with `behave`, which may write anything.
 */
async function hostileServer(behave: (s: Socket, r: Request) => void, opts: { refuse?: boolean; greeting?: Buffer } = {}): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => {
    let buf = Buffer.alloc(0);
    let phase: 'flags' | 'options' | 'transmission' = 'flags';
    s.on('error', () => undefined);
    const g = Buffer.alloc(18);
    NBDMAGIC.copy(g, 0);
    IHAVEOPT.copy(g, 8);
    g.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    s.write(opts.greeting ?? g);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (phase === 'flags') {
          if (buf.length < 4) return;
          buf = buf.subarray(4);
          phase = 'options';
        } else if (phase === 'options') {
          if (buf.length < 16) return;
          const option = buf.readUInt32BE(8);
          const len = buf.readUInt32BE(12);
          if (buf.length < 16 + len) return;
          buf = buf.subarray(16 + len);
          if (option === OPT.STRUCTURED_REPLY) s.write(optionReply(option, REP.ACK));
          else if (option === OPT.SET_META_CONTEXT) {
            const id = Buffer.alloc(4);
            id.writeUInt32BE(7);
            s.write(optionReply(option, REP.META_CONTEXT, Buffer.concat([id, Buffer.from(BASE_ALLOCATION)])));
            s.write(optionReply(option, REP.ACK));
          } else if (option === OPT.GO) {
            if (opts.refuse) {
              s.write(optionReply(option, REP.ERR_UNKNOWN, Buffer.from('no such export here')));
              continue;
            }
            const info = Buffer.alloc(12);
            info.writeUInt16BE(INFO.EXPORT, 0);
            info.writeBigUInt64BE(BigInt(SIZE), 2);
            info.writeUInt16BE(3, 10);
            s.write(optionReply(option, REP.INFO, info));
            s.write(optionReply(option, REP.ACK));
            phase = 'transmission';
          } else s.write(optionReply(option, REP.ERR_UNSUP));
        } else {
          if (buf.length < 28) return;
          const r: Request = { type: buf.readUInt16BE(6), cookie: Buffer.from(buf.subarray(8, 16)), offset: Number(buf.readBigUInt64BE(16)), length: buf.readUInt32BE(24) };
          buf = buf.subarray(28);
          if (r.type === CMD.DISC) return void s.end();
          behave(s, r);
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

/** The payload of an OFFSET_DATA chunk. */
function dataPayload(offset: number, bytes: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeBigUInt64BE(BigInt(offset));
  return Buffer.concat([h, bytes]);
}

/** A BLOCK_STATUS payload for context 7. */
function extentsPayload(extents: [number, number][]): Buffer {
  const b = Buffer.alloc(4 + 8 * extents.length);
  b.writeUInt32BE(7, 0);
  extents.forEach(([len, flags], i) => {
    b.writeUInt32BE(len, 4 + 8 * i);
    b.writeUInt32BE(flags, 8 + 8 * i);
  });
  return b;
}

describe('NBD client', { timeout: 60_000 }, () => {
  describe('against holdfast serve-nbd', () => {
    const image = Buffer.alloc(6 * MiB + 512);
    pseudoRandomBytes('a', MiB).copy(image, 0);
    pseudoRandomBytes('b', MiB + 100).copy(image, 4 * MiB);
    let server: NbdServer;
    let port: number;
    before(async () => {
      server = new NbdServer({
        name: 'disk', size: image.length,
        read: async (o, l) => Buffer.from(image.subarray(o, o + l)),
        extents: async (o, l) => {
          const out: { offset: number; length: number; hole: boolean }[] = [];
          for (let at = o; at < o + l;) {
            const end = Math.min(o + l, (Math.floor(at / MiB) + 1) * MiB);
            const hole = image.subarray(Math.floor(at / MiB) * MiB, Math.floor(at / MiB) * MiB + MiB).every((x) => x === 0);
            out.push({ offset: at, length: end - at, hole });
            at = end;
          }
          return out;
        },
      });
      port = (await server.listen(0, '127.0.0.1')).port;
    });
    after(() => server.close());

    it('reads every byte with many requests in flight, and the allocation', async () => {
      const c = await NbdClient.connect(parseNbdUri(`nbd://127.0.0.1:${port}/disk`), { metaContexts: [BASE_ALLOCATION], requestBytes: 64 * 1024, maxInFlight: 16 });
      try {
        assert.equal(c.size, image.length);
        assert.ok(c.readOnly);
        assert.ok(c.structured);
        // Unaligned, across hole and data, through many 64 KiB requests at once.
        assert.ok((await c.read(1000, image.length - 1000)).equals(image.subarray(1000)));
        const parts = await Promise.all([0, 2, 4].map((m) => c.read(m * MiB, MiB)));
        parts.forEach((p, i) => assert.ok(p.equals(image.subarray(i * 2 * MiB, (i * 2 + 1) * MiB))));
        // The socket's read buffers are reused once taken: whole reads at once, each at its own offset, come back intact.
        const whole = await Promise.all([0, 1, 2, 3].map((k) => c.read(k * 4096, image.length - k * 4096)));
        whole.forEach((w, k) => assert.ok(w.equals(image.subarray(k * 4096)), `read ${k}`));
        const ext = await c.blockStatus(BASE_ALLOCATION, 0, image.length);
        const holes = ext.filter((e) => (e.flags & STATE_HOLE) !== 0).map((e) => [e.offset, e.length]);
        assert.deepEqual(holes, [[MiB, 3 * MiB], [6 * MiB, 512]]);
        await assert.rejects(c.read(image.length - 10, 11), RangeError);
      } finally {
        await c.close();
      }
      await assert.rejects(NbdClient.connect(parseNbdUri(`nbd://127.0.0.1:${port}/other`)), (e: Error) => e instanceof NbdRefusedError && /no export "other"/.test(e.message));
    });
  });

  describe('against qemu-nbd', { skip: missingTools('qemu-nbd', 'qemu-img') }, () => {
    let dir: string;
    let child: ChildProcess;
    let sock: string;
    const image = pseudoRandomBytes('qemu', 3 * MiB);
    before(async () => {
      dir = await tempDir('nbd-client');
      await writeFile(join(dir, 'd.img'), image);
      // A sparse tail: a hole qemu-nbd reports as zeros.
      await truncate(join(dir, 'd.img'), 4 * MiB);
      sock = join(dir, 's.sock');
      child = spawn('qemu-nbd', ['--read-only', '--persistent', '-f', 'raw', '-x', 'disk', '--socket', sock, join(dir, 'd.img')], { stdio: 'ignore' });
      while (!(await stat(sock).catch(() => undefined))) await new Promise((r) => setTimeout(r, 20));
    });
    after(async () => {
      child.kill();
      await removeTree(dir);
    });

    it('a qcow2 qemu-nbd cannot serve fails with its message, and leaves no qemu-nbd nor socket behind', async () => {
      const tmp = join(dir, 'tmp');
      await mkdir(tmp);
      const saved = process.env['TMPDIR'];
      process.env['TMPDIR'] = tmp;
      try {
        const bad = join(dir, 'bad.qcow2');
        await writeFile(bad, Buffer.concat([QCOW2_MAGIC, Buffer.alloc(4096, 0xff)]));
        await assert.rejects(openImageInput(bad), (e: Error) => e instanceof QemuError && /qemu-nbd .*bad\.qcow2/.test(e.message));
        const good = join(dir, 'good.qcow2');
        execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', good, '1M']);
        await assert.rejects(openImageInput(good, { bitmap: 'nosuch' }), (e: Error) => e instanceof QemuError && /nosuch/.test(e.message));
        assert.deepEqual(await readdir(tmp), []);
        const input = await openImageInput(good);
        assert.equal(input.kind, 'qcow2');
        assert.equal(input.size, 1 << 20);
        assert.equal((await readdir(tmp)).length, 1, 'the socket folder exists while the source is open');
        await input.close();
        assert.deepEqual(await readdir(tmp), []);
      } finally {
        if (saved === undefined) delete process.env['TMPDIR'];
        else process.env['TMPDIR'] = saved;
      }
    });

    it('reads the export over a unix socket and sees its zero tail', async () => {
      const c = await NbdClient.connect(parseNbdUri(`nbd+unix:///disk?socket=${sock}`), { metaContexts: [BASE_ALLOCATION, 'qemu:dirty-bitmap:none'] });
      try {
        assert.equal(c.size, 4 * MiB);
        assert.deepEqual([...c.contexts.keys()], [BASE_ALLOCATION]);
        assert.ok((await c.read(0, 3 * MiB)).equals(image));
        const zero = (await c.blockStatus(BASE_ALLOCATION, 0, c.size)).filter((e) => (e.flags & STATE_ZERO) !== 0);
        assert.deepEqual(zero.map((e) => [e.offset, e.offset + e.length]), [[3 * MiB, 4 * MiB]]);
      } finally {
        await c.close();
      }
    });
  });

  describe('against a hostile server', () => {
    const servers: Server[] = [];
    after(() => servers.forEach((s) => s.close()));
    const open = async (behave: (s: Socket, r: Request) => void, opts: { refuse?: boolean; greeting?: Buffer } = {}): Promise<NbdClient> => {
      const { server, port } = await hostileServer(behave, opts);
      servers.push(server);
      return NbdClient.connect(parseNbdUri(`nbd://127.0.0.1:${port}/disk`), { metaContexts: [BASE_ALLOCATION] });
    };
    const protocolError = (re: RegExp) => (e: Error): boolean => {
      assert.ok(e instanceof NbdProtocolError, `${e.name}: ${e.message}`);
      assert.match(e.message, re);
      return true;
    };

    it('a well-behaved answer in pieces, out of order, is put together', async () => {
      const c = await open((s, r) => {
        if (r.type !== CMD.READ) return;
        const half = r.length / 2;
        s.write(Buffer.concat([structuredChunk(r.cookie, 0, REPLY_TYPE.OFFSET_DATA, 8 + half), dataPayload(r.offset + half, Buffer.alloc(half, 0xbb))]));
        const hole = Buffer.alloc(12);
        hole.writeBigUInt64BE(BigInt(r.offset));
        hole.writeUInt32BE(half, 8);
        s.write(Buffer.concat([structuredChunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE.OFFSET_HOLE, 12), hole]));
      });
      const b = await c.read(4096, 8192);
      assert.ok(b.subarray(0, 4096).equals(Buffer.alloc(4096)) && b.subarray(4096).equals(Buffer.alloc(4096, 0xbb)));
      await c.close();
    });

    it('a refused export, and a server that is no NBD server, fail clearly', async () => {
      await assert.rejects(open(() => undefined, { refuse: true }), (e: Error) => e instanceof NbdRefusedError && /has no export "disk".*no such export here/.test(e.message));
      await assert.rejects(open(() => undefined, { greeting: Buffer.from('HTTP/1.1 400 Bad Request\r\n') }), protocolError(/not an NBD server/));
    });

    it('a connection closed in the middle of a read fails that read and the ones in flight', async () => {
      const c = await open((s, r) => {
        s.write(Buffer.concat([structuredChunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE.OFFSET_DATA, 8 + r.length), dataPayload(r.offset, Buffer.alloc(r.length / 2))]));
        s.destroy();
      });
      const reads = [c.read(0, 65536), c.read(65536, 65536)];
      await assert.rejects(reads[0]!, protocolError(/closed the connection in the middle of/));
      await assert.rejects(reads[1]!, NbdProtocolError);
      await assert.rejects(c.read(0, 10), NbdProtocolError);
      await c.close();
    });

    it('a reply that ends short is refused, not padded', async () => {
      const c = await open((s, r) => {
        s.write(Buffer.concat([structuredChunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE.OFFSET_DATA, 8 + r.length / 2), dataPayload(r.offset, Buffer.alloc(r.length / 2, 1))]));
      });
      await assert.rejects(c.read(0, 8192), protocolError(/ended its reply to the read of 8192 bytes at 0 after 4096 of 8192 bytes/));
      await c.close();
    });

    it('data beyond what was asked is refused before it is copied', async () => {
      const c = await open((s, r) => {
        s.write(Buffer.concat([structuredChunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE.OFFSET_DATA, 8 + r.length * 4), dataPayload(r.offset, Buffer.alloc(r.length * 4, 2))]));
      });
      const dest = Buffer.alloc(4096 * 3, 9);
      await assert.rejects(c.readInto(dest, 4096, 4096, 0), protocolError(/outside what was asked/));
      assert.ok(dest.subarray(0, 4096).equals(Buffer.alloc(4096, 9)) && dest.subarray(8192).equals(Buffer.alloc(4096, 9)), 'nothing was written around the buffer asked for');
      await c.close();
    });

    it('a simple reply to a structured read, a foreign cookie and a bad magic are refused', async () => {
      const simple = await open((s, r) => s.write(Buffer.concat([simpleReply(r.cookie, 0), Buffer.alloc(r.length)])));
      await assert.rejects(simple.read(0, 512), protocolError(/simple reply/));
      const foreign = await open((s, r) => s.write(structuredChunk(Buffer.from('ffffffffffffffff', 'hex'), REPLY_FLAG_DONE, REPLY_TYPE.NONE, r.length * 0)));
      await assert.rejects(foreign.read(0, 512), protocolError(/not in flight/));
      const garbage = await open((s) => s.write(Buffer.alloc(40, 0x41)));
      await assert.rejects(garbage.read(0, 512), protocolError(/bad magic number/));
    });

    it('an extent beyond the end of the export, and an empty extent, are refused', async () => {
      const beyond = await open((s, r) => {
        const p = extentsPayload([[SIZE, 0]]);
        s.write(Buffer.concat([structuredChunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE.BLOCK_STATUS, p.length), p]));
      });
      await assert.rejects(beyond.blockStatus(BASE_ALLOCATION, MiB, MiB), protocolError(/beyond the end of the export \(4194304 bytes\)/));
      const empty = await open((s, r) => {
        const p = extentsPayload([[0, 0]]);
        s.write(Buffer.concat([structuredChunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE.BLOCK_STATUS, p.length), p]));
      });
      await assert.rejects(empty.blockStatus(BASE_ALLOCATION, 0, MiB), protocolError(/empty extent/));
    });

    it('an extent list given a part at a time is asked again from where it ended', async () => {
      const c = await open((s, r) => {
        const p = extentsPayload([[Math.min(MiB, r.length), r.offset < 2 * MiB ? 0 : STATE_HOLE | STATE_ZERO]]);
        s.write(Buffer.concat([structuredChunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE.BLOCK_STATUS, p.length), p]));
      });
      const ext = await c.blockStatus(BASE_ALLOCATION, 0, SIZE);
      assert.deepEqual(ext.map((e) => [e.offset, e.length, e.flags]), [[0, 2 * MiB, 0], [2 * MiB, 2 * MiB, 3]]);
      await c.close();
    });

    it('an error the server sends is the read\'s error, with its message', async () => {
      const c = await open((s, r) => {
        const p = errorPayload(ERR.EIO, 'medium error');
        s.write(Buffer.concat([structuredChunk(r.cookie, REPLY_FLAG_DONE, REPLY_TYPE.ERROR, p.length), p]));
      });
      await assert.rejects(c.read(0, 512), (e: Error) => e instanceof NbdCommandError && /error 5 \(medium error\)/.test(e.message));
      // The connection stays usable after an error the protocol allows.
      await assert.rejects(c.read(512, 512), NbdCommandError);
      await c.close();
    });
  });

  it('parses the NBD URI forms and refuses the others', () => {
    assert.deepEqual(parseNbdUri('nbd://host.example:10810/vm%20disk'), { host: 'host.example', port: 10810, exportName: 'vm disk' });
    assert.deepEqual(parseNbdUri('nbd://[::1]'), { host: '::1', port: 10809, exportName: '' });
    assert.deepEqual(parseNbdUri('nbd+unix:///disk?socket=/run/nbd.sock'), { socket: '/run/nbd.sock', exportName: 'disk' });
    for (const [uri, re] of [['nbds://h/e', /TLS/], ['nbd+unix:///e', /socket=PATH/], ['nbd://', /not a URI|no host/], ['nbd://u:p@h/e', /no user/], ['nbd+unix://h/e?socket=/s', /takes no host/]] as const) {
      assert.throws(() => parseNbdUri(uri), (e: Error) => e instanceof NbdRefusedError && re.test(e.message), uri);
    }
  });
});
