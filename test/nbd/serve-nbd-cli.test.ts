/**
 * `holdfast serve-nbd` through the real CLI: an image snapshot is exported on
 * a free loopback port, and real NBD clients (nbdinfo, nbdcopy, qemu-img)
 * read back exactly the image that was backed up; SIGTERM stops it cleanly;
 * a port in use is one clear error.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { pseudoRandomBytes, removeTree } from '../fixtures/tree.js';
import { CLI, Sandbox } from '../helpers/cli.js';
import { failsWith } from '../helpers/cli-errors.js';
import { makeExtImage, missingTools } from '../image-files/ext-images.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

interface Served {
  readonly child: ChildProcess;
  readonly uri: string;
  readonly output: () => string;
  /** Resolves with the exit code after SIGTERM. */
  stop(): Promise<number | null>;
}

/** Starts `holdfast serve-nbd SNAP --listen 127.0.0.1:0` and waits for its "serving" line. */
async function serve(s: Sandbox, snap: string): Promise<Served> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...s.env() })) if (v !== undefined) env[k] = v;
  const child = spawn(process.execPath, [CLI, 'serve-nbd', snap, '--listen', '127.0.0.1:0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const uri = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve-nbd did not start:\n${out}`)), 20_000);
    const check = (): void => {
      const m = /at (nbd:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', check);
    void exited.then(() => reject(new Error(`serve-nbd exited:\n${out}`)));
  });
  return {
    child, uri, output: () => out,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

describe('holdfast serve-nbd', { skip: missingTools('nbdinfo', 'nbdcopy', 'qemu-img', 'mkfs.ext4'), timeout: 120_000 }, () => {
  let s: Sandbox;
  let image: string;
  let snap: string;
  let served: Served;

  before(async () => {
    s = await Sandbox.create('holdfast-serve-nbd-');
    // A raw disk: an ext4 filesystem in front, random data and a long zero run after it.
    const fs = s.path('fs.img');
    await makeExtImage(fs, undefined, '8M');
    const disk = Buffer.alloc(20 * MiB + 12345);
    (await readFile(fs)).copy(disk, 0);
    pseudoRandomBytes('serve-nbd', 3 * MiB).copy(disk, 12 * MiB);
    image = s.path('disk.img');
    await writeFile(image, disk);
    await s.ok(['init']);
    await s.ok(['backup', '--image', image, '--all-blocks']);
    snap = JSON.parse((await s.ok(['snapshots', '--json'])).stdout)[0].id as string;
    served = await serve(s, snap.slice(0, 8));
  });
  after(async () => {
    await served?.stop();
    await removeTree(s.dir);
  });

  it('prints where it serves, and nbdinfo sees the snapshot', async () => {
    assert.match(served.output(), new RegExp(`serving snapshot ${snap.slice(0, 8)} \\(${20 * MiB + 12345} bytes`));
    const { stdout } = await run('nbdinfo', ['--json', served.uri]);
    const info = JSON.parse(stdout) as { exports: { 'export-size': number; is_read_only: boolean; description: string }[] };
    assert.equal(info.exports[0]!['export-size'], 20 * MiB + 12345);
    assert.equal(info.exports[0]!.is_read_only, true);
    assert.match(info.exports[0]!.description, new RegExp(`holdfast snapshot ${snap.slice(0, 8)}`));
  });

  it('nbdcopy gets the same bytes, also with two clients at once', async () => {
    const a = s.path('a.img');
    const b = s.path('b.img');
    await Promise.all([run('nbdcopy', [served.uri, a]), run('nbdcopy', [`${served.uri}/${snap}`, b])]);
    const want = await readFile(image);
    assert.ok((await readFile(a)).equals(want));
    assert.ok((await readFile(b)).equals(want));
  });

  it('qemu-img converts it to a qcow2 VM disk with the same content', async () => {
    const q = s.path('vm.qcow2');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', served.uri, q]);
    const { stdout } = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', q, image]);
    assert.match(stdout, /Images are identical/);
  });

  it('a port in use: one clear error, exit 1, and no "serving" line', async () => {
    const busy = served.uri.replace('nbd://', '');
    const r = await s.run(['serve-nbd', snap, '--listen', busy]);
    failsWith(r, 1, new RegExp(`cannot listen on ${busy.replace(/\./g, '\\.')}: the address is in use .*--listen HOST:PORT; nothing is served`));
    assert.doesNotMatch(r.stdout, /serving/);
    assert.doesNotMatch(r.stderr, /warning/);
  });

  it('refuses a file snapshot, and stops cleanly on SIGTERM', async () => {
    await writeFile(s.path('f.txt'), 'x');
    await s.ok(['backup', s.path('f.txt')]);
    const r = await s.run(['serve-nbd', 'latest', '--listen', '127.0.0.1:0']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /is not an image snapshot/);
    const bad = await s.run(['serve-nbd', snap, '--listen', 'nonsense']);
    assert.equal(bad.code, 2);
    const other = await serve(s, snap);
    const code = await other.stop();
    assert.equal(code, 0, other.output());
    assert.match(other.output(), /stopping/);
  });
});
