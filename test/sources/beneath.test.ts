/**
 * Paths opened beneath a folder without following a symlink (native/beneath.cc):
 * openat2 and the component walk for kernels without it refuse the same
 * paths the same way, and both reach paths longer than PATH_MAX. Folders
 * are made beneath it the same way, merged into when one is there, and
 * never made through a symlink or over a file.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, closeSync, constants, existsSync, fstatSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/sources/native.js';
import { Beneath } from '../../src/sources/beneath.js';
import { WRITE_FIELDS, WRITE_FLAGS } from '../../src/sources/native.js';
import { removeTree } from '../fixtures/tree.js';

const O_PATH = 0o10000000;

/** Why the race test cannot run here, if it cannot: it gives a folder to another user, and builds a shim. */
function raceSkip(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (the racer\'s folder belongs to another user)';
  if (spawnSync('cc', ['--version']).status !== 0) return 'needs a C compiler for the LD_PRELOAD shim';
  return false;
}

/**
 * mkdirat, then at once the racer's move (SWAP_NAME, SWAP_ACT): the new
 * folder renamed away and replaced by a folder owned by nobody (dir), a
 * symlink to SWAP_TO (symlink) or a file (file).
 */
const SWAP_SHIM = `#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
int mkdirat(int dirfd, const char* name, mode_t mode) {
  int r = syscall(SYS_mkdirat, dirfd, name, mode);
  const char* want = getenv("SWAP_NAME");
  const char* act = getenv("SWAP_ACT");
  if (r != 0 || want == NULL || act == NULL || strcmp(want, name) != 0 || strcmp(act, "none") == 0) return r;
  char moved[300];
  snprintf(moved, sizeof moved, "%s.moved", name);
  renameat(dirfd, name, dirfd, moved);
  if (strcmp(act, "dir") == 0) {
    syscall(SYS_mkdirat, dirfd, name, 0777);
    fchownat(dirfd, name, 65534, 65534, AT_SYMLINK_NOFOLLOW);
  } else if (strcmp(act, "symlink") == 0) {
    symlinkat(getenv("SWAP_TO"), dirfd, name);
  } else {
    close(openat(dirfd, name, O_CREAT | O_WRONLY, 0644));
  }
  return r;
}
`;

describe('paths beneath a folder, never through a symlink', () => {
  let dir: string;
  let root: Beneath;
  const outside = (): string => join(dir, 'outside');
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'holdfast-beneath-'));
    mkdirSync(outside());
    writeFileSync(join(outside(), 'secret'), 'outside\n');
    root = Beneath.open(join(dir, 'target'));
    mkdirSync(join(dir, 'target/a/b'), { recursive: true });
    writeFileSync(join(dir, 'target/a/b/file'), 'inside\n');
    symlinkSync(outside(), join(dir, 'target/a/link'));
    symlinkSync(join(outside(), 'secret'), join(dir, 'target/a/b/last'));
  });
  after(async () => {
    root.close();
    await removeTree(dir);
  });

  for (const walk of [false, true]) {
    const how = walk ? 'one component at a time' : 'openat2';
    const open = (path: string, flags: number, mode = 0o600): number => native.openBeneath(root.fd, Buffer.from(path), flags, mode, walk);
    const code = (f: () => unknown): string | undefined => {
      try {
        closeSync(f() as number);
        return undefined;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code;
      }
    };

    it(`opens what is below and refuses a symlink on the way or at the end (${how})`, () => {
      const fd = open('/a/b/file', constants.O_RDONLY);
      try {
        assert.equal(readFileSync(fd, 'utf8'), 'inside\n');
      } finally {
        closeSync(fd);
      }
      assert.equal(code(() => open('a/link/secret', constants.O_RDONLY)), 'ELOOP');
      assert.equal(code(() => open('a/link/new', constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL)), 'ELOOP');
      assert.equal(existsSync(join(outside(), 'new')), false, 'created through the symlink');
      assert.equal(code(() => open('a/b/last', constants.O_WRONLY)), 'ELOOP');
      assert.equal(code(() => open('a/b/last', O_PATH)), 'ELOOP');
      assert.equal(code(() => open('a/link', O_PATH | constants.O_DIRECTORY)), 'ELOOP');
      assert.equal(code(() => open('a/../../outside/secret', constants.O_RDONLY)), 'EXDEV');
      assert.equal(code(() => open('a/missing/x', constants.O_RDONLY)), 'ENOENT');
      assert.equal(readFileSync(join(outside(), 'secret'), 'utf8'), 'outside\n');
    });

    it(`reaches a path longer than PATH_MAX (${how})`, () => {
      const levels = Array.from({ length: 20 }, (_, i) => `${i}`.padStart(250, 'd'));
      const deep = levels.join('/');
      let made = root.fd;
      for (const name of levels) {
        // Made one level at a time from the last folder: the whole path is too long for mkdir.
        const next = walk ? native.openBeneath(made, Buffer.from(name), O_PATH | constants.O_DIRECTORY, 0) : -1;
        if (next >= 0) {
          if (made !== root.fd) closeSync(made);
          made = next;
          continue;
        }
        mkdirSync(`/proc/self/fd/${made}/${name}`);
        const fd = native.openBeneath(made, Buffer.from(name), O_PATH | constants.O_DIRECTORY, 0);
        if (made !== root.fd) closeSync(made);
        made = fd;
      }
      if (made !== root.fd) closeSync(made);
      const fd = open(`${deep}/f-${how.length}`, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL);
      try {
        assert.ok(fstatSync(fd).isFile());
      } finally {
        closeSync(fd);
      }
      assert.ok(Buffer.byteLength(deep) > 4096);
    });
  }

  it('writes restored files only beneath the folder: a symlinked folder on the way is refused by name', () => {
    const paths = Buffer.from('a/b/new' + 'a/link/new');
    const starts = new Uint32Array([0, 7, paths.length]);
    const fields = new Float64Array(2 * WRITE_FIELDS);
    for (const i of [0, 1]) {
      fields.set([0, 5, 0, WRITE_FLAGS.whole, 5, 0o640, 0, 0, 1_700_000_000, 0], i * WRITE_FIELDS);
    }
    const failures = native.writeFiles(root.fd, Buffer.from('bytes'), paths, starts, fields);
    assert.equal(failures?.length, 2);
    assert.equal(failures[0], 1);
    assert.match(String(failures[1]), /^ELOOP: a symbolic link is on the way .*, open 'a\/link\/new'$/);
    assert.equal(readFileSync(join(dir, 'target/a/b/new'), 'utf8'), 'bytes');
    assert.equal(existsSync(join(outside(), 'new')), false);
  });

  it('names a node through its parent: calls that do not follow the last name stay below', () => {
    assert.equal(root.at(Buffer.from('/a/b/file'), (p) => readFileSync(p, 'utf8')), 'inside\n');
    assert.throws(() => root.at(Buffer.from('/a/link/secret'), () => undefined), { code: 'ELOOP' });
    assert.throws(() => root.at(Buffer.from('/a/..'), () => undefined), /not a file name/);
  });

  it('makes a folder beneath it with its mode and gives its inode, merges into one there, and refuses anything else', () => {
    const made = root.makeFolder(Buffer.from('/a/b/made'), 0o750);
    const st = lstatSync(join(dir, 'target/a/b/made'));
    assert.ok(st.isDirectory());
    assert.deepEqual(made, { made: true, ino: st.ino });
    assert.equal(st.mode & 0o7777, 0o750 & ~process.umask());
    assert.deepEqual(root.makeFolder(Buffer.from('top'), 0o700), { made: true, ino: lstatSync(join(dir, 'target/top')).ino });
    // One there already (an earlier restore left it without our write bit): merged into, with the mode asked.
    chmodSync(join(dir, 'target/a/b/made'), 0o500);
    assert.deepEqual(root.makeFolder(Buffer.from('/a/b/made'), 0o700), { made: false, ino: st.ino });
    assert.equal(statSync(join(dir, 'target/a/b/made')).mode & 0o777, 0o700);
    assert.throws(() => root.makeFolder(Buffer.from('/a/b/file'), 0o700), /a non-directory is in the way/);
    assert.throws(() => root.makeFolder(Buffer.from('/a/b/last'), 0o700), /a non-directory is in the way/);
    assert.equal(readFileSync(join(outside(), 'secret'), 'utf8'), 'outside\n');
    assert.throws(() => root.makeFolder(Buffer.from('/a/link/made'), 0o700), { code: 'ELOOP' });
    assert.equal(existsSync(join(outside(), 'made')), false, 'a folder was made through the symlink');
    assert.throws(() => root.makeFolder(Buffer.from('/a/missing/made'), 0o700), { code: 'ENOENT' });
    assert.throws(() => root.makeFolder(Buffer.from('/a/..'), 0o700), /not a file name/);
    assert.throws(() => root.makeFolder(Buffer.from('/a/b/'), 0o700), /not a file name/);
  });

  it('refuses what a racer puts in place of the folder it made, before it looks at it', { skip: raceSkip() }, () => {
    // A shim run between the folder's making and its opening (LD_PRELOAD over mkdirat): the new folder is moved away and replaced.
    const shim = join(dir, 'swap.so');
    writeFileSync(join(dir, 'swap.c'), SWAP_SHIM);
    execFileSync('cc', ['-shared', '-fPIC', '-o', shim, join(dir, 'swap.c'), '-ldl']);
    const beneath = new URL('../../src/sources/beneath.js', import.meta.url).href;
    const attempt = (name: string, act: string): { ino?: number; made?: boolean; code?: string; message?: string } => {
      const script = `const { Beneath } = await import(${JSON.stringify(beneath)});
        const root = Beneath.open(${JSON.stringify(join(dir, 'target'))});
        try { console.log(JSON.stringify(root.makeFolder(Buffer.from('/a/b/${name}'), 0o700))); }
        catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, LD_PRELOAD: shim, SWAP_NAME: name, SWAP_ACT: act, SWAP_TO: outside() } });
      return JSON.parse(r.stdout.toString()) as { ino?: number; made?: boolean; code?: string; message?: string };
    };
    // The shim itself, doing nothing: the folder is made.
    assert.equal(attempt('calm', 'none').made, true);
    // A folder of another owner (nobody): its content would have been restored into it, and it chowned and chmodded at the end.
    assert.match(attempt('swapped', 'dir').message ?? '', /refused: not the folder this restore made/);
    assert.equal(lstatSync(join(dir, 'target/a/b/swapped')).uid, 65534);
    assert.equal(attempt('linked', 'symlink').code, 'ELOOP');
    assert.equal(attempt('filed', 'file').code, 'ENOTDIR');
    assert.deepEqual(readdirSync(outside()).sort(), ['secret']);
  });

  it('makes a folder its maker may not read (a umask or a default ACL without the owner\'s read bit), as another user', { skip: raceSkip() === 'needs root (the racer\'s folder belongs to another user)' ? 'needs root (to run as another user)' : false }, () => {
    const home = join(dir, 'nobody');
    chmodSync(dir, 0o711);
    mkdirSync(home);
    chownSync(home, 65534, 65534);
    const beneath = new URL('../../src/sources/beneath.js', import.meta.url).href;
    const script = `process.umask(0o477);
      const { Beneath } = await import(${JSON.stringify(beneath)});
      const root = Beneath.open(${JSON.stringify(home)});
      console.log(JSON.stringify(root.makeFolder(Buffer.from('/sub'), 0o700)));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534 });
    assert.equal(r.status, 0, r.stderr.toString());
    const st = lstatSync(join(home, 'sub'));
    assert.deepEqual(JSON.parse(r.stdout.toString()), { made: true, ino: st.ino });
    assert.equal(st.mode & 0o777, 0o300);
  });

  it('opens a target without following a symlink on its way when asked, making the folders it lacks', () => {
    const made = Beneath.open(join(dir, 'target/a/b/fresh/deeper'), { noSymlinks: true });
    made.close();
    assert.ok(existsSync(join(dir, 'target/a/b/fresh/deeper')));
    assert.throws(() => Beneath.open(join(dir, 'target/a/link/made'), { noSymlinks: true }), { code: 'ELOOP' });
    assert.equal(existsSync(join(outside(), 'made')), false, 'a folder was made through the symlink');
    // Without the option the operator's path is followed.
    Beneath.open(join(dir, 'target/a/link')).close();
  });
});
