/**
 * Restore tests (issue 19 §3): the agent, which holds the key, runs
 * `verify-restore` on a snapshot of its disk safe (a job of kind
 * `verify-restore`, src/agent/job-runner.ts) and reports its result as any
 * job's; the server keeps it in the job and draws two things from it:
 *
 *   passed   the machine's "last proven restorable" (when, which snapshot),
 *            shown with the machine (GET /machines/ID)
 *   failed   the snapshot did not restore exactly: it is recorded damaged
 *            (damage.ts), as a verification records one, so it is never the
 *            parent of a backup again; and the server starts a verification
 *            that reads every pack (verification.ts), which finds the
 *            damaged packs and takes them out of use, so that the next
 *            backup stores again whatever was damaged
 *
 * A test that could not run (no such snapshot, no scratch space) says nothing
 * about the snapshot: its job fails, nothing is marked. Either failure raises
 * the `restore-test.failed` alert.
 *
 * The agent's word is checked before any of it is recorded
 * (`checkRestoreTestResult`): a result naming a snapshot other than the
 * one its job asked for, or one that is not a snapshot of the job's disk
 * safe, is refused, so that a hostile machine can neither prove another
 * snapshot (or a made-up one) restorable nor have one marked damaged.
 */
import type { ReportResultRequest, VerifyRestoreSpec } from '../../api/v1.js';
import { isIdHex } from '../../core/ids.js';
import type { ForgetStore } from '../../jobs/forget/forget.js';
import type { SnapshotEntry } from '../../repo/store.js';
import type { DiskSafe, Job } from '../db/schema.js';
import type { ServiceContext } from './context.js';
import { markSnapshotsDamaged } from './damage.js';
import { DEFAULT_TIMEOUT, durationMs } from './policies.js';
import { BadRequest, Conflict } from './errors.js';
import { agentText, raiseEvent } from './notifications.js';
import { ensureIndexed } from './snapshot-index.js';
import { startVerification } from './verification.js';

/** What an agent's restore test says about its snapshot: the fields of `VerifyRestoreResult` (src/jobs/verify-restore/result.ts) the server reads. */
interface RestoreTestOutcome {
  readonly snapshot: string;
  readonly restorable: boolean;
}

function outcomeOf(result: Record<string, unknown> | undefined): RestoreTestOutcome | undefined {
  const snapshot = result?.['snapshot'];
  const restorable = result?.['restorable'];
  if (!isIdHex(snapshot) || typeof restorable !== 'boolean') return undefined;
  return { snapshot, restorable };
}

/**
 * Refuses (BadRequest) the result `req` of restore test `job` when it names
 * a snapshot (`result.snapshot`) that is not a full snapshot id, not the
 * job's (when its spec named one: that id or prefix), or not a snapshot of
 * the job's disk safe (its snapshot index, else its storage); see the
 * module comment. A result naming none (the test could not run) passes.
 */
export async function checkRestoreTestResult(ctx: ServiceContext, job: Job, req: ReportResultRequest): Promise<void> {
  const named = req.result?.['snapshot'];
  if (named === undefined) return;
  if (!isIdHex(named)) throw new BadRequest('result.snapshot: not a snapshot id (64 hexadecimal digits)');
  const asked = (JSON.parse(job.spec) as VerifyRestoreSpec).snapshot;
  if (asked !== undefined && asked !== 'latest' && !named.startsWith(asked)) throw new BadRequest(`result.snapshot ${named.slice(0, 8)}: the job tests snapshot ${asked}`);
  const safe = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', job.safe_id).executeTakeFirstOrThrow();
  await ensureIndexed(ctx, safe);
  const indexed = await ctx.db.selectFrom('snapshot_index').select('id').where('safe_id', '=', safe.id).where('id', '=', named).executeTakeFirst();
  if (indexed === undefined && await ctx.safeStorage.backendOf(safe).stat({ type: 'snapshot', name: named }) === undefined) {
    throw new BadRequest(`result.snapshot ${named.slice(0, 8)}: not a snapshot of the job's disk safe`);
  }
}

/**
 * Draws the consequences of restore test `job`'s end as its agent reports it
 * (see the module comment). A success must say its snapshot restored; a
 * failure marks the snapshot only when the result says it did not restore.
 * Returns the snapshot newly marked damaged, if any.
 */
export async function restoreTestEnded(ctx: ServiceContext, job: Job, req: ReportResultRequest): Promise<string | undefined> {
  const outcome = outcomeOf(req.result);
  if (req.state === 'failed') {
    const error = req.error === undefined ? undefined : agentText(req.error);
    await raiseEvent(ctx, {
      kind: 'restore-test.failed', customerId: job.customer_id, machineId: job.machine_id, safeId: job.safe_id, jobId: job.id,
      message: outcome && !outcome.restorable ? `snapshot ${outcome.snapshot.slice(0, 8)} failed its restore test: ${error ?? 'it did not restore exactly'}` : `a restore test could not run: ${error ?? 'no reason given'}`,
      details: { snapshot: outcome?.snapshot ?? null, restorable: outcome?.restorable ?? null, error: error ?? null },
    });
  }
  if (outcome === undefined || job.machine_id === null) return undefined;
  if (req.state === 'succeeded' && outcome.restorable) {
    await ctx.db.updateTable('machines').set({ proven_restorable_at: ctx.now().toISOString(), proven_restorable_snapshot: outcome.snapshot })
      .where('id', '=', job.machine_id).execute();
    return undefined;
  }
  if (req.state !== 'failed' || outcome.restorable) return undefined;
  const marked = await markSnapshotsDamaged(ctx, job.safe_id, [{ id: outcome.snapshot, reason: `a restore test did not restore it exactly: ${req.error ?? 'see the job'}` }], 'restore-test', job.id);
  const safe = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', job.safe_id).executeTakeFirst();
  // One queued or running already is left to do it (it may be reading a slice only: the next run of the rotation reads the rest).
  if (safe) {
    await startVerification(ctx, safe, { createdBy: 'server', everyPack: true })
      .catch((e: unknown) => {
        if (!(e instanceof Conflict)) throw e;
      });
  }
  return marked[0];
}

/**
 * The snapshots restore test `job` may be testing, of `ok` (oldest first,
 * as the agent's listing): those its spec names (an id or a prefix);
 * for `latest`, the newest, and for a running test also the newest stored
 * when it started (`storedAt`: the agent chose then, a backup may have
 * stored a newer one since).
 */
function underTest(job: Pick<Job, 'spec' | 'state' | 'started_at'>, ok: readonly SnapshotEntry[], storedAt: ReadonlyMap<string, string>): SnapshotEntry[] {
  const asked = (JSON.parse(job.spec) as VerifyRestoreSpec).snapshot ?? 'latest';
  if (asked !== 'latest') return ok.filter((s) => s.id.startsWith(asked));
  const started = job.state === 'running' ? job.started_at : null;
  const chosen = started === null ? undefined : ok.findLast((s) => (storedAt.get(s.id) ?? started) <= started);
  return [...new Set([ok.at(-1), chosen])].filter((s) => s !== undefined);
}

/**
 * Whether a queued or running restore test still holds its snapshot: only
 * until it expires untaken, while its agent reports (the job is ended
 * lazily, when someone looks at it), and for no longer than its timeout
 * (a person's test has none: the policies' default). A machine's agent that
 * never takes the test, or takes it and never ends it, would otherwise hold
 * a snapshot against the safe's retention for ever.
 */
function live(ctx: ServiceContext, j: Pick<Job, 'state' | 'started_at' | 'expires_at' | 'last_report_at' | 'timeout_seconds'>): boolean {
  const now = ctx.now().getTime();
  if (j.state === 'queued') return j.expires_at === null || Date.parse(j.expires_at) > now;
  const timeoutMs = j.timeout_seconds === null ? durationMs(DEFAULT_TIMEOUT) : j.timeout_seconds * 1000;
  return j.started_at !== null && Date.parse(j.started_at) + timeoutMs > now
    && j.last_report_at !== null && Date.parse(j.last_report_at) + ctx.jobSilenceLimitMs > now;
}

/** `store` with the snapshots under restore tests held (heldByRestoreTests). */
export interface HeldSnapshots {
  readonly store: ForgetStore;
  /** Filled by the listing: each snapshot a restore test may be testing, and why it is held. */
  readonly held: ReadonlyMap<string, string>;
}

/**
 * `store` as `safe`'s retention acts on it while restore tests of it are
 * queued or running: the snapshot each may be testing (underTest) is
 * listed and counted as ever, but never removed (`remove` answers false);
 * `held` says which and why, for forget's `skipped`. Read at the listing,
 * as the census is.
 */
export function heldByRestoreTests(ctx: ServiceContext, safe: DiskSafe, store: ForgetStore): HeldSnapshots {
  const held = new Map<string, string>();
  return {
    held,
    store: {
      remove: async (type, name) => !held.has(name) && store.remove(type, name),
      listSnapshots: async () => {
        const tests = (await ctx.db.selectFrom('jobs').select(['id', 'spec', 'state', 'started_at', 'expires_at', 'last_report_at', 'timeout_seconds']).where('safe_id', '=', safe.id)
          .where('kind', '=', 'verify-restore').where('state', 'in', ['queued', 'running']).orderBy('created_at').execute()).filter((j) => live(ctx, j));
        const list = await store.listSnapshots();
        if (tests.length === 0) return list;
        const storedAt = tests.some((j) => j.state === 'running')
          ? new Map((await ctx.db.selectFrom('snapshot_index').select(['id', 'stored_at']).where('safe_id', '=', safe.id).execute()).map((r) => [r.id, r.stored_at]))
          : new Map<string, string>();
        for (const j of tests) {
          for (const s of underTest(j, list.ok, storedAt)) {
            if (!held.has(s.id)) held.set(s.id, `a restore test of it is ${j.state} (job ${j.id}): not removed until the test ends`);
          }
        }
        return list;
      },
    },
  };
}
