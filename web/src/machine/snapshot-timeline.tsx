/** A machine's snapshots on a timeline: one bar per snapshot, its height the snapshot's size, the part this backup added darker; an unauthentic one in the failure colour. */
import { formatBytes, formatTime } from '../format.js';
import type { SnapshotPoint } from '../lib/snapshots.js';
import { UNAUTHENTIC_WHY } from '../components/unauthentic-mark.js';

const W = 1000;
const H = 120;

export function SnapshotTimeline({ snapshots }: { snapshots: SnapshotPoint[] }) {
  if (snapshots.length === 0) return <p className="muted">No snapshot yet.</p>;
  const t0 = Date.parse(snapshots[0]!.time);
  const t1 = Date.parse(snapshots[snapshots.length - 1]!.time);
  const span = Math.max(t1 - t0, 1);
  const max = Math.max(1, ...snapshots.map((s) => s.size ?? 0));
  const barW = Math.max(4, Math.min(24, W / snapshots.length / 2));
  const x = (s: SnapshotPoint): number => (snapshots.length === 1 ? W / 2 : barW / 2 + ((Date.parse(s.time) - t0) / span) * (W - barW));
  return (
    <figure className="timeline">
      <svg viewBox={`0 0 ${W} ${H + 4}`} role="img" aria-label={`${snapshots.length} snapshots from ${formatTime(snapshots[0]!.time)} to ${formatTime(snapshots[snapshots.length - 1]!.time)}`} preserveAspectRatio="none">
        <line x1="0" x2={W} y1={H} y2={H} className="axis" />
        {snapshots.map((s) => {
          const h = Math.max(3, ((s.size ?? 0) / max) * (H - 6));
          const a = Math.min(h, Math.max(s.added ? 2 : 0, ((s.added ?? 0) / max) * (H - 6)));
          return (
            <g key={s.id} className={s.unauthentic ? 'unauthentic' : undefined}>
              <title>{`${s.id.slice(0, 8)} · ${formatTime(s.time)} · ${formatBytes(s.size)}, ${formatBytes(s.added)} added${s.unauthentic ? ` · UNAUTHENTIC: ${UNAUTHENTIC_WHY}` : ''}`}</title>
              <rect x={x(s) - barW / 2} y={H - h} width={barW} height={h} className="size" />
              <rect x={x(s) - barW / 2} y={H - a} width={barW} height={a} className="added" />
            </g>
          );
        })}
      </svg>
      <figcaption className="muted">
        <span>{formatTime(snapshots[0]!.time)}</span>
        <span><span className="key size" /> size <span className="key added" /> added by the backup</span>
        <span>{formatTime(snapshots[snapshots.length - 1]!.time)}</span>
      </figcaption>
    </figure>
  );
}
