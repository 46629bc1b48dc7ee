/**
 * `holdfast server safe list | create NAME --customer CUSTOMER [--machine
 * MACHINE] [--quota-hard SIZE] [--quota-soft SIZE] | show SAFE | forget
 * SAFE --keep-… [--dry-run] | prune SAFE [--dry-run] [--grace DURATION]
 * [--max-unused PERCENT] | verify SAFE [--read-data-days N | --every-pack] | quota SAFE [--hard SIZE|none] [--soft SIZE|none]
 * | escrow SAFE | restore-token SAFE [--name NAME] [--expires-in DURATION]
 * | delete SAFE --confirm NAME [--live-machine]`: the disk safes,
 * through the API; forget, prune and verify
 * run on the server, without the key (docs/format.md §2.7, §2.11). SAFE is a name
 * or an id. Flags and printing only.
 */
import type { Command } from 'commander';
import type { CreatedTokenBody, EscrowBody, ForgetResultBody, ForgetSafeRequest, JobBody, PruneSafeRequest, SafeBody, UpdateQuotasRequest, VerifySafeRequest } from '../api/v1.js';
import { parseSize } from '../core/size.js';
import { DEFAULT_MIN_GRACE_MS, formatDurationMs, parseDuration } from '../repo/deletion-marker.js';
import { UNLIMITED } from '../jobs/forget/retention.js';
import { parseCount, tagList } from './cmd-forget.js';
import { events } from './cmd-server-job.js';
import { localIso } from '../core/local-time.js';
import { collect, formatBytes, globals, say } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { idOf, labelOf, namesOf, withServer } from './server-client.js';
import { printBody, printFields, printTable, when } from './server-output.js';

interface CreateFlags {
  customer?: string;
  machine?: string;
  quotaHard?: number;
  quotaSoft?: number;
}

/** A commander parser for a quota: a size of at least one byte ("500G", "2T"). */
function quota(option: string): (text: string) => number {
  return (text) => {
    const n = parseSize(text);
    if (n === undefined || n < 1) throw new ExitError(`${option} "${text}": give a size such as 500G or 2T`, EXIT.usage);
    return n;
  };
}

/** A quota as people read it: its size, or `-` for none. */
export const quotaText = (n: number | null): string => (n === null ? '-' : formatBytes(n));

/** A commander parser for `quota --hard|--soft`: a size of at least one byte, or `none` (the quota removed: null). */
export function quotaOrNone(option: string): (text: string) => number | null {
  const size = quota(option);
  return (text) => (text === 'none' ? null : size(text));
}

/** The flags of `customer quota` and `safe quota`: absent, a quota stays; `none` removes it. */
export interface QuotaFlags {
  hard?: number | null;
  soft?: number | null;
}

/** The PATCH body of `flags`, or undefined when they change nothing (the command then only shows the quotas). */
export function quotaUpdate(flags: QuotaFlags): UpdateQuotasRequest | undefined {
  if (flags.hard === undefined && flags.soft === undefined) return undefined;
  return { ...(flags.hard === undefined ? {} : { quota_hard: flags.hard }), ...(flags.soft === undefined ? {} : { quota_soft: flags.soft }) };
}

/** "stored 1.20 GiB; soft quota 8.00 GiB, hard quota 10.0 GiB" */
export function quotaLine(r: { stored_bytes: number; quota_soft: number | null; quota_hard: number | null }): string {
  return `stored ${formatBytes(r.stored_bytes)}; soft quota ${r.quota_soft === null ? 'none' : formatBytes(r.quota_soft)}, hard quota ${r.quota_hard === null ? 'none' : formatBytes(r.quota_hard)}`;
}

/** The --keep-* and --group-by flags (keepOptions), and forget's --dry-run. */
export interface ForgetFlags {
  keepLast?: string; keepHourly?: string; keepDaily?: string; keepWeekly?: string; keepMonthly?: string; keepYearly?: string;
  keepWithin?: string; keepTag: string[]; groupBy?: string; dryRun?: boolean;
}

/** Adds the retention flags of `safe forget` to `cmd` (also `policy set` and `policy preview`). */
export function keepOptions(cmd: Command): Command {
  return cmd
    .option('--keep-last <n>', 'keep the last n snapshots')
    .option('--keep-hourly <n>', 'keep the last n hourly snapshots')
    .option('--keep-daily <n>', 'keep the last n daily snapshots')
    .option('--keep-weekly <n>', 'keep the last n weekly snapshots')
    .option('--keep-monthly <n>', 'keep the last n monthly snapshots')
    .option('--keep-yearly <n>', 'keep the last n yearly snapshots')
    .option('--keep-within <duration>', 'keep snapshots newer than duration (such as 1y5m7d2h) before the newest')
    .option('--keep-tag <tag[,tag]>', 'keep snapshots with all these tags (repeatable)', collect, [])
    .option('--group-by <fields>', 'group by host, paths and/or tags, comma-separated; "" for one group (default: host,paths)');
}

/** A --keep-N count as the API takes it: `holdfast forget`'s rule (a whole number, or "unlimited"). */
function keepCount(text: string | undefined): number | 'unlimited' | undefined {
  if (text === undefined) return undefined;
  const n = parseCount(text);
  return n === UNLIMITED ? 'unlimited' : n;
}

/** The API's forget request for the flags (the server checks the rest and says what is wrong); undefined when no rule is given. */
export function retentionRules(f: ForgetFlags): ForgetSafeRequest | undefined {
  const counts: [keyof ForgetSafeRequest, string | undefined][] = [
    ['keep_last', f.keepLast], ['keep_hourly', f.keepHourly], ['keep_daily', f.keepDaily],
    ['keep_weekly', f.keepWeekly], ['keep_monthly', f.keepMonthly], ['keep_yearly', f.keepYearly],
  ];
  const req: Record<string, unknown> = {};
  for (const [key, text] of counts) {
    const n = keepCount(text);
    if (n !== undefined) req[key] = n;
  }
  if (f.keepWithin !== undefined) req['keep_within'] = f.keepWithin;
  if (f.keepTag.length > 0) req['keep_tags'] = f.keepTag.map(tagList);
  if (f.groupBy !== undefined) req['group_by'] = f.groupBy === '' ? [] : f.groupBy.split(',');
  if (Object.keys(req).length === 0) return undefined;
  return { ...req, ...(f.dryRun ? { dry_run: true } : {}) } as ForgetSafeRequest;
}

/** Prints forget's (or a retention preview's) decisions, group by group. */
export function printForget(g: Parameters<typeof say>[0], r: ForgetResultBody): void {
  say(g, `policy: ${r.policy}${r.dry_run ? ' (dry run: nothing is removed)' : ''}`);
  for (const group of r.groups) {
    const named = [group.host === null ? undefined : `host ${group.host}`, group.paths === null ? undefined : `paths ${group.paths.join(', ')}`, group.tags === null ? undefined : `tags ${group.tags.join(', ')}`].filter(Boolean);
    say(g, `${named.length > 0 ? named.join(', ') : 'all snapshots'}: keep ${group.keep}, remove ${group.remove}`);
    for (const d of group.decisions) say(g, `  ${(r.dry_run && d.action === 'remove' ? 'would remove' : d.action).padEnd(12)} ${d.short_id}  ${localIso(d.time)}  ${d.reasons.join(', ')}`);
  }
  for (const s of r.skipped) say(g, `skipped ${s.id.slice(0, 8)}: ${s.error}`);
  if (!r.dry_run) say(g, `removed ${r.removed.length} snapshot${r.removed.length === 1 ? '' : 's'}`);
}

/** Adds this file's commands under `holdfast server`. */
export function registerSubcommands(server: Command): void {
  const safe = server.command('safe').description('the disk safes: list, create, show, quota, escrow, restore-token, forget, prune, verify, delete');

  safe.command('list').description('the disk safes the caller can see')
    .action(async (_f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [all, customers, machines] = await withServer(g, async (c) => [
        await c.get<SafeBody[]>('/safes'), await namesOf(c, '/customers'), await namesOf(c, '/machines'),
      ] as const);
      if (g.json) return printBody(all);
      printTable(g, 'no disk safes', ['NAME', 'ID', 'CUSTOMER', 'MACHINE', 'STORED', 'QUOTA (SOFT / HARD)'], all.map((s) => [
        s.name, s.id, customers.get(s.customer_id) ?? s.customer_id, s.machine_id === null ? '-' : machines.get(s.machine_id) ?? s.machine_id,
        formatBytes(s.stored_bytes), `${quotaText(s.quota_soft)} / ${quotaText(s.quota_hard)}`,
      ]));
    });

  safe.command('create').description('add a disk safe of a customer (NAME is its name in https://HOST:PORT/safes/NAME)').argument('<name>')
    .option('--customer <customer>', 'its customer (a name or an id); required')
    .option('--machine <machine>', 'the machine it belongs to (a name or an id)')
    .option('--quota-hard <size>', 'refuse uploads past this many stored bytes (provider roles only)', quota('--quota-hard'))
    .option('--quota-soft <size>', 'warn past this many stored bytes (provider roles only)', quota('--quota-soft'))
    .action(async (name: string, flags: CreateFlags, cmd: Command) => {
      const g = globals(cmd);
      if (flags.customer === undefined) throw new ExitError('holdfast server safe create needs --customer CUSTOMER', EXIT.usage);
      const made = await withServer(g, async (c) => {
        const customer = await idOf(c, 'customer', flags.customer!);
        return c.post<SafeBody>('/safes', {
          customer_id: customer, name,
          ...(flags.machine === undefined ? {} : { machine_id: await idOf(c, 'machine', flags.machine, customer) }),
          ...(flags.quotaHard === undefined ? {} : { quota_hard: flags.quotaHard }),
          ...(flags.quotaSoft === undefined ? {} : { quota_soft: flags.quotaSoft }),
        });
      });
      if (g.json) return printBody(made);
      say(g, `created disk safe ${made.name}: ${made.id}`);
    });

  safe.command('show').description('one disk safe').argument('<safe>', 'its name or id')
    .action(async (ref: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [s, customer, machine] = await withServer(g, async (c) => {
        const got = await c.get<SafeBody>(`/safes/${await idOf(c, 'safe', ref)}`);
        return [got, await labelOf(c, '/customers', got.customer_id), await labelOf(c, '/machines', got.machine_id)] as const;
      });
      if (g.json) return printBody(s);
      printFields(g, [['id', s.id], ['name', s.name], ['customer', customer], ['machine', machine],
        ['stored', formatBytes(s.stored_bytes)], ['soft quota', quotaText(s.quota_soft)], ['hard quota', quotaText(s.quota_hard)], ['created', when(s.created_at)],
        ['damaged snapshots', s.damaged_snapshots.length === 0 ? 'none found' : s.damaged_snapshots.map((d) => `${d.snapshot_id.slice(0, 8)} (${d.source}, ${when(d.found_at)})`).join(', ')]]);
    });

  safe.command('quota').description('show a disk safe\'s quotas and stored bytes, or set them (provider roles only)').argument('<safe>', 'its name or id')
    .option('--hard <size>', 'refuse uploads past this many stored bytes (such as 500G, 2T), or none', quotaOrNone('--hard'))
    .option('--soft <size>', 'warn past this many stored bytes, or none', quotaOrNone('--soft'))
    .action(async (ref: string, flags: QuotaFlags, cmd: Command) => {
      const g = globals(cmd);
      const change = quotaUpdate(flags);
      const s = await withServer(g, async (c) => {
        const id = await idOf(c, 'safe', ref);
        return change === undefined ? c.get<SafeBody>(`/safes/${id}`) : c.patch<SafeBody>(`/safes/${id}`, change);
      });
      if (g.json) return printBody(s);
      say(g, `disk safe ${s.name}: ${quotaLine(s)}`);
    });

  safe.command('escrow').description('whether a disk safe\'s password is escrowed for its customer\'s recovery key (holdfast escrow recover opens it)').argument('<safe>', 'its name or id')
    .action(async (ref: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const e = await withServer(g, async (c) => c.get<EscrowBody>(`/safes/${await idOf(c, 'safe', ref)}/escrow`));
      if (g.json) return printBody(e);
      printFields(g, [['safe', e.safe_name], ['recovery key', e.recovery_key], ['current', e.current ? 'yes' : 'no: sealed for an earlier recovery key; the agent seals it again at its next poll'],
        ['stored', `${when(e.stored_at)} by ${e.stored_by}`]]);
    });

  safe.command('restore-token').description('make a restore token: it reads this one disk safe (restore, restore-image, check) until it expires; its secret is printed this once')
    .argument('<safe>', 'its name or id')
    .option('--name <name>', 'what it is for')
    .option('--expires-in <duration>', 'how long it works (such as 4h, 2d; from 1m to 7d; default 4h)')
    .action(async (ref: string, flags: { name?: string; expiresIn?: string }, cmd: Command) => {
      const g = globals(cmd);
      let seconds: number | undefined;
      if (flags.expiresIn !== undefined) {
        try {
          seconds = Math.round(parseDuration(flags.expiresIn) / 1000);
        } catch (e) {
          throw new ExitError(`--expires-in ${flags.expiresIn}: ${(e as Error).message}`, EXIT.usage);
        }
      }
      const [safeName, made] = await withServer(g, async (c) => {
        const s = await c.get<SafeBody>(`/safes/${await idOf(c, 'safe', ref)}`);
        return [s.name, await c.post<CreatedTokenBody>(`/safes/${s.id}/restore-tokens`, { ...(flags.name === undefined ? {} : { name: flags.name }), ...(seconds === undefined ? {} : { expires_in: seconds }) })] as const;
      });
      if (g.json) return printBody(made);
      // Printed even with --quiet: it is shown this once and never again.
      process.stdout.write(`created restore token ${made.token.id} for disk safe ${safeName}, until ${when(made.token.expires_at)}\n`
        + `secret: ${made.secret}\n(shown only now: the server keeps only its hash; use it as HOLDFAST_TOKEN)\n`);
    });

  safe.command('delete').description('delete a disk safe and every backup in it, on the server (provider and customer admins only; refused while a job or a client works on it, and for a machine that is not retired without --live-machine)')
    .argument('<safe>', 'its name or id')
    .option('--confirm <name>', 'the safe\'s name, repeated: the backups in it are destroyed; required')
    .option('--live-machine', 'the safe of a machine that is not retired: confirms that the machine then has no safe, and its agent stops backing it up')
    .action(async (ref: string, flags: { confirm?: string; liveMachine?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      if (flags.confirm === undefined) throw new ExitError('holdfast server safe delete destroys every backup in the safe: repeat its name with --confirm NAME', EXIT.usage);
      const s = await withServer(g, async (c) => {
        const found = await c.get<SafeBody>(`/safes/${await idOf(c, 'safe', ref)}`);
        await c.delete(`/safes/${found.id}`, { confirm: flags.confirm, ...(flags.liveMachine ? { live_machine: true } : {}) });
        return found;
      });
      if (g.json) return printBody({ deleted: s.id, name: s.name });
      say(g, `deleted disk safe ${s.name} (${s.id}) and every object in it (${formatBytes(s.stored_bytes)})`);
    });

  const forget = safe.command('forget').description('remove snapshots of a disk safe by a retention policy, on the server (no key needed); --dry-run shows each snapshot and why it is kept or removed')
    .argument('<safe>', 'its name or id');
  keepOptions(forget)
    .option('-n, --dry-run', 'show what would be removed; remove nothing')
    .action(async (ref: string, flags: ForgetFlags, cmd: Command) => {
      const g = globals(cmd);
      const body = retentionRules(flags);
      if (body === undefined) throw new ExitError('holdfast server safe forget needs a policy: --keep-last, --keep-daily, … or --keep-within', EXIT.usage);
      const r = await withServer(g, async (c) => c.post<ForgetResultBody>(`/safes/${await idOf(c, 'safe', ref)}/forget`, body));
      if (g.json) return printBody(r);
      printForget(g, r);
    });

  safe.command('prune').description('delete what no snapshot of a disk safe needs, on the server (no key needed): marks now, deletes what a prune marked at least the grace period ago; follows the job until it ends')
    .argument('<safe>', 'its name or id')
    .option('-n, --dry-run', 'report what would be marked and deleted; change nothing')
    .option('--grace <duration>', `delete what was marked at least this long ago (such as 1h, 30m; default 1h); at least the server's minimum grace, ${formatDurationMs(DEFAULT_MIN_GRACE_MS)} unless the server was started with HOLDFAST_MIN_GRACE`)
    .option('--max-unused <percent>', 'repack packs with more unused space than this (default 50)')
    .action(async (ref: string, flags: { dryRun?: boolean; grace?: string; maxUnused?: string }, cmd: Command) => {
      const g = globals(cmd);
      const body: PruneSafeRequest = { ...(flags.dryRun ? { dry_run: true } : {}) };
      if (flags.grace !== undefined) {
        let ms: number;
        try {
          ms = parseDuration(flags.grace);
        } catch (e) {
          throw new ExitError(`--grace ${flags.grace}: ${(e as Error).message}`, EXIT.usage);
        }
        body.grace_seconds = Math.round(ms / 1000);
      }
      if (flags.maxUnused !== undefined) {
        const pct = Number(flags.maxUnused.replace(/%$/, ''));
        if (!Number.isFinite(pct) || pct < 0 || pct > 100) throw new ExitError(`--max-unused ${flags.maxUnused}: give a percentage from 0 to 100`, EXIT.usage);
        body.max_unused = pct;
      }
      await withServer(g, async (c) => {
        const job = await c.post<JobBody>(`/safes/${await idOf(c, 'safe', ref)}/prune`, body);
        if (!g.json) say(g, `prune job ${job.id} queued on the server`);
        await events(c, g, job.id, true);
      });
    });

  safe.command('verify').description('verify the stored bytes of a disk safe on the server (no key needed): the structure of everything, and the bytes of the next slice of its packs; damaged packs and snapshots are recorded, and the next backup stores again what was damaged; follows the job until it ends')
    .argument('<safe>', 'its name or id')
    .option('--read-data-days <N>', 'read the packs in N slices, one a run (a run a day reads every pack every N days; default 1: every pack, every run)')
    .option('--every-pack', 'read every pack now, outside the rotation (which stays where it is)')
    .action(async (ref: string, flags: { readDataDays?: string; everyPack?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      if (flags.everyPack && flags.readDataDays !== undefined) throw new ExitError('--every-pack reads every pack outside the rotation: it takes no --read-data-days', EXIT.usage);
      const body: VerifySafeRequest = flags.everyPack ? { every_pack: true } : {};
      if (flags.readDataDays !== undefined) {
        if (!/^\d{1,4}$/.test(flags.readDataDays.trim()) || Number(flags.readDataDays) < 1 || Number(flags.readDataDays) > 3660) {
          throw new ExitError(`--read-data-days wants a whole number from 1 to 3660, got "${flags.readDataDays}"`, EXIT.usage);
        }
        body.read_data_days = Number(flags.readDataDays);
      }
      await withServer(g, async (c) => {
        const job = await c.post<JobBody>(`/safes/${await idOf(c, 'safe', ref)}/verify`, body);
        if (!g.json) say(g, `verification job ${job.id} started on the server`);
        await events(c, g, job.id, true);
      });
    });
}
