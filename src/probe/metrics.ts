// The metrics GLUE reports (accuracy, F1, Matthews correlation, Pearson/Spearman), a task's metrics from its
// predictions, the majority-class baseline, and the retention of a student against its teacher.

import type { MetricName, Task } from './tasks.js';

export function accuracy(pred: string[], gold: string[]): number {
  return pred.filter((p, i) => p === gold[i]).length / gold.length;
}

/** F1 of the positive class ("1", as MRPC and QQP label it). */
export function f1(pred: string[], gold: string[], positive = '1'): number {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  pred.forEach((p, i) => {
    if (p === positive && gold[i] === positive) tp++;
    else if (p === positive) fp++;
    else if (gold[i] === positive) fn++;
  });
  return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
}

/** Matthews correlation of binary labels (positive "1"). */
export function matthews(pred: string[], gold: string[], positive = '1'): number {
  let tp = 0;
  let tn = 0;
  let fp = 0;
  let fn = 0;
  pred.forEach((p, i) => {
    const pp = p === positive;
    const gp = gold[i] === positive;
    if (pp && gp) tp++;
    else if (!pp && !gp) tn++;
    else if (pp) fp++;
    else fn++;
  });
  const den = Math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn));
  return den === 0 ? 0 : (tp * tn - fp * fn) / den;
}

export function pearson(x: number[], y: number[]): number {
  const n = x.length;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i]! - mx) * (y[i]! - my);
    sxx += (x[i]! - mx) ** 2;
    syy += (y[i]! - my) ** 2;
  }
  return sxx === 0 || syy === 0 ? 0 : sxy / Math.sqrt(sxx * syy);
}

/** Ranks with ties averaged (as scipy.stats.spearmanr). */
function ranks(x: number[]): number[] {
  const order = x.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const r = new Array<number>(x.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    for (let k = i; k <= j; k++) r[order[k]![1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

export function spearman(x: number[], y: number[]): number {
  return pearson(ranks(x), ranks(y));
}

export type Metrics = Partial<Record<MetricName, number>>;

export function scoreMetrics(task: Task, predicted: string[] | number[], gold: string[]): Metrics {
  const out: Metrics = {};
  for (const m of task.spec.metrics) {
    if (m === 'accuracy') out.accuracy = accuracy(predicted as string[], gold);
    if (m === 'f1') out.f1 = f1(predicted as string[], gold);
    if (m === 'matthews') out.matthews = matthews(predicted as string[], gold);
    if (m === 'pearson') out.pearson = pearson(predicted as number[], gold.map(Number));
    if (m === 'spearman') out.spearman = spearman(predicted as number[], gold.map(Number));
  }
  return out;
}

/** Fit a linear probe on train features (λ chosen on a held-out fifth of train), score dev. */
/** The majority class's score on dev (the baseline a probe must beat). */
export function majorityBaseline(task: Task): Metrics {
  if (task.spec.kind === 'regression') return {};
  const counts = new Map<string, number>();
  for (const e of task.train) counts.set(e.label, (counts.get(e.label) ?? 0) + 1);
  const major = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0];
  return scoreMetrics(
    task,
    task.dev.map(() => major),
    task.dev.map((e) => e.label),
  );
}

export function retention(student: Metrics, teacher: Metrics): Metrics {
  const out: Metrics = {};
  // A teacher at 0 (an entity F1 of 0) has no retention to give.
  for (const k of Object.keys(teacher) as MetricName[]) if (teacher[k]) out[k] = (100 * student[k]!) / teacher[k]!;
  return out;
}
