/**
 * The census of a disk safe by the holder of its key: the server cannot
 * check a snapshot's MAC, so a client that can only add (a machine's agent
 * token) could plant snapshots that look newer than the genuine ones and
 * have the server's retention keep them in their place (docs/decisions.md,
 * "Retention on the server"). The machine's agent, which holds the key,
 * lists the safe at every backup, after the server gave it the job; its
 * result names the snapshots that fail their MAC (`unauthentic_snapshots`).
 *
 *   a backup job's result arrives    census time = the job's started_at:
 *                                    every snapshot stored by then was in
 *                                    the agent's listing
 *     each snapshot it names         marked unauthentic (alert once)
 *     each other one stored by then,
 *     and the job's own snapshots    vouched for (`census_at`)
 *   retention (forgetInSafe)         counts only vouched snapshots; the
 *                                    others stay, with why
 *
 * A safe with no census (no agent backup yet; a safe written only by the
 * CLI) keeps the retention of before: every snapshot counts.
 */
import { isBackupKind } from '../../api/v1.js';
import { isIdHex } from '../../core/ids.js';
import type { Job, DiskSafe } from '../db/schema.js';
import type { ForgetStore } from '../../jobs/forget/forget.js';
import type { ServiceContext } from './context.js';
import { raiseEvent } from './notifications.js';
import { ensureIndexed } from './snapshot-index.js';

/** The snapshot ids in `v` (a result's field), or undefined when it is not a list of them. */
function idsOf(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === 'string' && isIdHex(x)) ? v as string[] : undefined;
}

/** The snapshots a backup job's result says it saved (`snapshot_id`, or each of an image backup's `snapshots`). */
function ownSnapshots(result: Record<string, unknown>): string[] {
  const one = result['snapshot_id'];
  const many = Array.isArray(result['snapshots']) ? (result['snapshots'] as unknown[]).map((s) => (s as Record<string, unknown> | null)?.['snapshot_id']) : [];
  return [one, ...many].filter((id): id is string => isIdHex(id));
}

/**
 * Records the census a succeeded backup job `job` reports in its `result`
 * (see the module comment). A census that lists fewer ids than it counted
 * (`unauthentic_count`) marks those it lists but vouches for nothing older:
 * a snapshot it could not name must not be counted.
 */
export async function recordCensus(ctx: ServiceContext, job: Job, result: Record<string, unknown>): Promise<void> {
  const unauthentic = idsOf(result['unauthentic_snapshots']);
  if (!isBackupKind(job.kind) || job.started_at === null || unauthentic === undefined) return;
  const count = result['unauthentic_count'];
  const complete = typeof count !== 'number' || count <= unauthentic.length;
  const safe = await ctx.db.selectFrom('disk_safes').selectAll().where('id', '=', job.safe_id).executeTakeFirst();
  if (!safe || safe.deleting_at !== null) return;
  await ensureIndexed(ctx, safe);
  const at = job.started_at;
  const fresh = unauthentic.length === 0 ? [] : (await ctx.db.selectFrom('snapshot_index').select('id')
    .where('safe_id', '=', safe.id).where('id', 'in', unauthentic).where('unauthentic', '=', 0).execute()).map((r) => r.id);
  const own = ownSnapshots(result).filter((id) => !unauthentic.includes(id));
  await ctx.db.transaction().execute(async (trx) => {
    if (fresh.length > 0) {
      await trx.updateTable('snapshot_index').set({ unauthentic: 1, census_at: at }).where('safe_id', '=', safe.id).where('id', 'in', fresh).execute();
    }
    if (own.length > 0) {
      await trx.updateTable('snapshot_index').set({ census_at: at }).where('safe_id', '=', safe.id).where('id', 'in', own).where('unauthentic', '=', 0).where('census_at', 'is', null).execute();
    }
    if (!complete) return;
    await trx.updateTable('snapshot_index').set({ census_at: at })
      .where('safe_id', '=', safe.id).where('census_at', 'is', null).where('unauthentic', '=', 0).where('stored_at', '<=', at).execute();
    await trx.updateTable('disk_safes').set({ census_at: at })
      .where('id', '=', safe.id).where((eb) => eb.or([eb('census_at', 'is', null), eb('census_at', '<', at)])).execute();
  });
  if (fresh.length === 0) return;
  const what = fresh.length === 1 ? `snapshot ${fresh[0]!.slice(0, 8)} fails its MAC` : `${fresh.length} snapshots fail their MAC (first: ${fresh[0]!.slice(0, 8)})`;
  await raiseEvent(ctx, {
    kind: 'verify.damage', customerId: safe.customer_id, machineId: safe.machine_id, safeId: safe.id, jobId: job.id,
    message: `${what}: planted by someone without the key (the machine's agent found it at its backup); the server's retention never counts it. `
      + 'Whoever planted it holds a token that can add to the safe: revoke the tokens you do not trust',
    details: { unauthentic_snapshots: fresh },
  });
}

/**
 * `store` as `safe`'s retention sees it: with a census, only the snapshots
 * it vouched for are listed; the others are left out (neither kept nor
 * removed: forget's `skipped`) with why. Without a census, `store` itself.
 */
export async function vouchedSnapshots(ctx: ServiceContext, safe: DiskSafe, store: ForgetStore): Promise<ForgetStore> {
  const census = safe.census_at;
  if (census === null) return store;
  return {
    remove: (type, name) => store.remove(type, name),
    listSnapshots: async () => {
      // Read before the listing: a snapshot stored in between is not vouched for.
      const rows = new Map((await ctx.db.selectFrom('snapshot_index').select(['id', 'census_at', 'unauthentic']).where('safe_id', '=', safe.id).execute()).map((r) => [r.id, r]));
      const { ok, damaged } = await store.listSnapshots();
      const left = new Map(damaged);
      const counted = ok.filter(({ id }) => {
        const r = rows.get(id);
        if (r !== undefined && r.census_at !== null && r.unauthentic === 0) return true;
        left.set(id, new Error(r !== undefined && r.unauthentic === 1
          ? `fails its MAC (the agent's census of ${r.census_at}): planted by someone without the key; never counted`
          : `not yet vouched for by the machine's agent (stored after its census of ${census}): neither kept nor removed until its next backup`));
        return false;
      });
      return { ok: counted, damaged: left };
    },
  };
}
