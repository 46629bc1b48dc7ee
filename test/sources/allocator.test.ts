/**
 * `keepLargeBlocks` (native/memory.cc), which `holdfast server` calls: a
 * block of 20 MiB then comes from the C library's heap (the `[heap]` mapping
 * grows by it), where a fresh process maps it apart. Each case runs in a
 * fresh process, so that no earlier free has moved glibc's own threshold.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { native } from '../../src/sources/native.js';

const NATIVE = fileURLToPath(new URL('../../src/sources/native.js', import.meta.url));

/** How many bytes `[heap]` grew by while a process allocated 20 MiB, having called keepLargeBlocks first or not. */
function heapGrowth(keep: boolean): number {
  const script = `
    const { native } = await import(${JSON.stringify(NATIVE)});
    const { readFileSync } = await import('node:fs');
    const heap = () => readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((l) => l.endsWith('[heap]'))
      .reduce((n, l) => { const [a, b] = l.split(' ')[0].split('-'); return n + parseInt(b, 16) - parseInt(a, 16); }, 0);
    if (${keep}) native.keepLargeBlocks(256 << 20);
    const before = heap();
    const block = Buffer.allocUnsafeSlow(20 << 20);
    block.fill(1);
    process.stdout.write(String(heap() - before));
  `;
  return Number(execFileSync(process.execPath, ['--input-type=module', '-e', script]).toString());
}

const glibc = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime !== undefined;

describe('keepLargeBlocks', { skip: glibc ? false : 'the C library is not glibc' }, () => {
  it('serves a 20 MiB block from the heap, where a process without it maps the block apart', () => {
    assert.ok(heapGrowth(true) >= 20 << 20, 'the heap grew by the block');
    assert.ok(heapGrowth(false) < 20 << 20, 'without it the block is mapped apart');
  });

  it('takes a number of bytes from 0 to 2^31 - 1', () => {
    for (const bad of [-1, 2 ** 31, Number.NaN, '1' as unknown as number]) assert.throws(() => native.keepLargeBlocks(bad), TypeError, String(bad));
  });
});
