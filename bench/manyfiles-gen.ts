// Worker thread of the many-files generator (bench/manyfiles.ts): writes every
// directory d of the tree with d % workers === worker, with plain sync calls
// (several of these run in parallel, which is what makes creation fast).
//
// Layout: d0000/ .. d0999/, 1000 files each (the last directory gets the rest);
// file i has a PRNG-picked size of 0..4096 bytes: 75% log-like text (a header
// naming the file, then a slice of a shared text pool), 25% random bytes.
// Deterministic: same count, same tree.

import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { fillRandom, prng, textPool } from './datagen.js';

export interface ManyFilesJob {
  root: string;
  files: number;
  perDir: number;
  worker: number;
  workers: number;
}

export interface ManyFilesDone {
  files: number;
  bytes: number;
}

export const MAX_FILE = 4096;

export function dirName(d: number): string {
  return `d${String(d).padStart(4, '0')}`;
}

function run(job: ManyFilesJob): ManyFilesDone {
  const pool = textPool(0x1f11e5, 1 << 20);
  const buf = Buffer.alloc(MAX_FILE);
  const done: ManyFilesDone = { files: 0, bytes: 0 };
  const dirs = Math.ceil(job.files / job.perDir);
  for (let d = job.worker; d < dirs; d += job.workers) {
    const dir = join(job.root, dirName(d));
    mkdirSync(dir, { recursive: true });
    const end = Math.min(job.files, (d + 1) * job.perDir);
    for (let i = d * job.perDir; i < end; i++) {
      const r = prng(Math.imul(i, 0x9e3779b1) ^ 0x5eed);
      const size = r() % (MAX_FILE + 1);
      const isText = r() % 100 < 75;
      const name = `f${String(i % job.perDir).padStart(4, '0')}.${isText ? ['txt', 'log', 'conf', 'md'][i % 4] : 'bin'}`;
      if (isText) {
        const from = r() % (pool.length - MAX_FILE);
        const header = buf.write(`# holdfast bench ${dirName(d)}/${name} ${i}\n`, 0, 'latin1');
        pool.copy(buf, header, from, from + MAX_FILE - header);
      } else {
        fillRandom(r, buf.subarray(0, size));
      }
      const fd = openSync(join(dir, name), 'w', 0o644);
      try {
        if (size > 0) writeSync(fd, buf, 0, size);
      } finally {
        closeSync(fd);
      }
      done.files++;
      done.bytes += size;
    }
  }
  return done;
}

if (parentPort) parentPort.postMessage(run(workerData as ManyFilesJob));
