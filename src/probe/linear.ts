// Linear probes on standardised frozen features: logistic regression (ridge regression for STS-B-like tasks),
// the L2 strength chosen on a held-out fifth of train, scored on dev.

import { Rng } from '../../corpus/rng.js';
import type { Task } from './tasks.js';
import { scoreMetrics, type Metrics } from './metrics.js';

export function standardise(
  train: Float32Array[],
  others: Float32Array[][],
): { train: Float64Array[]; others: Float64Array[][] } {
  const d = train[0]!.length;
  const mean = new Float64Array(d);
  const sd = new Float64Array(d);
  for (const x of train) for (let j = 0; j < d; j++) mean[j]! += x[j]! / train.length;
  for (const x of train) for (let j = 0; j < d; j++) sd[j]! += (x[j]! - mean[j]!) ** 2 / train.length;
  for (let j = 0; j < d; j++) sd[j] = Math.sqrt(sd[j]!) || 1;
  const f = (x: Float32Array): Float64Array => Float64Array.from(x, (v, j) => (v - mean[j]!) / sd[j]!);
  return { train: train.map(f), others: others.map((set) => set.map(f)) };
}

/**
 * Multinomial logistic regression with L2 (λ‖W‖²/2),
 * full-batch gradient descent with Adam. Returns class scores of `test`.
 */
export function logisticRegression(
  x: Float64Array[],
  y: number[],
  classes: number,
  lambda: number,
  test: Float64Array[],
  iterations = 300,
): number[][] {
  const d = x[0]!.length;
  const n = x.length;
  const W = new Float64Array(classes * (d + 1));
  const m = new Float64Array(W.length);
  const v = new Float64Array(W.length);
  const grad = new Float64Array(W.length);
  const p = new Float64Array(classes);
  const scores = (xi: Float64Array, out: Float64Array): void => {
    for (let c = 0; c < classes; c++) {
      let s = W[c * (d + 1) + d]!;
      for (let j = 0; j < d; j++) s += W[c * (d + 1) + j]! * xi[j]!;
      out[c] = s;
    }
  };
  for (let it = 1; it <= iterations; it++) {
    grad.fill(0);
    for (let i = 0; i < n; i++) {
      scores(x[i]!, p);
      let max = -Infinity;
      for (let c = 0; c < classes; c++) max = Math.max(max, p[c]!);
      let z = 0;
      for (let c = 0; c < classes; c++) {
        p[c] = Math.exp(p[c]! - max);
        z += p[c]!;
      }
      for (let c = 0; c < classes; c++) {
        const g = (p[c]! / z - (y[i] === c ? 1 : 0)) / n;
        for (let j = 0; j < d; j++) grad[c * (d + 1) + j]! += g * x[i]![j]!;
        grad[c * (d + 1) + d]! += g;
      }
    }
    for (let k = 0; k < W.length; k++) {
      const g = grad[k]! + (k % (d + 1) === d ? 0 : lambda * W[k]!);
      m[k] = 0.9 * m[k]! + 0.1 * g;
      v[k] = 0.999 * v[k]! + 0.001 * g * g;
      W[k]! -= (0.05 * (m[k]! / (1 - 0.9 ** it))) / (Math.sqrt(v[k]! / (1 - 0.999 ** it)) + 1e-8);
    }
  }
  return test.map((xi) => {
    const out = new Float64Array(classes);
    scores(xi, out);
    return [...out];
  });
}

/** Ridge regression (closed form, intercept unpenalised). Returns predictions for `test`. */
export function ridgeRegression(xRaw: Float64Array[], y: number[], lambda: number, testRaw: Float64Array[]): number[] {
  const d = xRaw[0]!.length;
  const my = y.reduce((a, b) => a + b, 0) / y.length;
  // Centre x so that the (unpenalised) intercept is the mean of y.
  const mx = new Float64Array(d);
  for (const xi of xRaw) for (let j = 0; j < d; j++) mx[j]! += xi[j]! / xRaw.length;
  const x = xRaw.map((xi) => Float64Array.from(xi, (v, j) => v - mx[j]!));
  const test = testRaw.map((xi) => Float64Array.from(xi, (v, j) => v - mx[j]!));
  const A = new Float64Array(d * d);
  const b = new Float64Array(d);
  x.forEach((xi, i) => {
    for (let r = 0; r < d; r++) {
      b[r]! += xi[r]! * (y[i]! - my);
      for (let c = 0; c <= r; c++) A[r * d + c]! += xi[r]! * xi[c]!;
    }
  });
  for (let r = 0; r < d; r++) {
    A[r * d + r]! += lambda;
    for (let c = r + 1; c < d; c++) A[r * d + c] = A[c * d + r]!;
  }
  // Cholesky: A = L Lᵀ, then two triangular solves.
  const L = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * d + j]!;
      for (let k = 0; k < j; k++) s -= L[i * d + k]! * L[j * d + k]!;
      L[i * d + j] = i === j ? Math.sqrt(Math.max(s, 1e-12)) : s / L[j * d + j]!;
    }
  }
  const z = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= L[i * d + k]! * z[k]!;
    z[i] = s / L[i * d + i]!;
  }
  const w = new Float64Array(d);
  for (let i = d - 1; i >= 0; i--) {
    let s = z[i]!;
    for (let k = i + 1; k < d; k++) s -= L[k * d + i]! * w[k]!;
    w[i] = s / L[i * d + i]!;
  }
  return test.map((xi) => my + xi.reduce((s, v, j) => s + v * w[j]!, 0));
}

export function linearProbe(
  task: Task,
  train: Float32Array[],
  dev: Float32Array[],
  seed = 13,
): { metrics: Metrics; lambda: number } {
  const idx = train.map((_, i) => i);
  new Rng(seed).shuffle(idx);
  const nHold = Math.max(1, Math.floor(idx.length / 5));
  const hold = idx.slice(0, nHold);
  const fit = idx.slice(nHold);
  const {
    train: xs,
    others: [xAll],
  } = standardise(
    fit.map((i) => train[i]!),
    [train],
  );
  const xh = hold.map((i) => xAll![i]!);
  const labels = task.train.map((e) => e.label);
  const main = (ms: Metrics): number => Object.values(ms).reduce((a, b) => a + b, 0) / Object.values(ms).length;
  if (task.spec.kind === 'regression') {
    const grid = [0.01, 0.1, 1, 10, 100, 1000];
    const yFit = fit.map((i) => Number(labels[i]));
    const best = grid
      .map((l) => ({
        l,
        s: main(
          scoreMetrics(
            task,
            ridgeRegression(xs, yFit, l, xh),
            hold.map((i) => labels[i]!),
          ),
        ),
      }))
      .reduce((a, b) => (b.s > a.s ? b : a));
    const full = standardise(train, [dev]);
    const pred = ridgeRegression(full.train, labels.map(Number), best.l, full.others[0]!);
    return {
      metrics: scoreMetrics(
        task,
        pred,
        task.dev.map((e) => e.label),
      ),
      lambda: best.l,
    };
  }
  const classOf = new Map(task.classes.map((c, i) => [c, i]));
  const yAll = labels.map((l) => classOf.get(l)!);
  const argmax = (s: number[]): string => task.classes[s.indexOf(Math.max(...s))]!;
  const grid = [1e-4, 1e-3, 1e-2, 1e-1];
  const best = grid
    .map((l) => ({
      l,
      s: main(
        scoreMetrics(
          task,
          logisticRegression(
            xs,
            fit.map((i) => yAll[i]!),
            task.classes.length,
            l,
            xh,
          ).map(argmax),
          hold.map((i) => labels[i]!),
        ),
      ),
    }))
    .reduce((a, b) => (b.s > a.s ? b : a));
  const full = standardise(train, [dev]);
  const pred = logisticRegression(full.train, yAll, task.classes.length, best.l, full.others[0]!).map(argmax);
  return {
    metrics: scoreMetrics(
      task,
      pred,
      task.dev.map((e) => e.label),
    ),
    lambda: best.l,
  };
}
