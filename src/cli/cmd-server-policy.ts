/**
 * `holdfast server policy list | show POLICY | set CUSTOMER [--machine M |
 * --safe S] [settings…] [--unset SETTING…] | delete POLICY | effective
 * MACHINE [--safe] | preview SAFE [--keep-…]`: the policies (what the
 * server does on schedule), through the API. `set` makes the policy of the
 * customer, machine or safe, or changes the settings it is given in the
 * one it has (the others stay; --unset removes one). Flags and printing only.
 */
import type { Command } from 'commander';
import type { ForgetResultBody } from '../api/v1.js';
import type { EffectivePolicyBody, PolicyBody, PolicySettings } from '../api/v1-policies.js';
import { POLICY_SETTING_NAMES } from '../api/v1-policies.js';
import { parseSize } from '../core/size.js';
import { parseDuration } from '../repo/deletion-marker.js';
import { keepOptions, printForget, retentionRules, type ForgetFlags } from './cmd-server-safe.js';
import { collect, formatBytes, globals, say } from './context.js';
import { ExitError, EXIT } from './exit-codes.js';
import { idOf, labelOf, withServer, type AdminClient } from './server-client.js';
import { printBody, printFields, printTable, when } from './server-output.js';

interface SetFlags extends ForgetFlags {
  machine?: string;
  safe?: string;
  schedule?: string;
  window?: string;
  timeZone?: string;
  path: string[];
  exclude: string[];
  timeout?: string;
  retentionEvery?: string;
  pruneEvery?: string;
  pruneGrace?: string;
  verifyEvery?: string;
  verifyDays?: string;
  restoreTestEvery?: string;
  restoreTestShare?: string;
  restoreTestMinFiles?: string;
  quotaHard?: string;
  quotaSoft?: string;
  unset: string[];
}

function positive(option: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new ExitError(`${option} ${text}: give a whole number of at least 1`, EXIT.usage);
  return n;
}

function seconds(option: string, text: string): number {
  try {
    return Math.round(parseDuration(text) / 1000);
  } catch (e) {
    throw new ExitError(`${option} ${text}: ${(e as Error).message}`, EXIT.usage);
  }
}

function size(option: string, text: string): number {
  const n = parseSize(text);
  if (n === undefined || n < 1) throw new ExitError(`${option} "${text}": give a size such as 500G or 2T`, EXIT.usage);
  return n;
}

/** The settings `f` gives (the server checks them and says what is wrong), and the ones --unset removes. */
function settingsOf(f: SetFlags): { set: PolicySettings; unset: (keyof PolicySettings)[] } {
  const set: PolicySettings = {};
  if (f.schedule !== undefined) set.schedule = f.schedule;
  if (f.window !== undefined) set.window = f.window;
  if (f.timeZone !== undefined) set.time_zone = f.timeZone;
  if (f.path.length > 0) set.backup = { paths: f.path, ...(f.exclude.length > 0 ? { excludes: f.exclude } : {}) };
  else if (f.exclude.length > 0) throw new ExitError('--exclude goes with the --path of a backup (give both)', EXIT.usage);
  if (f.timeout !== undefined) set.timeout = f.timeout;
  const rules = retentionRules(f);
  if (rules !== undefined) set.retention = { ...rules, ...(f.retentionEvery !== undefined ? { every: f.retentionEvery } : {}) };
  else if (f.retentionEvery !== undefined) throw new ExitError('--retention-every goes with the rules it applies (--keep-daily, …)', EXIT.usage);
  if (f.pruneEvery !== undefined) set.prune = { every: f.pruneEvery, ...(f.pruneGrace !== undefined ? { grace_seconds: seconds('--prune-grace', f.pruneGrace) } : {}) };
  else if (f.pruneGrace !== undefined) throw new ExitError('--prune-grace goes with --prune-every', EXIT.usage);
  if (f.verifyEvery !== undefined || f.verifyDays !== undefined) {
    if (f.verifyEvery === undefined || f.verifyDays === undefined) throw new ExitError('a verification needs --verify-every and --verify-days (all data is read every that many days)', EXIT.usage);
    set.verify = { every: f.verifyEvery, read_data_subset_days: positive('--verify-days', f.verifyDays) };
  }
  if (f.restoreTestEvery !== undefined) {
    set.restore_test = {
      every: f.restoreTestEvery, ...(f.restoreTestShare !== undefined ? { share: Number(f.restoreTestShare.replace(/%$/, '')) } : {}),
      ...(f.restoreTestMinFiles !== undefined ? { min_files: positive('--restore-test-min-files', f.restoreTestMinFiles) } : {}),
    };
  } else if (f.restoreTestShare !== undefined || f.restoreTestMinFiles !== undefined) throw new ExitError('--restore-test-share and --restore-test-min-files go with --restore-test-every', EXIT.usage);
  if (f.quotaHard !== undefined || f.quotaSoft !== undefined) {
    set.quota = { ...(f.quotaHard !== undefined ? { hard: size('--quota-hard', f.quotaHard) } : {}), ...(f.quotaSoft !== undefined ? { soft: size('--quota-soft', f.quotaSoft) } : {}) };
  }
  for (const u of f.unset) {
    if (!(POLICY_SETTING_NAMES as string[]).includes(u)) throw new ExitError(`--unset ${u}: not a setting (${POLICY_SETTING_NAMES.join(', ')})`, EXIT.usage);
    if (u in set) throw new ExitError(`--unset ${u}: it is also given a value`, EXIT.usage);
  }
  return { set, unset: f.unset as (keyof PolicySettings)[] };
}

/** The settings of a policy or an effective policy, one line each. */
function settingLines(s: PolicySettings, from?: Partial<Record<keyof PolicySettings, string>>): [string, string][] {
  const lines: [string, string][] = [];
  for (const name of POLICY_SETTING_NAMES) {
    const v = s[name];
    if (v === undefined) continue;
    let text = typeof v === 'string' ? v : JSON.stringify(v);
    if (name === 'quota') {
      const q = v as NonNullable<PolicySettings['quota']>;
      text = `hard ${q.hard === undefined ? 'none' : formatBytes(q.hard)}, soft ${q.soft === undefined ? 'none' : formatBytes(q.soft)}`;
    }
    lines.push([name.replace('_', ' '), from?.[name] ? `${text}  (policy ${from[name]})` : text]);
  }
  return lines;
}

/** What a policy is attached to, by name and id (`machine web1 (ID)`). */
const attachedTo = async (c: AdminClient, p: PolicyBody): Promise<string> => (p.safe_id !== null ? `disk safe ${await labelOf(c, '/safes', p.safe_id)}`
  : p.machine_id !== null ? `machine ${await labelOf(c, '/machines', p.machine_id)}` : `customer ${await labelOf(c, '/customers', p.customer_id)}`);

/** Adds this file's commands under `holdfast server`. */
export function registerSubcommands(server: Command): void {
  const policy = server.command('policy').description('policies: what the server does on schedule for a customer, a machine or a disk safe (list, show, set, delete, effective, preview)');

  policy.command('list').description('the policies the caller can see')
    .action(async (_f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [all, names] = await withServer(g, async (c) => {
        const got = await c.get<PolicyBody[]>('/policies');
        return [got, g.json ? [] : await Promise.all(got.map((p) => attachedTo(c, p)))] as const;
      });
      if (g.json) return printBody(all);
      printTable(g, 'no policies', ['ID', 'ATTACHED TO', 'SCHEDULE', 'UPDATED'], all.map((p, i) => [p.id, names[i]!, p.schedule ?? '-', when(p.updated_at)]));
    });

  policy.command('show').description('one policy').argument('<policy>', 'its id')
    .action(async (id: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      const [p, attached] = await withServer(g, async (c) => {
        const got = await c.get<PolicyBody>(`/policies/${encodeURIComponent(id)}`);
        return [got, await attachedTo(c, got)] as const;
      });
      if (g.json) return printBody(p);
      printFields(g, [['id', p.id], ['attached to', attached], ...settingLines(p), ['updated', `${when(p.updated_at)} by ${p.updated_by}`]]);
    });

  const set = policy.command('set')
    .description('make the policy of a customer (or of one machine or disk safe of it), or change the settings given in the one it has; the others stay')
    .argument('<customer>', 'its name or id')
    .option('--machine <machine>', 'the policy of this machine of the customer (its name or id)')
    .option('--safe <safe>', 'the policy of this disk safe of the customer (its name or id)')
    .option('--schedule <when>', 'when backups run: a cron expression of five fields ("0 2 * * *") or "every 15m"')
    .option('--window <HH:MM-HH:MM>', 'scheduled jobs start only in these hours (22:00-06:00 crosses midnight)')
    .option('--time-zone <zone>', 'the IANA time zone the schedule and the window are read in (default UTC)')
    .option('--path <path>', 'a path a scheduled backup backs up (repeat for more)', collect, [])
    .option('--exclude <pattern>', 'leave out what matches (repeat for more)', collect, [])
    .option('--timeout <duration>', 'cancel a scheduled job still running after this long (default 24h)');
  keepOptions(set)
    .option('--retention-every <duration>', 'apply the --keep-* rules this often (default 1d)')
    .option('--prune-every <duration>', 'prune this often (such as 7d)')
    .option('--prune-grace <duration>', 'the scheduled prune\'s grace period (default 1h)')
    .option('--verify-every <duration>', 'check the stored bytes this often, without the key')
    .option('--verify-days <n>', 'read a rotating part of the data at each check, so that all of it is read every n days')
    .option('--restore-test-every <duration>', 'restore a sample of files through the agent this often')
    .option('--restore-test-share <percent>', 'the share of the files a restore test restores')
    .option('--restore-test-min-files <n>', 'at least this many files')
    .option('--quota-hard <size>', 'each disk safe\'s hard quota where the safe has none (provider roles only)')
    .option('--quota-soft <size>', 'each disk safe\'s soft quota where the safe has none (provider roles only)')
    .option('--unset <setting>', `remove a setting from the policy (${POLICY_SETTING_NAMES.join(', ')}; repeatable)`, collect, [])
    .action(async (ref: string, flags: SetFlags, cmd: Command) => {
      const g = globals(cmd);
      if (flags.machine !== undefined && flags.safe !== undefined) throw new ExitError('give --machine or --safe, not both: a policy is attached to one', EXIT.usage);
      const { set: given, unset } = settingsOf(flags);
      const [p, made, attached] = await withServer(g, async (c) => {
        const customerId = await idOf(c, 'customer', ref);
        const machineId = flags.machine === undefined ? undefined : await idOf(c, 'machine', flags.machine, customerId);
        const safeId = flags.safe === undefined ? undefined : await idOf(c, 'safe', flags.safe, customerId);
        const current = (await c.get<PolicyBody[]>('/policies')).find((x) => x.customer_id === customerId && x.machine_id === (machineId ?? null) && x.safe_id === (safeId ?? null));
        if (current === undefined) {
          if (unset.length > 0) throw new ExitError('--unset: there is no policy to remove a setting from', EXIT.usage);
          const made = await c.post<PolicyBody>('/policies', { customer_id: customerId, ...(machineId ? { machine_id: machineId } : {}), ...(safeId ? { safe_id: safeId } : {}), ...given });
          return [made, true, await attachedTo(c, made)] as const;
        }
        const next: Record<string, unknown> = {};
        for (const name of POLICY_SETTING_NAMES) if (current[name] !== undefined && !unset.includes(name)) next[name] = current[name];
        const changed = await c.put<PolicyBody>(`/policies/${current.id}`, { ...next, ...given });
        return [changed, false, await attachedTo(c, changed)] as const;
      });
      if (g.json) return printBody(p);
      say(g, `${made ? 'made' : 'changed'} policy ${p.id} of ${attached}`);
      printFields(g, settingLines(p));
    });

  policy.command('delete').description('remove a policy: what it set comes from the customer\'s (or machine\'s) policy again').argument('<policy>', 'its id')
    .action(async (id: string, _f: unknown, cmd: Command) => {
      const g = globals(cmd);
      await withServer(g, (c) => c.delete(`/policies/${encodeURIComponent(id)}`));
      if (g.json) return printBody({ deleted: id });
      say(g, `deleted policy ${id}`);
    });

  policy.command('effective').description('the settings that apply to a machine (or, with --safe, a disk safe), where each comes from, and the next scheduled backup')
    .argument('<machine>', 'its name or id (with --safe: the disk safe\'s)')
    .option('--safe', 'the argument is a disk safe')
    .action(async (ref: string, flags: { safe?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const e = await withServer(g, async (c) => (flags.safe
        ? c.get<EffectivePolicyBody>(`/safes/${await idOf(c, 'safe', ref)}/policy`)
        : c.get<EffectivePolicyBody>(`/machines/${await idOf(c, 'machine', ref)}/policy`)));
      if (g.json) return printBody(e);
      printFields(g, [...settingLines(e.settings, e.from), ['interval', e.interval_seconds === null ? '-' : `${e.interval_seconds} s`], ['next run', when(e.next_run)]]);
    });

  const preview = policy.command('preview').description('what retention would keep and remove of a disk safe now, and why (the --keep-* rules given, or the safe\'s policy\'s); removes nothing')
    .argument('<safe>', 'its name or id');
  keepOptions(preview)
    .action(async (ref: string, flags: ForgetFlags, cmd: Command) => {
      const g = globals(cmd);
      const body = retentionRules(flags) ?? {};
      const r = await withServer(g, async (c) => c.post<ForgetResultBody>(`/safes/${await idOf(c, 'safe', ref)}/retention-preview`, body));
      if (g.json) return printBody(r);
      printForget(g, r);
    });
}
