/**
 * What the machine's administrator sets around the agent's backup jobs in
 * its configuration ("backup", "databases"), against a real server and a
 * real agent process: the before hook runs before the backup reads (what it
 * writes is in the snapshot) and the after hook learns the outcome and the
 * snapshot; a failing before hook fails the job with nothing written and the
 * after hook told "skipped"; a failing after hook leaves a saved backup
 * succeeded, named in its result; a database-backup job dumps a real
 * PostgreSQL server the configuration names (its rows in the dump), and a name it
 * does not list runs nothing; a file backup with "fs_snapshot": "btrfs"
 * reads a btrfs snapshot and removes it, and refuses a path not on btrfs;
 * a configuration with a wrong setting keeps the agent from starting.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { Sandbox, type Started } from '../helpers/cli.js';
import { loopSkip, mountLoopFs, type LoopFs } from '../helpers/loop-fs.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { setUp, type TestServer } from '../helpers/server.js';
import { configure, enrolMachine, eventsOf, runNow, startAgent, waitJob, type EnrolledMachine, type ServerHandle } from '../helpers/agent.js';

const btrfsSkip = loopSkip('btrfs');

/** The ids of the machine's snapshots, through the CLI. */
async function snapshotIds(s: Sandbox, m: EnrolledMachine): Promise<string[]> {
  return (JSON.parse((await s.ok(['snapshots', '--json'], { env: m.repoEnv })).stdout) as { id: string }[]).map((x) => x.id);
}

describe('the agent\'s backup settings', () => {
  let t: TestServer;
  let h: ServerHandle;
  let s: Sandbox;
  let m: EnrolledMachine;
  let agent: Started | undefined;
  let cluster: TestPostgres | undefined;
  let disk: LoopFs | undefined;

  const restart = async (fields: Record<string, unknown>): Promise<void> => {
    if (agent) {
      agent.child.kill('SIGTERM');
      assert.equal((await agent.done).code, 0);
    }
    await configure(m, fields);
    agent = startAgent(s, m);
  };

  before(async () => {
    s = await Sandbox.create('holdfast-agent-settings-');
    t = await setUp(`sqlite:${s.path('server.sqlite')}`);
    h = { port: t.server.port, fingerprint: t.server.fingerprint, adminToken: t.adminToken, call: t.call, create: t.create };
    m = await enrolMachine(h, s, 'db1');
    await mkdir(s.path('src'));
    await writeFile(s.path('src', 'a.txt'), 'the file\n');
  });
  after(async () => {
    agent?.child.kill('SIGTERM');
    await agent?.done;
    await t.stop();
    disk?.unmount();
    await cluster?.stop();
    await s.remove();
  });

  it('runs the before hook before the backup reads and the after hook with the outcome; a failing before hook writes nothing, a failing after hook leaves the backup', { timeout: 120_000 }, async () => {
    const flag = (name: string): string => s.path(name);
    await restart({
      backup: {
        before_backup: `test -e ${flag('fail-before')} && { echo refusing; exit 3; }; date +%s%N > ${s.path('src', 'written-by-hook')}; echo hello from the hook`,
        after_backup: `echo "$HOLDFAST_OUTCOME $HOLDFAST_SNAPSHOT_ID" >> ${flag('outcomes')}; test -e ${flag('fail-after')} && exit 4; true`,
        hook_timeout: 60,
      },
    });
    const ok = await waitJob(h, await runNow(h, m, 'backup', { paths: [s.path('src')] }));
    assert.equal(ok.state, 'succeeded', ok.error ?? '');
    const snap = ok.result!['snapshot_id'] as string;
    assert.equal(ok.result!['after_hook_failed'], undefined);
    const written = await readFile(s.path('src', 'written-by-hook'), 'utf8');
    const dumped = await s.ok(['dump', snap, join(s.path('src'), 'written-by-hook')], { env: m.repoEnv });
    assert.equal(dumped.stdout, written, 'what the before hook wrote is in the snapshot: it ran before the backup read');
    assert.ok((await eventsOf(h, ok.id)).some((e) => e.message === 'before-backup: hello from the hook'));
    assert.equal(await readFile(flag('outcomes'), 'utf8'), `success ${snap}\n`);

    await writeFile(flag('fail-before'), '');
    const before = await snapshotIds(s, m);
    const skipped = await waitJob(h, await runNow(h, m, 'backup', { paths: [s.path('src')] }));
    assert.equal(skipped.state, 'failed');
    assert.match(skipped.error!, /before-backup hook .*exit(ed)? (code )?3.*the backup was skipped, nothing was written/);
    assert.deepEqual(await snapshotIds(s, m), before, 'no snapshot');
    assert.match((await readFile(flag('outcomes'), 'utf8')).split('\n')[1]!, /^skipped $/);

    await rm(flag('fail-before'));
    await writeFile(flag('fail-after'), '');
    const saved = await waitJob(h, await runNow(h, m, 'backup', { paths: [s.path('src')] }));
    assert.equal(saved.state, 'succeeded', saved.error ?? '');
    assert.match(saved.result!['after_hook_failed'] as string, /after-backup hook .*4/);
    assert.ok((await snapshotIds(s, m)).includes(saved.result!['snapshot_id'] as string), 'the backup stands');
  });

  it('dumps the PostgreSQL server the configuration names, its rows in the dump; a name it does not list runs nothing', { timeout: 180_000 }, async () => {
    cluster = await startPostgres();
    const url = await cluster.newDatabase();
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query("CREATE TABLE stock (item text PRIMARY KEY, n int); INSERT INTO stock VALUES ('bolts', 40), ('nuts', 7)");
    const dbName = db.database!;
    await db.end();
    await restart({ backup: {}, databases: { main: { postgres: url } } });

    const before = await snapshotIds(s, m);
    for (const name of ['other', 'constructor']) {
      const refused = await waitJob(h, await runNow(h, m, 'database-backup', { database: name }));
      assert.equal(refused.state, 'failed');
      assert.match(refused.error!, new RegExp(`refused to dump database server "${name}": it is not in "databases" of this machine's agent configuration \\(it lists main\\); nothing was run`));
    }
    assert.deepEqual(await snapshotIds(s, m), before);

    const j = await waitJob(h, await runNow(h, m, 'database-backup', { database: 'main' }));
    assert.equal(j.state, 'succeeded', j.error ?? '');
    const ls = (await s.ok(['ls', j.result!['snapshot_id'] as string], { env: m.repoEnv })).stdout.split('\n');
    const dumpFile = ls.find((l) => l.endsWith(`/${dbName}.sql`) || l.endsWith(`/${dbName}.dump`));
    assert.ok(dumpFile, `the database's dump is in the snapshot: ${ls.join(' | ')}`);
    const dumped = (await s.ok(['dump', j.result!['snapshot_id'] as string, dumpFile], { env: m.repoEnv })).stdout;
    assert.match(dumped, /bolts\t40/);
    assert.match(dumped, /nuts\t7/);
  });

  it('reads a btrfs snapshot of the paths with "fs_snapshot": "btrfs", removes it, and refuses a path not on btrfs', { timeout: 120_000, skip: btrfsSkip }, async () => {
    disk = mountLoopFs(s.path(), 'btrfs', 128);
    const vol = join(disk.mountPoint, 'vol');
    assert.equal(spawnSync('btrfs', ['subvolume', 'create', vol]).status, 0);
    await writeFile(join(vol, 'data.bin'), Buffer.alloc(100_000, 5));
    await restart({ backup: { fs_snapshot: 'btrfs' }, databases: {} });
    const j = await waitJob(h, await runNow(h, m, 'backup', { paths: [vol] }));
    assert.equal(j.state, 'succeeded', j.error ?? '');
    const ls = (await s.ok(['ls', j.result!['snapshot_id'] as string], { env: m.repoEnv })).stdout;
    assert.ok(ls.split('\n').includes(join(vol, 'data.bin')), `recorded under its own path: ${ls}`);
    assert.deepEqual((await readdir(vol)).filter((n) => n.startsWith('.holdfast-snapshot-')), [], 'the snapshot is removed');

    const before = await snapshotIds(s, m);
    const refused = await waitJob(h, await runNow(h, m, 'backup', { paths: [s.path('src')] }));
    assert.equal(refused.state, 'failed');
    assert.match(refused.error!, /btrfs/);
    assert.deepEqual(await snapshotIds(s, m), before);
  });

  it('does not start with a wrong setting, and says which', { timeout: 60_000 }, async () => {
    agent!.child.kill('SIGTERM');
    await agent!.done;
    agent = undefined;
    await configure(m, { backup: { fs_snapshot: 'zfs' } });
    const r = await s.ok(['agent', 'run', '--config', m.configPath], {}, 1);
    assert.match(r.stderr, /"backup\.fs_snapshot" must be "btrfs", "lvm" or "auto"/);
    await configure(m, { backup: {}, databases: { main: { oracle: 'x' } } });
    const r2 = await s.ok(['agent', 'run', '--config', m.configPath], {}, 1);
    assert.match(r2.stderr, /"databases\.main" must be \{"postgres": URL\} or \{"mysql": URL\}/);
  });
});
