// The probe report: teacher and student side by side with the retention, the majority class, the parameter
// counts and the inference speed of each, as the DistilBERT paper's table does; JSON and markdown.

import type { Metrics } from './metrics.js';
import type { MetricName } from './tasks.js';
import type { Pooling } from './features.js';
import type { TagScheme } from './span-metrics.js';

export interface ProbeTaskResult {
  task: string;
  metrics: { teacher: Metrics; student: Metrics; retention_pct: Metrics; majority: Metrics };
  train: number;
  dev: number;
  /** A CoNLL task's tagging scheme, as detected in its gold tags. */
  scheme?: TagScheme;
  /** A row beside its task's own (a QA task's linear heads in a finetune run): left out of the macro average. */
  reference?: true;
}

/** The report's mark: distill replaces (with --force) only a file that carries it. */
export const MADE_BY = 'distill probe';

export interface ProbeReport {
  made_by: typeof MADE_BY;
  tasks: ProbeTaskResult[];
  teacher: { parameters: number; tokens_per_s: number };
  student: { parameters: number; tokens_per_s: number };
  macro: { teacher: number; student: number; retention_pct: number };
  pooling: Pooling;
  /**
   * linear: both sides probed on frozen features; finetune:
   * the student fine-tuned with a head, the (ONNX) teacher probed linearly.
   */
  mode: 'linear' | 'finetune';
}

export function markdownTable(r: ProbeReport): string {
  const pct = (v: number | undefined): string => (v === undefined ? '–' : (100 * v).toFixed(1));
  // An accuracy on n dev examples is a binomial proportion: ± its 95% interval, 1.96·√(p(1−p)/n), so that a
  // reader sees which differences are larger than the dev set's noise.
  const withInterval = (v: number | undefined, m: MetricName, n: number): string =>
    v === undefined || m !== 'accuracy' ? pct(v) : `${pct(v)} ± ${(196 * Math.sqrt((v * (1 - v)) / n)).toFixed(1)}`;
  const retained = (v: number | undefined): string => (v === undefined ? '–' : `${v.toFixed(1)}%`);
  const rows = ['| task | metric | teacher | student | retention | majority class |', '|---|---|---|---|---|---|'];
  for (const t of r.tasks) {
    const name = `${t.task} (dev ${t.dev}${t.scheme ? `, ${t.scheme}` : ''})`;
    for (const m of Object.keys(t.metrics.teacher) as MetricName[]) {
      rows.push(
        `| ${name} | ${m} | ${withInterval(t.metrics.teacher[m], m, t.dev)} | ` +
          (`${withInterval(t.metrics.student[m], m, t.dev)} | ${retained(t.metrics.retention_pct[m])} | ` +
            `${pct(t.metrics.majority[m])} |`),
      );
    }
  }
  rows.push(
    `| **macro** | | ${pct(r.macro.teacher)} | ${pct(r.macro.student)} | ${r.macro.retention_pct.toFixed(1)}% | |`,
  );
  rows.push(
    '',
    '| | parameters | inference tokens/s |',
    '|---|---|---|',
    `| teacher | ${r.teacher.parameters.toLocaleString('en-US')} | ` +
      `${Math.round(r.teacher.tokens_per_s).toLocaleString('en-US')} |`,
    `| student | ${r.student.parameters.toLocaleString('en-US')} | ` +
      `${Math.round(r.student.tokens_per_s).toLocaleString('en-US')} |`,
  );
  return rows.join('\n');
}
