/**
 * A retention policy's rules and their preview: which of the disk safe's
 * snapshots each rule keeps, which go, and why (forget's dry run, the
 * server's own reasons). Nothing is removed here.
 */
import { useState, type FormEvent } from 'react';
import type { ForgetResultBody, ForgetSafeRequest } from '../../../src/api/v1.js';
import { describeError } from '../api/client.js';
import { formatTime } from '../format.js';
import { useSession } from '../session.js';

/** The rules the form offers, in the order forget applies them. */
export const KEEP_FIELDS = [
  ['keep_last', 'Last'], ['keep_hourly', 'Hourly'], ['keep_daily', 'Daily'], ['keep_weekly', 'Weekly'], ['keep_monthly', 'Monthly'], ['keep_yearly', 'Yearly'],
] as const;
type KeepField = (typeof KEEP_FIELDS)[number][0];
export type RetentionRules = Omit<ForgetSafeRequest, 'dry_run'>;

/** The form's text for each rule from a policy's rules. */
export function rulesToForm(r: RetentionRules | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k] of KEEP_FIELDS) out[k] = r?.[k] === undefined ? '' : String(r[k]);
  out['keep_within'] = r?.keep_within ?? '';
  return out;
}

/** The rules a form says; throws an Error in words for a value that is not a count, `unlimited` or a duration. */
export function formToRules(form: Record<string, string>): RetentionRules {
  const rules: RetentionRules = {};
  for (const [k, label] of KEEP_FIELDS) {
    const v = (form[k] ?? '').trim();
    if (!v) continue;
    if (v === 'unlimited') rules[k as KeepField] = 'unlimited';
    else if (/^[0-9]+$/.test(v)) rules[k as KeepField] = Number(v);
    else throw new Error(`${label}: "${v}" is not a number of snapshots (or "unlimited")`);
  }
  const within = (form['keep_within'] ?? '').trim();
  if (within) {
    if (!/^([0-9]+[ymdh])+$/.test(within)) throw new Error(`Within: "${within}" is not a duration such as 7d, 2m or 1y6m (y years, m months, d days, h hours)`);
    rules.keep_within = within;
  }
  return rules;
}

export function RetentionForm({ form, setForm, disabled }: { form: Record<string, string>; setForm: (f: Record<string, string>) => void; disabled?: boolean }) {
  return (
    <div className="rules">
      {KEEP_FIELDS.map(([k, label]) => (
        <label key={k}>Keep {label.toLowerCase()}<input name={k} inputMode="numeric" placeholder="—" value={form[k] ?? ''} disabled={disabled} onChange={(e) => setForm({ ...form, [k]: e.target.value })} /></label>
      ))}
      <label>Keep within<input name="keep_within" placeholder="e.g. 7d" value={form['keep_within'] ?? ''} disabled={disabled} onChange={(e) => setForm({ ...form, keep_within: e.target.value })} /></label>
    </div>
  );
}

/** The preview of `rules` on disk safe `safeId`. */
export function RetentionPreview({ safeId, form }: { safeId: string; form: Record<string, string> }) {
  const { api } = useSession();
  const [result, setResult] = useState<ForgetResultBody | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const preview = async (e?: FormEvent): Promise<void> => {
    e?.preventDefault();
    setError(null);
    let rules: RetentionRules;
    try {
      rules = formToRules(form);
    } catch (err) {
      setError((err as Error).message);
      return;
    }
    if (Object.keys(rules).length === 0) {
      setError('Give at least one rule: with none, every snapshot would be kept.');
      return;
    }
    setBusy(true);
    try {
      setResult(await api.retentionPreview(safeId, rules));
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  };
  const decisions = result?.groups.flatMap((g) => g.decisions) ?? [];
  return (
    <div className="preview">
      <div className="actions">
        <button type="button" className="secondary" onClick={() => void preview()} disabled={busy}>{busy ? 'Previewing…' : 'Preview'}</button>
        {result ? <span role="status">{result.policy}: {decisions.filter((d) => d.action === 'keep').length} kept, {decisions.filter((d) => d.action === 'remove').length} removed</span> : null}
      </div>
      {error ? <p className="error" role="alert">{error}</p> : null}
      {result ? (
        <table className="list" aria-label="retention preview">
          <thead><tr><th>Snapshot</th><th>Time</th><th>Verdict</th><th>Why</th></tr></thead>
          <tbody>
            {decisions.map((d) => (
              <tr key={d.id} className={d.action}>
                <td><code>{d.short_id}</code></td>
                <td>{formatTime(d.time)}</td>
                <td><span className={`badge ${d.action === 'keep' ? 'ok' : 'failed'}`}>{d.action === 'keep' ? 'keep' : 'remove'}</span></td>
                <td>{d.reasons.join(', ') || '—'}</td>
              </tr>
            ))}
            {result.skipped.map((s) => <tr key={s.id}><td><code>{s.id.slice(0, 8)}</code></td><td colSpan={3} className="error">cannot be read: {s.error}</td></tr>)}
          </tbody>
        </table>
      ) : null}
    </div>
  );
}
