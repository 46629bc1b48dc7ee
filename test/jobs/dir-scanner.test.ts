/**
 * The folder-scan worker lists folders ahead of the walk: each listing it
 * hands over must equal a listing made on the spot, whichever folders the
 * walk skips or revisits, with the worker held a few entries ahead; and it
 * may be closed at any moment, inside a listing too.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirScanner } from '../../src/jobs/backup/dir-scanner.js';
import { FolderEntries, listDirStats, listedEntries, type ListedEntry, type ReadError } from '../../src/sources/file-tree.js';

/** A listing's entries, each as one object. */
function flat(l: FolderEntries | { error: ReadError }): ListedEntry[] | { error: ReadError } {
  return 'error' in l ? l : listedEntries(l);
}

/** A listing made on the spot, in this thread. */
function here(dir: string): ListedEntry[] | { error: ReadError } {
  const l = listDirStats(Buffer.from(dir));
  return 'error' in l ? l : flat(new FolderEntries(l));
}

describe('DirScanner', () => {
  let root: string;
  const p = (...parts: string[]): string => join(root, ...parts);

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'holdfast-scan-'));
    await mkdir(p('a', 'a1', 'a11'), { recursive: true });
    await mkdir(p('a', 'a2'), { recursive: true });
    await mkdir(p('b', 'b1'), { recursive: true });
    await mkdir(p('d'));
    await writeFile(p('a', 'a1', 'a11', 'f'), 'f');
    await writeFile(p('c'), 'c');
    await symlink('a', p('link-to-a'));
    for (let i = 0; i < 50; i++) await writeFile(p('d', `file-${String(i).padStart(2, '0')}`), `${i}`);
  });

  after(() => rm(root, { recursive: true, force: true }));

  it('hands over what a listing on the spot finds, folder by folder in the walk\'s order', async () => {
    const s = new DirScanner({}, 1);
    try {
      for (const d of [p(), p('a'), p('a', 'a1'), p('a', 'a1', 'a11'), p('a', 'a2'), p('b'), p('b', 'b1'), p('d')]) {
        assert.deepEqual(flat(await s.list(Buffer.from(d), undefined)), here(d), d);
      }
    } finally {
      await s.close();
    }
  });

  it('drops what the walk skips, starts again where the walk goes back, reports a missing folder', async () => {
    const s = new DirScanner({}, 2);
    try {
      // The walk skips a/ (an excluded cache, say): the worker listed it all the same.
      for (const d of [p(), p('b'), p('d')]) assert.deepEqual(flat(await s.list(Buffer.from(d), undefined)), here(d), d);
      // A folder behind the worker's stream is listed by a new walk.
      assert.deepEqual(flat(await s.list(Buffer.from(p('a', 'a1')), undefined)), here(p('a', 'a1')));
      assert.deepEqual(flat(await s.list(Buffer.from(p('a', 'a1', 'a11')), undefined)), here(p('a', 'a1', 'a11')));
      const gone = await s.list(Buffer.from(p('nowhere')), undefined);
      assert.ok('error' in gone && gone.error.code === 'ENOENT', JSON.stringify(gone));
    } finally {
      await s.close();
    }
  });

  it('hands over the same listings when it leaves out excluded folders or folders on other devices', async () => {
    const s = new DirScanner({ patterns: ['a1'] }, 1);
    try {
      for (const d of [p(), p('a'), p('a', 'a2'), p('b')]) assert.deepEqual(flat(await s.list(Buffer.from(d), undefined)), here(d), d);
    } finally {
      await s.close();
    }
    const other = new DirScanner({}, 1);
    try {
      // No device is allowed: only the folder asked for is listed, and each further one is a new walk.
      assert.deepEqual(flat(await other.list(Buffer.from(p()), new Set<bigint>())), here(p()));
      assert.deepEqual(flat(await other.list(Buffer.from(p('d')), new Set<bigint>())), here(p('d')));
    } finally {
      await other.close();
    }
  });

  it('serves backup after backup when kept: a walk left halfway, or started ahead and never used, is stopped and what it listed dropped', async () => {
    const s = new DirScanner({}, 1);
    try {
      const first = s.forBackup();
      // The worker is now held one entry ahead, halfway through the tree.
      assert.deepEqual(flat(await first.list(Buffer.from(p()), undefined)), here(p()));
      assert.deepEqual(flat(await first.list(Buffer.from(p('a')), undefined)), here(p('a')));
      await first.close();
      // The next backup starts where it wants, with its own exclude rules, and finds nothing of the first walk.
      const second = s.forBackup({ patterns: ['a1'] });
      for (const d of [p(), p('a'), p('a', 'a2'), p('b'), p('d')]) assert.deepEqual(flat(await second.list(Buffer.from(d), undefined)), here(d), d);
      await second.close();
      // One that walked to the end leaves nothing either.
      const third = s.forBackup();
      assert.deepEqual(flat(await third.list(Buffer.from(p('b')), undefined)), here(p('b')));
      assert.deepEqual(flat(await third.list(Buffer.from(p('b', 'b1')), undefined)), here(p('b', 'b1')));
      await third.close();
      const fourth = s.forBackup();
      assert.deepEqual(flat(await fourth.list(Buffer.from(p('d')), undefined)), here(p('d')));
      await fourth.close();
      // A walk started ahead of the backup: what it listed is what the backup then finds, and one never used is dropped.
      const unused = s.forBackup();
      unused.prefetch(Buffer.from(p('a')));
      await unused.close();
      const ahead = s.forBackup();
      ahead.prefetch(Buffer.from(p()));
      for (const d of [p(), p('a'), p('a', 'a1'), p('b')]) assert.deepEqual(flat(await ahead.list(Buffer.from(d), undefined)), here(d), d);
      await ahead.close();
      assert.equal(s.failed, false);
    } finally {
      await s.close();
    }
  });

  it('closes while the worker waits for the walk to catch up', async () => {
    const s = new DirScanner({}, 1);
    await s.list(Buffer.from(p()), undefined);
    await s.close();
  });

  it('closes while the worker is inside a listing without bringing the process down', async () => {
    // Run apart: the fault aborted the whole process ("FATAL ERROR: Error::New napi_get_last_error_info"),
    // when the worker was stopped while the addon built a listing's arrays. Folders of 1,000 names,
    // which take the worker a few milliseconds each, closed at random moments.
    const wide = p('wide');
    for (let d = 0; d < 4; d++) {
      mkdirSync(join(wide, `d${d}`), { recursive: true });
      for (let f = 0; f < 1000; f++) closeSync(openSync(join(wide, `d${d}`, `f${f}`), 'w'));
    }
    const script = `const { DirScanner } = await import(${JSON.stringify(new URL('../../src/jobs/backup/dir-scanner.js', import.meta.url).href)});
      for (let i = 0; i < 150; i++) {
        const s = new DirScanner();
        await s.list(Buffer.from(${JSON.stringify(wide)}), undefined);
        await new Promise((r) => setTimeout(r, Math.random() * 4));
        await s.close();
      }
      console.log('closed 150 times');`;
    // From a file: the workers would inherit `--input-type`, which only `-e` takes.
    await writeFile(p('close-often.mjs'), script);
    const r = spawnSync(process.execPath, [p('close-often.mjs')]);
    assert.equal(r.status, 0, r.stderr.toString());
    assert.match(r.stdout.toString(), /closed 150 times/);
  });

  it('lets events in while it walks, so that a backup\'s network goes on beside a long walk', async () => {
    // 400 folders of 50 files: a walk of tens of milliseconds, which the worker keeps ahead of,
    // so the walk never waits long enough to let events in on its own.
    const many = p('many');
    const folders = Array.from({ length: 400 }, (_, i) => join(many, `f${String(i).padStart(3, '0')}`));
    for (const f of folders) {
      await mkdir(f, { recursive: true });
      await Promise.all(Array.from({ length: 50 }, (_, i) => writeFile(join(f, `x${i}`), '')));
    }
    const s = new DirScanner({}, 1 << 20);
    try {
      let listed = 0;
      const walk = async (onFirst?: () => void): Promise<void> => {
        listed = 0;
        for (const d of [many, ...folders]) {
          await s.list(Buffer.from(d), undefined);
          if (listed++ === 0) onFirst?.();
        }
      };
      await walk(); // the worker started and its code warm
      let listedWhenFired = -1;
      await walk(() => setTimeout(() => (listedWhenFired = listed), 0));
      assert.ok(listedWhenFired >= 0 && listedWhenFired < listed, `a timer set at the walk's start fired after ${listedWhenFired} of ${listed} folders`);
    } finally {
      await s.close();
      await rm(many, { recursive: true, force: true });
    }
  });
});
