// An SVG chart of a run's loss curves (metrics.jsonl), self-contained, for a person to open in a browser.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileFormatError } from './core/errors.js';

export interface MetricsLine {
  step: number;
  [key: string]: number;
}

/** The update lines of a run's metrics.jsonl (event lines, such as {"event":"resume",...}, are left out). */
export function readMetrics(runDir: string): MetricsLine[] {
  const path = join(runDir, 'metrics.jsonl');
  if (!existsSync(path))
    throw new FileFormatError(
      path,
      'missing: is this a run folder (distill train --out)?',
      'give the folder a run writes: the --out of distill train',
    );
  const lines = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim().length > 0);
  const parsed = lines.map((l, i) => {
    try {
      return JSON.parse(l) as MetricsLine & { event?: string };
    } catch (e) {
      throw new FileFormatError(`${path}:${i + 1}`, `not valid JSON (${(e as Error).message})`);
    }
  });
  return parsed.filter((m) => m.event === undefined);
}

/** The plot's mark: distill replaces only an SVG file that carries it. */
export const SVG_MARK = '<!-- made by distill plot -->';

/** Whether `path` is an SVG that distill plot wrote. */
export function isDistillPlot(path: string): boolean {
  try {
    return readFileSync(path, 'utf8').includes(SVG_MARK);
  } catch {
    return false;
  }
}

const SERIES: { key: string; label: string; color: string }[] = [
  { key: 'loss', label: 'loss (weighted total)', color: '#222222' },
  { key: 'loss_ce', label: 'loss_ce (distillation KL)', color: '#d62728' },
  { key: 'loss_mlm', label: 'loss_mlm (masked LM)', color: '#1f77b4' },
  { key: 'loss_cos', label: 'loss_cos (hidden-state cosine)', color: '#2ca02c' },
  // Validation (val_* lines, when the run has a validation set): one point per evaluation.
  { key: 'val_loss', label: 'val_loss (held-out masked LM)', color: '#9467bd' },
  { key: 'val_agree', label: 'val_agree (top-1 agreement with the teacher)', color: '#8c564b' },
  { key: 'val_kl', label: 'val_kl (KL(teacher‖student), τ = 1)', color: '#e377c2' },
];

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** One panel per series (their scales differ by orders of magnitude), stacked. */
export function lossChartSvg(metrics: MetricsLine[], title: string): string {
  const width = 760;
  const panelH = 170;
  const left = 70;
  const right = 20;
  const top = 40;
  const gap = 40;
  const shown = SERIES.filter((series) => metrics.some((m) => Number.isFinite(m[series.key])));
  const height = top + shown.length * (panelH + gap);
  const steps = metrics.map((m) => m.step);
  const x0 = Math.min(...steps);
  const x1 = Math.max(...steps, x0 + 1);
  const sx = (s: number): number => left + ((s - x0) / (x1 - x0)) * (width - left - right);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"` +
      ' font-family="sans-serif" font-size="12">',
    SVG_MARK,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">${escapeXml(title)}</text>`,
  ];
  shown.forEach((series, i) => {
    const y0 = top + i * (panelH + gap);
    const values = metrics
      .map((m) => m[series.key])
      .filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    if (!(hi > lo)) {
      lo -= 1;
      hi += 1;
    }
    const sy = (v: number): number => y0 + panelH - ((v - lo) / (hi - lo)) * panelH;
    parts.push(
      `<rect x="${left}" y="${y0}" width="${width - left - right}" height="${panelH}" fill="none" stroke="#999"/>`,
    );
    for (let k = 0; k <= 4; k++) {
      const v = lo + ((hi - lo) * k) / 4;
      const y = sy(v);
      parts.push(`<line x1="${left}" x2="${width - right}" y1="${y}" y2="${y}" stroke="#eee"/>`);
      parts.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${v.toPrecision(4)}</text>`);
    }
    const points = metrics
      .filter((m) => Number.isFinite(m[series.key]))
      .map((m) => `${sx(m.step).toFixed(1)},${sy(m[series.key]!).toFixed(1)}`)
      .join(' ');
    parts.push(`<polyline fill="none" stroke="${series.color}" stroke-width="1.5" points="${points}"/>`);
    if (series.key.startsWith('val_')) {
      for (const m of metrics.filter((x) => Number.isFinite(x[series.key])))
        parts.push(
          `<circle cx="${sx(m.step).toFixed(1)}" cy="${sy(m[series.key]!).toFixed(1)}" r="3" fill="${series.color}"/>`,
        );
    }
    parts.push(
      `<text x="${width - right - 8}" y="${y0 + 16}" text-anchor="end" ` +
        `fill="${series.color}">${escapeXml(series.label)}</text>`,
    );
    parts.push(
      `<text x="${left}" y="${y0 + panelH + 16}">${x0}</text><text x="${width - right}" y="${y0 + panelH + 16}" ` +
        `text-anchor="end">update ${x1}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
