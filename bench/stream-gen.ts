// Deterministic stream generator for the stream scenario (bench/stream.ts):
//
//   node dist/bench/stream-gen.js BYTES OUT      # OUT: a path (e.g. a FIFO) or - for stdout
//
// Writes exactly BYTES bytes, then one JSON line of statistics to stdout (to
// stderr when OUT is -). The stream is a sequence of segments of 256 KiB to
// 8 MiB, picked by a seeded PRNG:
//   ~45% random bytes (AES-256-CTR keystream: incompressible, never repeated),
//   ~35% log-like text (4 KiB slices of a 16 MiB text pool, each stamped with a
//        counter: compressible, but not deduplicable),
//   ~20% repeats of one of 8 fixed 4 MiB blocks (half text, half random):
//        deduplicable after their first occurrence.
// Same BYTES, same stream: every tool backs up identical data, generated on the
// fly (nothing stored on disk). AES-CTR and buffer copies keep it cheap: its
// CPU time is printed so it can be compared with the tools' wall time.

import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { prng, textPool } from './datagen.js';

const SEGMENT_MIN = 256 << 10;
const SEGMENT_MAX = 8 << 20;
const BLOCK = 4 << 20;
const LIBRARY = 8;

export interface StreamGenStats {
  bytes: number;
  wallSeconds: number;
  cpuSeconds: number;
  segments: { random: number; text: number; repeat: number };
}

function main(): number {
  const [bytesArg, out] = process.argv.slice(2);
  const total = Number(bytesArg);
  if (!Number.isSafeInteger(total) || total < 0 || !out) {
    process.stderr.write('usage: stream-gen BYTES OUT   (OUT: a path or - for stdout)\n');
    return 2;
  }
  const t0 = process.hrtime.bigint();
  const ctl = prng(0x5eed_b16b);
  const key = createHash('sha256').update('holdfast-bench-stream').digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(SEGMENT_MAX);
  const random = (n: number): Buffer => cipher.update(zeros.subarray(0, n));
  const pool = textPool(0x7e47, 16 << 20);
  let stamp = 0;
  /** `n` bytes of stamped text into `buf`. */
  const text = (buf: Buffer, n: number): Buffer => {
    for (let off = 0; off < n; off += 4096) {
      const len = Math.min(4096, n - off);
      const from = ctl() % (pool.length - 4096);
      pool.copy(buf, off, from, from + len);
      buf.write(`\n#${(stamp++).toString(16).padStart(12, '0')}\n`.slice(0, len), off, 'latin1');
    }
    return buf.subarray(0, n);
  };
  const library: Buffer[] = [];
  for (let i = 0; i < LIBRARY; i++) library.push(i % 2 === 0 ? text(Buffer.alloc(BLOCK), BLOCK) : random(BLOCK));
  const textBuf = Buffer.alloc(SEGMENT_MAX);

  const fd = out === '-' ? 1 : openSync(out, constants.O_WRONLY);
  const stats: StreamGenStats = { bytes: 0, wallSeconds: 0, cpuSeconds: 0, segments: { random: 0, text: 0, repeat: 0 } };
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const put = (b: Buffer): void => {
    let off = 0;
    while (off < b.length) {
      try {
        off += writeSync(fd, b, off, b.length - off);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') throw new Error(`the reader closed the stream after ${stats.bytes + off} of ${total} bytes`, { cause: e });
        if (code !== 'EAGAIN') throw e;
        Atomics.wait(sleeper, 0, 0, 1); // non-blocking stdout: wait for the reader
      }
    }
    stats.bytes += b.length;
  };
  while (stats.bytes < total) {
    const kind = ctl() % 100;
    const want = Math.min(total - stats.bytes, SEGMENT_MIN + (ctl() % (SEGMENT_MAX - SEGMENT_MIN)));
    if (kind < 45) {
      stats.segments.random++;
      put(random(want));
    } else if (kind < 80) {
      stats.segments.text++;
      put(text(textBuf, want));
    } else {
      stats.segments.repeat++;
      const block = library[ctl() % LIBRARY] as Buffer;
      put(block.subarray(0, Math.min(block.length, total - stats.bytes)));
    }
  }
  if (fd !== 1) closeSync(fd);
  const cpu = process.cpuUsage();
  stats.cpuSeconds = (cpu.user + cpu.system) / 1e6;
  stats.wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  (out === '-' ? process.stderr : process.stdout).write(`${JSON.stringify(stats)}\n`);
  return 0;
}

try {
  process.exitCode = main();
} catch (e) {
  process.stderr.write(`stream-gen: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
}
