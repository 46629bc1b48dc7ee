/**
 * What the server knows to be damaged in each disk safe: the packs a
 * verification found damaged and the snapshots that a verification or a
 * restore test found damaged (tables of migration 0016). A damaged snapshot
 * is never the parent of a backup again (the agent is told with each backup
 * job: jobs.ts's nextJob), and stays recorded after the next backup healed
 * the safe: its own data is gone. Records are only added; a safe's go with
 * the safe.
 */
import type { DamagedSnapshotBody } from '../../api/v1.js';
import type { DamageSource } from '../db/schema.js';
import type { ServiceContext } from './context.js';

/** The damaged snapshots of each of `safeIds` (every id a key), oldest finding first. */
export async function damagedSnapshotsOf(ctx: ServiceContext, safeIds: readonly string[]): Promise<Map<string, DamagedSnapshotBody[]>> {
  const out = new Map<string, DamagedSnapshotBody[]>(safeIds.map((id) => [id, []]));
  if (safeIds.length === 0) return out;
  const rows = await ctx.db.selectFrom('damaged_snapshots').selectAll().where('safe_id', 'in', [...new Set(safeIds)]).orderBy('found_at').orderBy('snapshot_id').execute();
  for (const r of rows) out.get(r.safe_id)!.push({ snapshot_id: r.snapshot_id, found_at: r.found_at, source: r.source, job_id: r.job_id, reason: r.reason });
  return out;
}

/**
 * Records snapshots of safe `safeId` as damaged, found by job `jobId`;
 * returns those not recorded before (an alert is about new damage only).
 */
export async function markSnapshotsDamaged(ctx: ServiceContext, safeId: string, found: readonly { id: string; reason: string }[], source: DamageSource, jobId: string): Promise<string[]> {
  if (found.length === 0) return [];
  const known = new Set((await ctx.db.selectFrom('damaged_snapshots').select('snapshot_id').where('safe_id', '=', safeId).execute()).map((r) => r.snapshot_id));
  const fresh = found.filter((f, i) => !known.has(f.id) && found.findIndex((g) => g.id === f.id) === i);
  const at = ctx.now().toISOString();
  for (const f of fresh) {
    // Another node may record the same snapshot at the same moment: the first record stands.
    await ctx.db.insertInto('damaged_snapshots').values({ safe_id: safeId, snapshot_id: f.id, found_at: at, source, job_id: jobId, reason: f.reason })
      .onConflict((oc) => oc.columns(['safe_id', 'snapshot_id']).doNothing()).execute();
  }
  return fresh.map((f) => f.id);
}

/** Records packs of safe `safeId` as damaged, found by job `jobId`; returns those not recorded before. */
export async function markPacksDamaged(ctx: ServiceContext, safeId: string, found: readonly { pack: string; reason: string }[], jobId: string): Promise<string[]> {
  if (found.length === 0) return [];
  const known = new Set((await ctx.db.selectFrom('damaged_packs').select('pack').where('safe_id', '=', safeId).execute()).map((r) => r.pack));
  const fresh = found.filter((f) => !known.has(f.pack));
  const at = ctx.now().toISOString();
  for (const f of fresh) {
    await ctx.db.insertInto('damaged_packs').values({ safe_id: safeId, pack: f.pack, found_at: at, job_id: jobId, reason: f.reason })
      .onConflict((oc) => oc.columns(['safe_id', 'pack']).doNothing()).execute();
  }
  return fresh.map((f) => f.pack);
}

/** The ids of safe `safeId`'s damaged snapshots (what a backup must not take as its parent). */
export async function damagedSnapshotIds(ctx: ServiceContext, safeId: string): Promise<string[]> {
  return (await ctx.db.selectFrom('damaged_snapshots').select('snapshot_id').where('safe_id', '=', safeId).orderBy('snapshot_id').execute()).map((r) => r.snapshot_id);
}
