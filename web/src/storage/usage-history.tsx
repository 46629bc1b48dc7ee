/** A customer's or a disk safe's stored bytes over the last 30 days: the chart, the growth per day, and when the hard quota fills at that rate. */
import { ErrorBox } from '../components/error-box.js';
import { formatBytes, formatTime } from '../format.js';
import { useLoad } from '../load.js';
import { useSession } from '../session.js';
import { daysLeft, usagePoints } from '../lib/usage.js';
import { UsageChart } from './usage-chart.js';

/** What the history is of. */
export interface UsageSubject {
  readonly of: 'safes' | 'customers';
  readonly id: string;
  readonly name: string;
}

export function UsageHistory({ subject }: { subject: UsageSubject }) {
  const { api } = useSession();
  const history = useLoad(() => api.usageHistory(subject.of, subject.id), [api, subject.of, subject.id]);
  const h = history.data;
  const what = `${subject.of === 'customers' ? 'customer' : 'disk safe'} ${subject.name}`;
  const left = h ? daysLeft(h.fills_at, Date.now()) : null;
  return (
    <section className="card usage" aria-label="storage over time">
      <h2>Storage of {what}, last 30 days</h2>
      <ErrorBox error={history.error} retry={history.reload} />
      {h ? (
        <>
          <UsageChart points={usagePoints(h.days)} quota={h.quota_hard} label={`Stored bytes of ${what}`} />
          <dl className="facts">
            <dt>Growth per day</dt>
            <dd>{h.growth_per_day === null ? 'not known yet (one day recorded)' : `${h.growth_per_day < 0 ? '−' : '+'}${formatBytes(Math.abs(h.growth_per_day))}`}</dd>
            <dt>Hard quota</dt>
            <dd>{h.quota_hard === null ? 'none' : formatBytes(h.quota_hard)}</dd>
            <dt>Full at this rate</dt>
            <dd>
              {h.fills_at !== null ? `${formatTime(h.fills_at)} (in ${left} days)`
                : h.quota_hard === null ? 'never: no hard quota' : h.growth_per_day === null ? 'not known yet' : 'not at this rate (not growing)'}
            </dd>
          </dl>
        </>
      ) : null}
    </section>
  );
}
