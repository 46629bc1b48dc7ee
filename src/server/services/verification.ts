/**
 * Verification of a disk safe on the server, keyless (issue 17: proof, not
 * hope; the server holds no key): a server job (server-jobs.ts: queued, run
 * by whichever node claims it) that runs
 * the engine's check (src/jobs/check) on the safe's stored objects, as
 * `holdfast check --read-data-subset n/N` does without a password, and
 * records what it found:
 *
 *   rotation   the safe's packs fall into N slices by their ids (N: the
 *              request's `read_data_days`, else the safe's policy's
 *              `verify.read_data_subset_days`, else 1);
 *              each run reads the bytes of the next slice, so one run a day
 *              reads every pack every N days; the slice to read is kept in
 *              the database and moves on only once a run has read it, so a
 *              run that failed, was interrupted or never happened skips
 *              nothing (a change of N starts again at slice 1)
 *   check      the structure of everything (index, snapshots, every pack
 *              header), the SHA-256 of every pack of the slice
 *   damage     each damaged pack (and each pack the index names that is
 *              gone) recorded, and each snapshot that references
 *              a blob of one (the snapshots' plain blob lists) recorded as
 *              damaged: never again the parent of a backup (damage.ts); new
 *              damage raises the `verify.damage` alert
 *   healing    the damaged packs are marked for deletion (one marker, as a
 *              prune's phase 1 writes: src/jobs/repair/damaged-packs.ts), so
 *              no backup deduplicates against their blobs: the next backup
 *              stores again whatever its machine still has of them
 *   end        succeeded with the figures, or failed (with the same figures)
 *              when the check found errors
 *
 * Who may start one: as for a prune (retention.ts), the safe's customer
 * admins and manage tokens, and provider admins and operators.
 */
import { randomUUID } from 'node:crypto';
import type { JobBody, VerifySafeRequest } from '../../api/v1.js';
import { Checker, type CheckReport } from '../../jobs/check/checker.js';
import { condemnDamagedPacks } from '../../jobs/repair/damaged-packs.js';
import { holdMaintenanceLock } from '../../jobs/sessions/maintenance-lock.js';
import type { Store } from '../../repo/store.js';
import type { DiskSafe } from '../db/schema.js';
import { audit } from './audit.js';
import type { ServiceContext } from './context.js';
import { markPacksDamaged, markSnapshotsDamaged } from './damage.js';
import { BadRequest, Conflict } from './errors.js';
import { withSafeNames } from './jobs.js';
import { raiseEvent } from './notifications.js';
import { effectivePolicy } from './policies.js';
import type { Principal } from './principal.js';
import { manageableSafe, openSafe } from './retention.js';
import { ServerJobFailedError, type ServerWorkOf } from './server-jobs.js';

/** Slices a safe's packs are read in when neither the request nor the safe's policy (`verify.read_data_subset_days`) says: every pack, every run. */
export const DEFAULT_READ_DATA_DAYS = 1;

/** Errors and damaged objects a job's result lists at most (the counts are whole). */
const LISTED = 100;

/** Starts a verification of disk safe `safeId` for the caller (see the module comment); answers with the job (running). */
export async function verifySafe(ctx: ServiceContext, p: Principal, safeId: string, req: VerifySafeRequest): Promise<JobBody> {
  const safe = await manageableSafe(ctx, p, safeId);
  if (req.every_pack === true && req.read_data_days !== undefined) throw new BadRequest('every_pack reads every pack outside the rotation: it takes no read_data_days');
  const job = await startVerification(ctx, safe, {
    createdBy: p.actor, ...(req.read_data_days === undefined ? {} : { readDataDays: req.read_data_days }), ...(req.every_pack === true ? { everyPack: true } : {}),
  });
  await audit(ctx, p, 'safe.verify', safe.id, safe.customer_id);
  return job;
}

/** How a verification is started: by whom (`user:NAME`, `token:ID`, `server`), and in how many slices the packs are read. */
export interface VerificationOptions {
  readonly createdBy: string;
  /** Default: the safe's effective policy's `verify.read_data_subset_days`, else DEFAULT_READ_DATA_DAYS. */
  readonly readDataDays?: number;
  /**
   * Read every pack, outside the rotation (which it leaves where it is):
   * what the server starts itself when a restore test failed, to find the
   * damaged packs and take them out of use.
   */
  readonly everyPack?: boolean;
}

/**
 * Queues a verification of `safe` as a server job (a node takes it within
 * moments: server-jobs.ts), for whoever checked the caller's rights (the
 * API) or the server itself (the scheduler makes its own, one per slot:
 * scheduler.ts); Conflict while one of the safe
 * is queued or runs, or when the safe holds no repository yet.
 */
export async function startVerification(ctx: ServiceContext, safe: DiskSafe, opts: VerificationOptions): Promise<JobBody> {
  // A safe with no repository yet is refused now, not by a job that fails later.
  await openSafe(ctx, safe);
  const other = await ctx.db.selectFrom('jobs').select(['id', 'state']).where('safe_id', '=', safe.id).where('kind', '=', 'verify').where('state', 'in', ['queued', 'running']).executeTakeFirst();
  if (other) throw new Conflict(`a verification of disk safe ${safe.name} is ${other.state} already: job ${other.id}`);
  const spec: VerifySafeRequest = opts.everyPack ? { every_pack: true } : {
    read_data_days: opts.readDataDays ?? (await effectivePolicy(ctx, { safeId: safe.id })).settings.verify?.read_data_subset_days ?? DEFAULT_READ_DATA_DAYS,
  };
  const row = await ctx.serverJobs.enqueue(ctx, {
    id: randomUUID(), customer_id: safe.customer_id, machine_id: safe.machine_id, safe_id: safe.id, runner: 'server', runner_node: null, kind: 'verify', spec: JSON.stringify(spec),
    state: 'queued', created_by: opts.createdBy, created_at: ctx.now().toISOString(), started_at: null, last_report_at: null, finished_at: null, result: null, error: null,
    expires_at: null, cancelled_by: null, lease_until: null,
  });
  return (await withSafeNames(ctx, [row]))[0]!;
}

/**
 * The work of a verification job (server-jobs.ts), on whichever node
 * claims it: safe to run again after a kill part-way (it writes only the
 * damage it found, recorded once, and a marker for packs not marked yet;
 * the rotation moves on only at its end).
 */
export const verifyWork: ServerWorkOf = (ctx, job) => async (log, signal) => {
  const safe = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', job.safe_id).executeTakeFirst();
  if (!safe || safe.deleting_at !== null) throw new Error('its disk safe was deleted');
  const spec = JSON.parse(job.spec) as VerifySafeRequest;
  const everyPack = spec.every_pack === true;
  const slices = everyPack ? 1 : spec.read_data_days ?? DEFAULT_READ_DATA_DAYS;
  const store = await openSafe(ctx, safe);
  const stop = new AbortController();
  signal.addEventListener('abort', () => stop.abort(signal.reason), { once: true });
  const held = await holdMaintenanceLock(store.backend, { identity: ctx.identity, operation: 'verify', alone: true, stop, signal });
  try {
    const slice = everyPack ? 1 : await sliceToRead(ctx, safe.id, slices);
    await log.log(`verification of ${safe.name}: the structure of every object, and the stored bytes of ${everyPack ? 'every pack (outside the rotation)' : `slice ${slice} of ${slices} of its packs`}`);
    const r = await new Checker(store, { readData: { kind: 'bucket', n: slice, of: slices }, signal: held.signal }).run();
    if (!everyPack) await sliceRead(ctx, safe.id, slices, slice);
    const result: Record<string, unknown> = { slice, slices, ...await recordDamage(ctx, safe, store, job.id, r, held.signal) };
    if (result['marker'] !== undefined) await log.log(`marked ${(result['packs_condemned'] as string[]).length} damaged pack(s) for deletion: no backup deduplicates against their blobs, so the next backup stores again what its machine still has`);
    await log.log(`read ${r.packsRead} of ${r.packs} pack(s) (${r.bytesRead} bytes); ${r.errors.length} error(s), ${r.damagedPacks.length} damaged pack(s), ${r.missingPacks.length} missing pack(s), ${r.damaged.length} damaged snapshot(s)`);
    if (r.errors.length > 0) throw new ServerJobFailedError(`verification found ${r.errors.length} error(s) in disk safe ${safe.name}; first: ${r.errors[0]!.object}: ${r.errors[0]!.message}`, result);
    return result;
  } catch (e) {
    throw held.signal.aborted ? held.signal.reason : e;
  } finally {
    await held.release();
  }
};

/** The slice of `safeId`'s packs this run reads, out of `slices` (a new rotation, or one whose slice count changed, starts at 1). */
async function sliceToRead(ctx: ServiceContext, safeId: string, slices: number): Promise<number> {
  const row = await ctx.db.selectFrom('safe_verifications').selectAll().where('safe_id', '=', safeId).executeTakeFirst();
  if (row === undefined) {
    await ctx.db.insertInto('safe_verifications').values({ safe_id: safeId, slices, next_slice: 1, verified_at: null }).onConflict((oc) => oc.column('safe_id').doNothing()).execute();
    return 1;
  }
  if (row.slices === slices) return row.next_slice;
  await ctx.db.updateTable('safe_verifications').set({ slices, next_slice: 1 }).where('safe_id', '=', safeId).execute();
  return 1;
}

/** Slice `slice` of `slices` was read: the next run reads the one after it (unless the rotation changed meanwhile). */
async function sliceRead(ctx: ServiceContext, safeId: string, slices: number, slice: number): Promise<void> {
  await ctx.db.updateTable('safe_verifications').set({ next_slice: (slice % slices) + 1, verified_at: ctx.now().toISOString() })
    .where('safe_id', '=', safeId).where('slices', '=', slices).where('next_slice', '=', slice).execute();
}

/** What `object` (`pack ID`) was found to be, from the check's errors and warnings. */
function reasonOf(r: CheckReport, object: string): string {
  return [...r.errors, ...r.warnings].find((p) => p.object === object)?.message ?? 'damaged';
}

/**
 * Records the check's damaged packs and snapshots (damage.ts), marks the
 * packs for deletion (see the module comment), and returns the job's
 * result: the check's figures and what it found.
 */
async function recordDamage(ctx: ServiceContext, safe: DiskSafe, store: Store, jobId: string, r: CheckReport, signal: AbortSignal): Promise<Record<string, unknown>> {
  // A pack the index names that is gone is damage as much as a damaged one: no writer may deduplicate against what it held.
  const bad = [...r.damagedPacks, ...r.missingPacks];
  const newPacks = await markPacksDamaged(ctx, safe.id, bad.map((pack) => ({ pack, reason: reasonOf(r, `pack ${pack}`) })), jobId);
  const newSnapshots = await markSnapshotsDamaged(ctx, safe.id, r.damaged.map((d) => ({
    id: d.id,
    reason: `${d.blobs} blob(s) it references are ${d.certain ? 'lost' : 'in packs whose stored bytes are damaged'} (verification)`,
  })), 'verify', jobId);
  const condemned = bad.length === 0 ? { condemned: [] } : await condemnDamagedPacks(store, bad, ctx.now(), { signal });
  // Damage found before is not told again.
  if (newPacks.length > 0 || newSnapshots.length > 0) {
    await raiseEvent(ctx, {
      kind: 'verify.damage', customerId: safe.customer_id, machineId: safe.machine_id, safeId: safe.id, jobId,
      message: `verification found ${newPacks.length} damaged pack(s) and ${newSnapshots.length} damaged snapshot(s)${newSnapshots.length > 0 ? ` (first: ${newSnapshots[0]!.slice(0, 8)})` : ''}; `
        + 'the damaged packs are taken out of use, and the next backup stores again what the machine still has of them',
      details: { damaged_packs: newPacks.slice(0, LISTED), damaged_snapshots: newSnapshots.slice(0, LISTED) },
    });
  }
  return {
    snapshots: r.snapshots, packs: r.packs, index_files: r.indexFiles, packs_read: r.packsRead, bytes_read: r.bytesRead,
    errors: r.errors.length, warnings: r.warnings.length,
    damaged_packs: r.damagedPacks.slice(0, LISTED), damaged_pack_count: r.damagedPacks.length,
    missing_packs: r.missingPacks.slice(0, LISTED), missing_pack_count: r.missingPacks.length,
    damaged_snapshots: r.damaged.slice(0, LISTED).map((d) => d.id), damaged_snapshot_count: r.damaged.length,
    lost_blobs: r.lostBlobs.length,
    new_damaged_packs: newPacks.slice(0, LISTED), new_damaged_snapshots: newSnapshots.slice(0, LISTED),
    ...(condemned.marker === undefined ? {} : { marker: condemned.marker, packs_condemned: condemned.condemned.slice(0, LISTED) }),
    problems: r.errors.slice(0, LISTED).map((p) => `${p.object}: ${p.message}`),
  };
}
