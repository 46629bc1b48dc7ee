/**
 * `keepLargeBlocks` (native/memory.cc), which `holdfast server` calls: a
 * block of 20 MiB then comes from the C library's heap, where a fresh process
 * maps it apart. What is compared is the anonymous mappings other than
 * `[heap]` (a block mapped apart is one of them) and the size of `[heap]`
 * after the block is in use; not the growth of `[heap]`, which is less than
 * the block when the heap's top already held free space. Each case runs in a
 * fresh process, so that no earlier free has moved glibc's own threshold.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { native } from '../../src/sources/native.js';

const NATIVE = fileURLToPath(new URL('../../src/sources/native.js', import.meta.url));

/** While a process allocated 20 MiB, having called keepLargeBlocks first or not: by how many bytes the mappings apart from the heap grew, and how large `[heap]` was then. */
function allocate(keep: boolean): { apart: number; heap: number } {
  const script = `
    const { native } = await import(${JSON.stringify(NATIVE)});
    const { readFileSync } = await import('node:fs');
    const sizes = () => {
      let heap = 0, apart = 0;
      for (const line of readFileSync('/proc/self/maps', 'utf8').split('\\n')) {
        const [range, , , , inode, name] = line.split(/ +/);
        if (range === undefined || range === '') continue;
        const [a, b] = range.split('-').map((x) => parseInt(x, 16));
        if (name === '[heap]') heap += b - a;
        else if (inode === '0' && (name === undefined || name === '')) apart += b - a;
      }
      return { heap, apart };
    };
    if (${keep}) native.keepLargeBlocks(256 << 20);
    const before = sizes();
    const block = Buffer.allocUnsafeSlow(20 << 20);
    block.fill(1);
    const after = sizes();
    process.stdout.write(JSON.stringify({ apart: after.apart - before.apart, heap: after.heap }));
  `;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script]).toString()) as { apart: number; heap: number };
}

const glibc = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime !== undefined;

describe('keepLargeBlocks', { skip: glibc ? false : 'the C library is not glibc' }, () => {
  it('serves a 20 MiB block from the heap, where a process without it maps the block apart', () => {
    const kept = allocate(true);
    assert.ok(kept.apart < 20 << 20, `the block is not mapped apart (${kept.apart} bytes were)`);
    assert.ok(kept.heap >= 20 << 20, `the heap holds the block (${kept.heap} bytes)`);
    const fresh = allocate(false);
    assert.ok(fresh.apart >= 20 << 20, `without it the block is mapped apart (${fresh.apart} bytes were)`);
  });

  it('takes a number of bytes from 0 to 2^31 - 1', () => {
    for (const bad of [-1, 2 ** 31, Number.NaN, '1' as unknown as number]) assert.throws(() => native.keepLargeBlocks(bad), TypeError, String(bad));
  });
});
