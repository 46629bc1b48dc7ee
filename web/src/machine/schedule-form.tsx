/**
 * Editing a machine's schedule and checks (schedule, window, time zone,
 * verification, restore test) as its own policy: each field shows the
 * machine's own value, or the inherited one as its placeholder; an empty
 * field inherits. Saved through the policies API (created, or replaced
 * keeping the policy's other settings).
 */
import { useState, type FormEvent } from 'react';
import type { EffectivePolicyBody, PolicyBody } from '../../../src/api/v1-policies.js';
import { describeError } from '../api/client.js';
import { formToSchedule, scheduleToForm, withSchedule, type ScheduleForm } from '../lib/policy-form.js';
import { useSession } from '../session.js';
import { settingsOf } from './policy-settings.js';

const FIELDS: readonly (readonly [keyof ScheduleForm, string, string])[] = [
  ['schedule', 'Schedule', 'every 6h, or 0 2 * * *'],
  ['window', 'Window', '22:00-06:00'],
  ['time_zone', 'Time zone', 'UTC'],
  ['verify_every', 'Verify every', '1d'],
  ['verify_days', 'All data read in (days)', '30'],
  ['restore_every', 'Restore test every', '7d'],
  ['restore_share', 'Restore test share (%)', '1'],
];

export function ScheduleEditor({ policy, own, customerId, machineId, onSaved }: { policy: EffectivePolicyBody; own: PolicyBody | undefined; customerId: string; machineId: string; onSaved: () => void }) {
  const { api } = useSession();
  const [form, setForm] = useState<ScheduleForm>(() => scheduleToForm(own));
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const inherited = scheduleToForm(policy.settings);
  const save = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setError(null);
    setSaved(null);
    try {
      const next = formToSchedule(form, (own?.restore_test ?? policy.settings.restore_test)?.min_files);
      if (own) await api.replacePolicy(own.id, withSchedule(settingsOf(own), next));
      else if (Object.keys(next).length > 0) await api.createPolicy({ customer_id: customerId, machine_id: machineId, ...next });
      setSaved('Saved: the server schedules this machine so from now on.');
      onSaved();
    } catch (err) {
      setError(describeError(err));
    }
  };
  return (
    <form className="schedule-form" aria-label="schedule and checks" onSubmit={(e) => void save(e)}>
      <div className="rules">
        {FIELDS.map(([k, label, example]) => (
          <label key={k}>{label}
            <input name={k} value={form[k]} placeholder={inherited[k] ? `inherited: ${inherited[k]}` : `e.g. ${example}`} onChange={(e) => setForm({ ...form, [k]: e.target.value })} />
          </label>
        ))}
      </div>
      <p className="muted">An empty field takes the setting from the policy the machine inherits (its value shows greyed).</p>
      <div className="actions"><button type="submit">Save as this machine's schedule</button></div>
      {error ? <p className="error" role="alert">{error}</p> : null}
      {saved ? <p className="notice" role="status">{saved}</p> : null}
    </form>
  );
}
