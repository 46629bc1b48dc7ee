/** Used space over time as a line chart (uPlot: canvas, small, fast for long series), one line per series. */
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { formatBytes } from '../format.js';
import type { UsagePoint } from '../lib/growth.js';

export interface UsageSeries {
  readonly label: string;
  readonly points: readonly UsagePoint[];
}

const COLOURS = ['#2354c7', '#1e7b3c', '#b25e09', '#b42318', '#6938ef', '#0e9384', '#c11574', '#667085'];

export function UsageChart({ series, label }: { series: UsageSeries[]; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el || series.length === 0) return;
    // One x axis: every time any series has, each series' value carried to the times it lacks.
    const times = [...new Set(series.flatMap((s) => s.points.map((p) => p.t)))].sort((a, b) => a - b);
    const columns = series.map((s) => {
      const sorted = [...s.points].sort((a, b) => a.t - b.t);
      let i = 0;
      let last: number | null = null;
      return times.map((t) => {
        while (i < sorted.length && sorted[i]!.t <= t) last = sorted[i++]!.bytes;
        return last;
      });
    });
    const plot = new uPlot({
      width: el.clientWidth, height: 260,
      scales: { x: { time: true } },
      axes: [{}, { values: (_u, vals) => vals.map((v) => formatBytes(v)), size: 80 }],
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLOURS[i % COLOURS.length]!, width: 2, value: (_u: uPlot, v: number | null) => formatBytes(v) }))],
    }, [times.map((t) => t / 1000), ...columns] as uPlot.AlignedData, el);
    const resize = new ResizeObserver(() => plot.setSize({ width: el.clientWidth, height: 260 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [series]);
  return <div className="chart" ref={box} role="img" aria-label={label} />;
}
