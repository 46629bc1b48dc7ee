/** Stored bytes per day as an SVG line over its area, the hard quota as a dashed line when it is within the chart's reach. */
import { formatBytes } from '../format.js';
import { chartTop, type UsagePoint } from '../lib/usage.js';

const W = 1000;
const H = 160;

export function UsageChart({ points, quota, label }: { points: UsagePoint[]; quota: number | null; label: string }) {
  if (points.length === 0) return <p className="muted">No usage recorded yet.</p>;
  const top = chartTop(points.map((p) => p.bytes), quota);
  const x = (i: number): number => (points.length === 1 ? W / 2 : (i / (points.length - 1)) * W);
  const y = (v: number): number => H - (v / top) * (H - 8);
  const line = points.map((p, i) => `${x(i).toFixed(1)},${y(p.bytes).toFixed(1)}`).join(' ');
  const first = points[0]!;
  const last = points[points.length - 1]!;
  return (
    <figure className="usage-chart">
      <svg viewBox={`0 0 ${W} ${H + 2}`} role="img" preserveAspectRatio="none"
        aria-label={`${label}: ${formatBytes(first.bytes)} on ${first.day}, ${formatBytes(last.bytes)} on ${last.day}`}>
        <line x1="0" x2={W} y1={H} y2={H} className="axis" />
        <polygon points={`${x(0)},${H} ${line} ${x(points.length - 1)},${H}`} className="area" />
        <polyline points={line} className="line" />
        {quota !== null && quota <= top ? <line x1="0" x2={W} y1={y(quota)} y2={y(quota)} className="quota" /> : null}
        {points.map((p, i) => (
          // A line of no length with round caps: a dot that stays round when the chart is stretched to the page's width.
          <line key={p.day} x1={x(i)} x2={x(i)} y1={y(p.bytes)} y2={y(p.bytes)} className="point">
            <title>{`${p.day}: ${formatBytes(p.bytes)}${p.growth === null ? '' : `, ${p.growth >= 0 ? '+' : '−'}${formatBytes(Math.abs(p.growth))} that day`}`}</title>
          </line>
        ))}
      </svg>
      <figcaption className="muted">
        <span>{first.day}</span>
        <span>top {formatBytes(top)}{quota !== null && quota <= top ? ' · dashed: hard quota' : ''}</span>
        <span>{last.day}</span>
      </figcaption>
    </figure>
  );
}
