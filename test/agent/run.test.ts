/**
 * `holdfast agent run` as a child process against a server over real TLS
 * on loopback: a "run now" backup succeeds with its events; a restore job
 * brings the files back byte for byte with their metadata into a fresh
 * folder; a restore into a folder that holds files is refused unless the
 * machine's own configuration allows it, and one reached through a symbolic
 * link always; a command-stream backup stores
 * the producer's output, and a failing producer fails the job naming its
 * exit code, but a command the machine's configuration does not list is
 * never run; an image file is backed up block by block (the second time
 * only the block that changed) and comes back byte for byte; every job
 * after the first runs on the repository opened once, reading only the
 * index files others added, or the whole index again after a prune; the
 * agent runs at nice 19. (Specs outside the vocabulary: api/spec-check.)
 */
import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, open, readdir, readFile, readlink, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Sandbox, type Started } from '../helpers/cli.js';
import { databaseSuites } from '../helpers/databases.js';
import { assertSameTree } from '../helpers/restore-check.js';
import { setUp, type TestServer } from '../helpers/server.js';
import { writeRandom } from '../helpers/random-file.js';
import { configure, enrolMachine, eventsOf, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';

/** Type, mode, size, mtime and link target of every entry below `root`, by relative path. */
async function metadataOf(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    const p = join(root, rel);
    const st = await lstat(p);
    const kind = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? `link→${await readlink(p)}` : 'file';
    // A folder's mtime changes as the restore fills it, then is set last; files and links keep theirs.
    out[rel || '.'] = `${kind} ${(st.mode & 0o7777).toString(8)} ${st.isFile() ? st.size : ''} ${st.isSymbolicLink() ? '' : Math.floor(st.mtimeMs)}`;
    if (st.isDirectory()) for (const n of (await readdir(p)).sort()) await walk(rel ? join(rel, n) : n);
  };
  await walk('');
  return out;
}

databaseSuites('holdfast agent run', (fx) => {
  let t: TestServer;
  let h: ServerHandle;
  let s: Sandbox;
  let m: EnrolledMachine;
  let agent: Started;
  let firstSnap = '';
  const src = (): string => s.path('src');

  before(async () => {
    s = await Sandbox.create('holdfast-agent-run-');
    t = await setUp(await fx.newUrl());
    h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
    m = await enrolMachine(h, s, 'web1');
    await mkdir(join(src(), 'sub', 'deeper'), { recursive: true });
    await writeFile(join(src(), 'a.txt'), 'the first file\n');
    await writeFile(join(src(), 'sub', 'b.bin'), Buffer.alloc(70_000, 7));
    await writeFile(join(src(), 'sub', 'deeper', 'c.conf'), 'key = value\n');
    await writeFile(join(src(), 'skip.tmp'), 'left out by the exclude\n');
    await chmod(join(src(), 'sub', 'deeper', 'c.conf'), 0o640);
    await symlink('a.txt', join(src(), 'link'));
    await utimes(join(src(), 'a.txt'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
    await utimes(join(src(), 'sub'), new Date('2021-06-07T08:09:10Z'), new Date('2021-06-07T08:09:10Z'));
    agent = startAgent(s, m);
  });
  after(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.done;
    await t.stop();
    await s.remove();
  });

  it('runs a backup, then restores it byte for byte with its metadata, on the repository opened once', { timeout: 120_000 }, async () => {
    const backupId = await runNow(h, m, 'backup', { paths: [src()], excludes: ['*.tmp'] });
    const backup = await waitJob(h, backupId);
    assert.equal(backup.state, 'succeeded', backup.error ?? '');
    const snap = backup.result!['snapshot_id'] as string;
    firstSnap = snap;
    assert.match(snap, /^[0-9a-f]{64}$/);
    assert.equal(backup.result!['files_new'], 3, JSON.stringify(backup.result));
    // The snapshot is the machine's as the server knows it, whatever the OS calls itself.
    const listed = JSON.parse((await s.ok(['snapshots', '--json'], { env: m.repoEnv })).stdout) as { id: string; hostname: string }[];
    assert.equal(listed.find((x) => x.id === snap)!.hostname, 'web1');
    const events = await eventsOf(h, backupId);
    assert.ok(events.some((e) => e.kind === 'log' && e.message === `snapshot ${snap.slice(0, 8)} saved`), JSON.stringify(events));
    assert.ok(events.some((e) => e.kind === 'progress'), JSON.stringify(events));

    const target = s.path('restored');
    const restoreId = await runNow(h, m, 'restore', { snapshot: snap.slice(0, 12), target });
    const restore = await waitJob(h, restoreId);
    assert.equal(restore.state, 'succeeded', restore.error ?? '');
    assertSameTree(src(), join(target, src()), ['skip.tmp']);
    const want = await metadataOf(src());
    delete want['skip.tmp'];
    assert.deepEqual(await metadataOf(join(target, src())), want);
    // The same process, the repository opened once; the index files the first job wrote are known without reading them back.
    assert.equal(backup.result!['agent'].repository_opens, 1);
    assert.equal(restore.result!['agent'].repository_opens, 1);
    assert.equal(restore.result!['agent'].jobs, backup.result!['agent'].jobs + 1);
    assert.equal(restore.result!['agent'].index_files_read, 0, 'what the agent wrote itself is not read back');
  });

  it('backs up a change deep in the tree with the last backup\'s trees held in memory, and it restores byte for byte', { timeout: 120_000 }, async () => {
    await writeFile(join(src(), 'sub', 'deeper', 'c.conf'), 'key = another value\n');
    await chmod(join(src(), 'sub', 'b.bin'), 0o600);
    const j = await waitJob(h, await runNow(h, m, 'backup', { paths: [src()], excludes: ['*.tmp'] }));
    assert.equal(j.state, 'succeeded', j.error ?? '');
    assert.equal(j.result!['files_changed'], 2, JSON.stringify(j.result));
    // Every folder from / down to sub/deeper came from the first backup's trees, none from the disk safe.
    assert.deepEqual(j.result!['parent_trees'].loaded, 0, JSON.stringify(j.result));
    assert.ok(j.result!['parent_trees'].in_memory >= 4, JSON.stringify(j.result));
    const target = s.path('restored-incremental');
    await s.ok(['restore', j.result!['snapshot_id'] as string, '--target', target], { env: m.repoEnv });
    assertSameTree(src(), join(target, src()), ['skip.tmp']);
    const want = await metadataOf(src());
    delete want['skip.tmp'];
    assert.deepEqual(await metadataOf(join(target, src())), want);
  });

  it('reads only the index files others added since its last job', { timeout: 120_000 }, async () => {
    await writeFile(s.path('other.txt'), 'written by another client\n');
    await s.ok(['backup', s.path('other.txt')], { env: m.repoEnv });
    const id = await runNow(h, m, 'check', {});
    const j = await waitJob(h, id);
    assert.equal(j.state, 'succeeded', j.error ?? '');
    assert.equal(j.result!['agent'].index_files_read, 1);
    assert.equal(j.result!['agent'].index_rebuilt, false);
    assert.equal(j.result!['errors'], 0);
  });

  it('backs up right after a prune on the server: the index is loaded again, nothing points into a removed pack', { timeout: 120_000 }, async () => {
    // The storage owner's forget and prune, on the server's storage (as the server's own retention does it).
    const folders = await readdir(t.server.storage);
    assert.equal(folders.length, 1, 'the one machine\'s safe');
    const owner = { HOLDFAST_REPOSITORY: join(t.server.storage, folders[0]!), HOLDFAST_PASSWORD: undefined, HOLDFAST_STORAGE_OWNER: '1', HOLDFAST_MIN_GRACE: '1s' };
    const snaps = JSON.parse((await s.ok(['snapshots', '--json'], { env: m.repoEnv })).stdout) as { id: string; paths: string[] }[];
    const other = snaps.find((x) => x.paths[0] === s.path('other.txt'))!;
    await s.ok(['forget', other.id], { env: owner });
    await s.ok(['prune', '--grace', '1s'], { env: owner });
    await sleep(1500);
    const swept = await s.ok(['prune', '--grace', '1s'], { env: owner });
    assert.match(swept.stdout, /deleted|removed/, swept.stdout);
    // A path that is not there is skipped, and the job says so: incomplete, as holdfast backup exits 3.
    const again = await waitJob(h, await runNow(h, m, 'backup', { paths: [s.path('other.txt'), s.path('no-such-path')] }));
    assert.equal(again.state, 'succeeded', again.error ?? '');
    assert.deepEqual([again.result!['incomplete'], again.result!['paths_skipped']], [true, 1]);
    assert.equal(again.result!['agent'].index_rebuilt, true);
    assert.ok(again.result!['data_added'] > 0, 'the pruned data is stored again, not referenced where it was');
    const check = await waitJob(h, await runNow(h, m, 'check', { read_data_subset: '100%' }));
    assert.equal(check.state, 'succeeded', check.error ?? '');
    await s.ok(['restore', again.result!['snapshot_id'] as string, '--target', s.path('after-prune')], { env: m.repoEnv });
    assert.equal(await readFile(s.path('after-prune', s.path('other.txt')), 'utf8'), 'written by another client\n');
  });

  it('continues a restore that stopped half-way into its target, but only the same snapshot\'s', { timeout: 120_000 }, async () => {
    const tree = s.path('halfway');
    await mkdir(join(tree, 'deep'), { recursive: true });
    await writeFile(join(tree, 'small.txt'), 'a small file\n');
    await writeRandom(join(tree, 'deep', 'big.bin'), 400_000);
    const backup = await waitJob(h, await runNow(h, m, 'backup', { paths: [tree] }));
    assert.equal(backup.state, 'succeeded', backup.error ?? '');
    const snap = backup.result!['snapshot_id'] as string;
    // The data pack damaged in the middle: its files fail, what was written (the folders) stays under its final names.
    const packs: { path: string; size: number }[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true })) {
        if (e.isDirectory()) await walk(join(dir, e.name));
        else packs.push({ path: join(dir, e.name), size: (await lstat(join(dir, e.name))).size });
      }
    };
    await walk(join(t.server.storage, (await readdir(t.server.storage))[0]!, 'data'));
    const pack = packs.sort((x, y) => y.size - x.size)[0]!.path;
    const original = await readFile(pack);
    await writeFile(pack, Buffer.concat([original.subarray(0, 200_000), Buffer.alloc(1000, 0xee), original.subarray(201_000)]));
    const target = s.path('halfway-target');
    const broken = await waitJob(h, await runNow(h, m, 'restore', { snapshot: snap, target }));
    assert.equal(broken.state, 'failed');
    assert.match(broken.error!, /restore INCOMPLETE/);
    assert.ok((await lstat(join(target, tree, 'deep'))).isDirectory(), 'the target holds what the failed restore wrote (its folders)');
    await writeFile(pack, original);

    // Another snapshot into that target: refused, as into any folder that holds files.
    const other = await waitJob(h, await runNow(h, m, 'restore', { snapshot: firstSnap, target }));
    assert.equal(other.state, 'failed');
    assert.match(other.error!, /refused to restore into .*halfway-target: it holds files/);
    // The same snapshot: continued, and the tree comes back whole.
    const again = await waitJob(h, await runNow(h, m, 'restore', { snapshot: snap, target }));
    assert.equal(again.state, 'succeeded', again.error ?? '');
    assertSameTree(tree, join(target, tree));
    assert.ok((await eventsOf(h, again.id)).some((e) => e.message.startsWith(`continuing the unfinished restore of snapshot ${snap.slice(0, 8)}`)));
    assert.deepEqual(JSON.parse(await readFile(`${m.configPath}.restores`, 'utf8')), {}, 'a finished restore is forgotten');
    // Finished, the target is like any other again.
    const third = await waitJob(h, await runNow(h, m, 'restore', { snapshot: snap, target }));
    assert.match(third.error!, /refused to restore into .*halfway-target: it holds files/);
  });

  it('refuses a restore into a folder that holds files unless the machine allows it, and then overwrites', { timeout: 120_000 }, async () => {
    const target = s.path('occupied');
    const victim = join(target, src(), 'a.txt');
    await mkdir(join(target, src()), { recursive: true });
    await writeFile(victim, 'precious local change\n');
    const refused = await waitJob(h, await runNow(h, m, 'restore', { snapshot: firstSnap, target }));
    assert.equal(refused.state, 'failed');
    assert.match(refused.error!, /refused to restore into .*occupied: it holds files .*allow_restore_overwrite/);
    assert.equal(await readFile(victim, 'utf8'), 'precious local change\n', 'nothing was written');

    agent.child.kill('SIGTERM');
    assert.equal((await agent.done).code, 0);
    await configure(m, { allow_restore_overwrite: true });
    agent = startAgent(s, m);
    const allowed = await waitJob(h, await runNow(h, m, 'restore', { snapshot: firstSnap, target, paths: [join(src(), 'a.txt')] }));
    assert.equal(allowed.state, 'succeeded', allowed.error ?? '');
    assert.equal(await readFile(victim, 'utf8'), 'the first file\n', JSON.stringify([allowed, await eventsOf(h, allowed.id)]));
  });

  it('refuses a restore whose target is reached through a symbolic link, even where restoring over files is allowed', { timeout: 120_000 }, async () => {
    const victim = s.path('victim');
    await mkdir(victim);
    await mkdir(s.path('links'));
    await symlink(victim, s.path('links', 'lnk'));
    await symlink(s.path('nowhere'), s.path('links', 'dangling'));
    for (const [target, why] of [
      [s.path('links', 'lnk', 'sub'), `${s.path('links', 'lnk')} is reached through a symbolic link \\(it is ${victim}\\)`],
      [s.path('links', 'lnk', 'sub', 'deeper'), `${s.path('links', 'lnk')} is reached through a symbolic link`],
      [s.path('links', 'dangling', 'sub'), `${s.path('links', 'dangling')} is reached through a symbolic link \\(one that leads nowhere\\)`],
    ] as const) {
      const refused = await waitJob(h, await runNow(h, m, 'restore', { snapshot: firstSnap, target }));
      assert.equal(refused.state, 'failed', target);
      assert.match(refused.error!, new RegExp(`^refused to restore to ${target}: ${why}.*give the real path as the target; nothing was restored$`));
    }
    // The link itself as the target: not a folder.
    const link = await waitJob(h, await runNow(h, m, 'restore', { snapshot: firstSnap, target: s.path('links', 'lnk') }));
    assert.match(link.error!, /it exists and is not a folder/);
    assert.deepEqual(await readdir(victim), [], 'nothing was written through the link');
    await assert.rejects(lstat(s.path('nowhere')));
  });

  it('runs only the commands the machine lists; backs up a command\'s output, and fails the job naming the exit code of a failing producer', { timeout: 120_000 }, async () => {
    const planted = s.path('planted');
    const refused = await waitJob(h, await runNow(h, m, 'command-backup', { command: ['sh', '-c', `touch ${planted}`], name: 'x' }));
    assert.equal(refused.state, 'failed');
    assert.match(refused.error!, /refused to run \["sh","-c",.*\]: it is not in "allowed_commands" of this machine's agent configuration/);
    await assert.rejects(lstat(planted), { code: 'ENOENT' });

    agent.child.kill('SIGTERM');
    assert.equal((await agent.done).code, 0);
    await configure(m, { allowed_commands: [['sh', '-c', 'printf "CREATE TABLE t;\\n"'], ['sh', '-c', 'printf partial; exit 3']] });
    agent = startAgent(s, m);
    const ok = await waitJob(h, await runNow(h, m, 'command-backup', { command: ['sh', '-c', 'printf "CREATE TABLE t;\\n"'], name: 'db.sql' }));
    assert.equal(ok.state, 'succeeded', ok.error ?? '');
    const dumped = await s.ok(['dump', ok.result!['snapshot_id'] as string, '/db.sql'], { env: m.repoEnv });
    assert.equal(dumped.stdout, 'CREATE TABLE t;\n');

    const failed = await waitJob(h, await runNow(h, m, 'command-backup', { command: ['sh', '-c', 'printf partial; exit 3'], name: 'db.sql' }));
    assert.equal(failed.state, 'failed');
    assert.match(failed.error!, /sh failed \(exit code 3\); no snapshot was written/);
    const snaps = JSON.parse((await s.ok(['snapshots', '--json'], { env: m.repoEnv })).stdout) as { paths: string[] }[];
    assert.equal(snaps.filter((x) => x.paths[0] === '/db.sql').length, 1, 'the failed producer left no snapshot');
  });

  it('backs up an image file block by block, and a second time only what changed', { timeout: 120_000 }, async () => {
    const img = s.path('disk.img');
    await writeRandom(img, 3 * 1024 * 1024);
    const first = await waitJob(h, await runNow(h, m, 'image-backup', { sources: [img] }));
    assert.equal(first.state, 'succeeded', first.error ?? '');
    const snap = first.result!['snapshots'][0];
    assert.equal(snap.source, img);
    const fh = await open(img, 'r+');
    await fh.write(Buffer.alloc(4096, 9), 0, 4096, 1024 * 1024);
    await fh.close();
    const second = await waitJob(h, await runNow(h, m, 'image-backup', { sources: [img] }));
    assert.equal(second.state, 'succeeded', second.error ?? '');
    assert.equal(second.result!['snapshots'][0].blocks_changed, 1);
    await s.ok(['restore-image', second.result!['snapshots'][0].snapshot_id as string, '--to', s.path('restored.img')], { env: m.repoEnv });
    assert.ok((await readFile(s.path('restored.img'))).equals(await readFile(img)), 'the image comes back byte for byte');
    const missing = await waitJob(h, await runNow(h, m, 'image-backup', { sources: [s.path('no-such.img')] }));
    assert.equal(missing.state, 'failed');
    assert.match(missing.error!, /cannot open .*no-such\.img/);
  });

  it('runs at the lowest CPU priority, every thread', async () => {
    const pid = agent.child.pid!;
    const tasks = await readdir(`/proc/${pid}/task`);
    assert.ok(tasks.length > 1);
    for (const task of tasks) {
      const stat = await readFile(`/proc/${pid}/task/${task}/stat`, 'utf8');
      const nice = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
      assert.equal(nice, 19, `thread ${task}`);
    }
  });
});
