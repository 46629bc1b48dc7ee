/**
 * A machine's policy as the server applies it (its effective policy: each
 * setting from the most specific policy that has it, safe, machine or
 * customer): schedule, window, next run, verification and restore tests,
 * and editing them as the machine's own (schedule-form.tsx); its retention
 * rules (the effective ones to start from), their preview, and saving them
 * as the machine's own.
 */
import { useState } from 'react';
import type { EffectivePolicyBody, PolicyBody } from '../../../src/api/v1-policies.js';
import { describeError } from '../api/client.js';
import { ErrorBox } from '../components/error-box.js';
import { formatAge, formatDuration, formatTime } from '../format.js';
import { useLoad } from '../load.js';
import { mayManage, useSession, useUser } from '../session.js';
import { settingsOf } from './policy-settings.js';
import { formToRules, RetentionForm, RetentionPreview, rulesToForm } from './retention-preview.js';
import { ScheduleEditor } from './schedule-form.js';

/** Where a setting comes from, in words. */
function fromWords(policy: EffectivePolicyBody, key: keyof EffectivePolicyBody['settings'], own: PolicyBody | undefined): string {
  const from = policy.from[key];
  if (!from) return '';
  return from === own?.id ? '(this machine\'s)' : '(inherited)';
}

export function PolicyCard({ machineId, customerId, safeId }: { machineId: string; customerId: string; safeId: string }) {
  const { api } = useSession();
  const user = useUser();
  const data = useLoad(async () => {
    const [policy, policies] = await Promise.all([api.machinePolicy(machineId), api.policies()]);
    return { policy, own: policies.find((p) => p.machine_id === machineId && p.attached_to === 'machine') };
  }, [api, machineId]);
  const [form, setForm] = useState<Record<string, string> | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  if (!data.data) return <ErrorBox error={data.error} retry={data.reload} />;
  const { policy, own } = data.data;
  const s = policy.settings;
  const rules = form ?? rulesToForm(s.retention);
  const save = async (): Promise<void> => {
    setError(null);
    setSaved(null);
    try {
      // How often the server applies them stays as the machine's policy had it.
      const every = own?.retention?.every;
      const retention = { ...formToRules(rules), ...(every !== undefined ? { every } : {}) };
      if (own) {
        await api.replacePolicy(own.id, { ...settingsOf(own), retention });
      } else {
        await api.createPolicy({ customer_id: customerId, machine_id: machineId, retention });
      }
      setSaved('Saved: the server applies these rules from now on.');
      setForm(null);
      data.reload();
    } catch (e) {
      setError(describeError(e));
    }
  };
  return (
    <div className="card" aria-label="policy">
      <dl className="facts">
        <dt>Schedule</dt><dd>{s.schedule ?? 'none (backups run when started)'} {fromWords(policy, 'schedule', own)}</dd>
        <dt>Next run</dt><dd>{policy.next_run ? `${formatTime(policy.next_run)} (${formatAge(policy.next_run)})` : '—'}</dd>
        <dt>Window</dt><dd>{s.window ? `${s.window} ${s.time_zone ?? 'UTC'}` : 'any time'}</dd>
        <dt>Interval</dt><dd>{policy.interval_seconds ? formatDuration(policy.interval_seconds) : '—'}</dd>
        <dt>Verification</dt><dd>{s.verify ? `every ${s.verify.every}, all data read in ${s.verify.read_data_subset_days} days` : 'none'}</dd>
        <dt>Restore test</dt><dd>{s.restore_test ? `every ${s.restore_test.every}${s.restore_test.share ? `, ${s.restore_test.share}% of the files` : ''}` : 'none'}</dd>
      </dl>
      {mayManage(user) ? <ScheduleEditor policy={policy} own={own} customerId={customerId} machineId={machineId} onSaved={data.reload} /> : null}
      <h3>Retention {fromWords(policy, 'retention', own)}</h3>
      {!s.retention ? <p className="muted">No retention policy: every snapshot is kept.</p> : null}
      <RetentionForm form={rules} setForm={setForm} disabled={!mayManage(user)} />
      <RetentionPreview safeId={safeId} form={rules} />
      {mayManage(user) ? <div className="actions"><button type="button" onClick={() => void save()}>Save as this machine's retention</button></div> : null}
      {error ? <p className="error" role="alert">{error}</p> : null}
      {saved ? <p className="notice" role="status">{saved}</p> : null}
    </div>
  );
}
