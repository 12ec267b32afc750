// GLUE-style probes of a teacher and a student: frozen features (the last hidden layer, [CLS] or mean-pooled),
// a linear probe on them (logistic regression, or ridge regression for STS-B-like tasks) whose L2 strength is
// chosen on a held-out fifth of train, scored on dev with GLUE's metrics. Reported side by side with the
// retention (student / teacher), the parameter counts and the inference speed of each, as the DistilBERT
// paper's table does.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Teacher } from '../teacher/teacher.js';
import { loadStudent } from '../student/io.js';
import { selectBackend, type BackendName } from '../student/kernels/backend.js';
import { WordPieceTokenizer } from '../corpus/tokenizer.js';
import { accuracy, f1, loadTask, matthews, pearson, spearman, type MetricName, type Task } from '../corpus/glue.js';
import { Rng } from '../corpus/rng.js';
import { SafetensorsFile } from './core/safetensors.js';
import { readOnnx } from './core/onnx.js';
import { findOnnxFile } from './core/model-dir.js';
import { UpdateStep, backendAdamW } from './train/step.js';

export type Pooling = 'cls' | 'mean';

export interface FeatureEncoder {
  label: string;
  parameters: number;
  maxPositions: number;
  tokenizer: WordPieceTokenizer;
  /** Last-layer hidden states of a padded batch, [B, T, H], on the host. */
  hidden(ids: Int32Array, mask: Int32Array, b: number, t: number): Promise<Float32Array>;
  hiddenSize: number;
  close(): Promise<void>;
}

function countSafetensors(path: string): number {
  const f = SafetensorsFile.read(path);
  return f.names().reduce((n, k) => n + f.shapeOf(k).reduce((a, b) => a * b, 1), 0);
}

export async function teacherEncoder(dir: string, threads: number): Promise<FeatureEncoder> {
  const teacher = await Teacher.load(dir, { hiddenStates: 'last', threads, optionName: '--teacher' });
  const st = join(dir, 'model.safetensors');
  let parameters: number;
  if (existsSync(st)) parameters = countSafetensors(st);
  else {
    const model = readOnnx(findOnnxFile(dir, false)).model;
    parameters = (model.graph?.initializer ?? []).reduce((n, t) => n + (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1), 0);
  }
  return {
    label: 'teacher', parameters, maxPositions: teacher.config.maxPositions, tokenizer: teacher.tokenizer, hiddenSize: teacher.config.hiddenSize,
    hidden: async (ids, mask, b, t) => (await teacher.forward({ inputIds: ids, attentionMask: mask, batchSize: b, seqLen: t })).hiddenStates[0]!,
    close: () => teacher.release(),
  };
}

export async function studentEncoder(dir: string, backend?: BackendName): Promise<FeatureEncoder> {
  await selectBackend(backend);
  const student = loadStudent(dir);
  const tokenizer = WordPieceTokenizer.fromDir(dir);
  return {
    label: 'student', parameters: student.parameterCount(), maxPositions: student.config.max_position_embeddings, tokenizer, hiddenSize: student.config.dim,
    hidden: async (ids, mask, b, t) => {
      const last = tf.tidy(() => {
        const h = student.encode(tf.tensor2d(ids, [b, t], 'int32'), tf.tensor2d(mask, [b, t], 'int32'), { training: false });
        return h[h.length - 1]!;
      });
      const values = Float32Array.from(await last.data() as Float32Array); // asynchronous: webgpu reads no other way
      last.dispose();
      return values;
    },
    close: () => Promise.resolve(student.dispose()),
  };
}

/** [CLS] a [SEP] (b [SEP]), the longer text cut first until it fits. */
export function encodeExample(tok: WordPieceTokenizer, texts: string[], maxPositions: number): number[] {
  const pieces = texts.map((t) => tok.tokenizeToIds(t));
  const budget = maxPositions - 1 - pieces.length;
  while (pieces.reduce((n, p) => n + p.length, 0) > budget) {
    const longest = pieces.reduce((best, p, i) => (p.length > pieces[best]!.length ? i : best), 0);
    pieces[longest]!.pop();
  }
  return [tok.clsId, ...pieces.flatMap((p) => [...p, tok.sepId])];
}

export interface FeatureResult { features: Float32Array[]; tokensPerS: number }

export async function extractFeatures(enc: FeatureEncoder, examples: string[][], pooling: Pooling,
  onProgress?: (done: number, total: number) => void, batchSize = 32): Promise<FeatureResult> {
  const encoded = examples.map((texts) => encodeExample(enc.tokenizer, texts, enc.maxPositions));
  const order = encoded.map((_, i) => i).sort((a, b) => encoded[a]!.length - encoded[b]!.length);
  const H = enc.hiddenSize;
  const features = new Array<Float32Array>(examples.length);
  let tokens = 0;
  let ms = 0;
  for (let start = 0; start < order.length; start += batchSize) {
    const idx = order.slice(start, start + batchSize);
    const T = Math.max(...idx.map((i) => encoded[i]!.length));
    const ids = new Int32Array(idx.length * T).fill(enc.tokenizer.padId);
    const mask = new Int32Array(idx.length * T);
    idx.forEach((i, r) => { ids.set(encoded[i]!, r * T); mask.fill(1, r * T, r * T + encoded[i]!.length); tokens += encoded[i]!.length; });
    const t0 = performance.now();
    const hidden = await enc.hidden(ids, mask, idx.length, T); // [b, T, H]
    ms += performance.now() - t0;
    idx.forEach((i, r) => {
      const f = new Float32Array(H);
      const len = encoded[i]!.length;
      if (pooling === 'cls') f.set(hidden.subarray(r * T * H, r * T * H + H));
      else {
        for (let t = 0; t < len; t++) for (let h = 0; h < H; h++) f[h]! += hidden[(r * T + t) * H + h]!;
        for (let h = 0; h < H; h++) f[h]! /= len;
      }
      features[i] = f;
    });
    onProgress?.(Math.min(order.length, start + batchSize), order.length);
  }
  return { features, tokensPerS: tokens / (ms / 1000) };
}

// --- Linear probes on standardised features. ---

function standardise(train: Float32Array[], others: Float32Array[][]): { train: Float64Array[]; others: Float64Array[][] } {
  const d = train[0]!.length;
  const mean = new Float64Array(d);
  const sd = new Float64Array(d);
  for (const x of train) for (let j = 0; j < d; j++) mean[j]! += x[j]! / train.length;
  for (const x of train) for (let j = 0; j < d; j++) sd[j]! += (x[j]! - mean[j]!) ** 2 / train.length;
  for (let j = 0; j < d; j++) sd[j] = Math.sqrt(sd[j]!) || 1;
  const f = (x: Float32Array): Float64Array => Float64Array.from(x, (v, j) => (v - mean[j]!) / sd[j]!);
  return { train: train.map(f), others: others.map((set) => set.map(f)) };
}

/** Multinomial logistic regression with L2 (λ‖W‖²/2), full-batch gradient descent with Adam. Returns class scores of `test`. */
export function logisticRegression(x: Float64Array[], y: number[], classes: number, lambda: number, test: Float64Array[], iterations = 300): number[][] {
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
      for (let c = 0; c < classes; c++) { p[c] = Math.exp(p[c]! - max); z += p[c]!; }
      for (let c = 0; c < classes; c++) {
        const g = (p[c]! / z - (y[i] === c ? 1 : 0)) / n;
        for (let j = 0; j < d; j++) grad[c * (d + 1) + j]! += g * x[i]![j]!;
        grad[c * (d + 1) + d]! += g;
      }
    }
    for (let k = 0; k < W.length; k++) {
      const g = grad[k]! + ((k % (d + 1)) === d ? 0 : lambda * W[k]!);
      m[k] = 0.9 * m[k]! + 0.1 * g;
      v[k] = 0.999 * v[k]! + 0.001 * g * g;
      W[k]! -= (0.05 * (m[k]! / (1 - 0.9 ** it))) / (Math.sqrt(v[k]! / (1 - 0.999 ** it)) + 1e-8);
    }
  }
  return test.map((xi) => { const out = new Float64Array(classes); scores(xi, out); return [...out]; });
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
  for (let r = 0; r < d; r++) { A[r * d + r]! += lambda; for (let c = r + 1; c < d; c++) A[r * d + c] = A[c * d + r]!; }
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
  for (let i = 0; i < d; i++) { let s = b[i]!; for (let k = 0; k < i; k++) s -= L[i * d + k]! * z[k]!; z[i] = s / L[i * d + i]!; }
  const w = new Float64Array(d);
  for (let i = d - 1; i >= 0; i--) { let s = z[i]!; for (let k = i + 1; k < d; k++) s -= L[k * d + i]! * w[k]!; w[i] = s / L[i * d + i]!; }
  return test.map((xi) => my + xi.reduce((s, v, j) => s + v * w[j]!, 0));
}

export type Metrics = Partial<Record<MetricName, number>>;

function scoreMetrics(task: Task, predicted: string[] | number[], gold: string[]): Metrics {
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
export function linearProbe(task: Task, train: Float32Array[], dev: Float32Array[], seed = 13): { metrics: Metrics; lambda: number } {
  const idx = train.map((_, i) => i);
  new Rng(seed).shuffle(idx);
  const nHold = Math.max(1, Math.floor(idx.length / 5));
  const hold = idx.slice(0, nHold);
  const fit = idx.slice(nHold);
  const { train: xs, others: [xAll] } = standardise(fit.map((i) => train[i]!), [train]);
  const xh = hold.map((i) => xAll![i]!);
  const labels = task.train.map((e) => e.label);
  const main = (ms: Metrics): number => Object.values(ms).reduce((a, b) => a + b, 0) / Object.values(ms).length;
  if (task.spec.kind === 'regression') {
    const grid = [0.01, 0.1, 1, 10, 100, 1000];
    const yFit = fit.map((i) => Number(labels[i]));
    const best = grid.map((l) => ({ l, s: main(scoreMetrics(task, ridgeRegression(xs, yFit, l, xh), hold.map((i) => labels[i]!))) }))
      .reduce((a, b) => (b.s > a.s ? b : a));
    const full = standardise(train, [dev]);
    const pred = ridgeRegression(full.train, labels.map(Number), best.l, full.others[0]!);
    return { metrics: scoreMetrics(task, pred, task.dev.map((e) => e.label)), lambda: best.l };
  }
  const classOf = new Map(task.classes.map((c, i) => [c, i]));
  const yAll = labels.map((l) => classOf.get(l)!);
  const argmax = (s: number[]): string => task.classes[s.indexOf(Math.max(...s))]!;
  const grid = [1e-4, 1e-3, 1e-2, 1e-1];
  const best = grid.map((l) => ({
    l, s: main(scoreMetrics(task, logisticRegression(xs, fit.map((i) => yAll[i]!), task.classes.length, l, xh).map(argmax), hold.map((i) => labels[i]!))),
  })).reduce((a, b) => (b.s > a.s ? b : a));
  const full = standardise(train, [dev]);
  const pred = logisticRegression(full.train, yAll, task.classes.length, best.l, full.others[0]!).map(argmax);
  return { metrics: scoreMetrics(task, pred, task.dev.map((e) => e.label)), lambda: best.l };
}

/** The majority class's score on dev (the baseline a probe must beat). */
export function majorityBaseline(task: Task): Metrics {
  if (task.spec.kind === 'regression') return {};
  const counts = new Map<string, number>();
  for (const e of task.train) counts.set(e.label, (counts.get(e.label) ?? 0) + 1);
  const major = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0];
  return scoreMetrics(task, task.dev.map(() => major), task.dev.map((e) => e.label));
}

export interface ProbeTaskResult {
  task: string;
  metrics: { teacher: Metrics; student: Metrics; retention_pct: Metrics; majority: Metrics };
  train: number;
  dev: number;
}

export interface ProbeReport {
  tasks: ProbeTaskResult[];
  teacher: { parameters: number; tokens_per_s: number };
  student: { parameters: number; tokens_per_s: number };
  macro: { teacher: number; student: number; retention_pct: number };
  pooling: Pooling;
  /** linear: both sides probed on frozen features; finetune: the student fine-tuned with a head, the (ONNX) teacher probed linearly. */
  mode: 'linear' | 'finetune';
}

export function retention(student: Metrics, teacher: Metrics): Metrics {
  const out: Metrics = {};
  for (const k of Object.keys(teacher) as MetricName[]) out[k] = (100 * student[k]!) / teacher[k]!;
  return out;
}

export { loadTask };

export function markdownTable(r: ProbeReport): string {
  const pct = (v: number | undefined): string => (v === undefined ? '–' : (100 * v).toFixed(1));
  // An accuracy on n dev examples is a binomial proportion: ± its 95% interval, 1.96·√(p(1−p)/n), so that a
  // reader sees which differences are larger than the dev set's noise.
  const withInterval = (v: number | undefined, m: MetricName, n: number): string =>
    v === undefined || m !== 'accuracy' ? pct(v) : `${pct(v)} ± ${(196 * Math.sqrt((v * (1 - v)) / n)).toFixed(1)}`;
  const rows = ['| task | metric | teacher | student | retention | majority class |', '|---|---|---|---|---|---|'];
  for (const t of r.tasks) {
    for (const m of Object.keys(t.metrics.teacher) as MetricName[]) {
      rows.push(`| ${t.task} (dev ${t.dev}) | ${m} | ${withInterval(t.metrics.teacher[m], m, t.dev)} | ${withInterval(t.metrics.student[m], m, t.dev)} | ${t.metrics.retention_pct[m]!.toFixed(1)}% | ${pct(t.metrics.majority[m])} |`);
    }
  }
  rows.push(`| **macro** | | ${pct(r.macro.teacher)} | ${pct(r.macro.student)} | ${r.macro.retention_pct.toFixed(1)}% | |`);
  rows.push('', '| | parameters | inference tokens/s |', '|---|---|---|',
    `| teacher | ${r.teacher.parameters.toLocaleString('en-US')} | ${Math.round(r.teacher.tokens_per_s).toLocaleString('en-US')} |`,
    `| student | ${r.student.parameters.toLocaleString('en-US')} | ${Math.round(r.student.tokens_per_s).toLocaleString('en-US')} |`);
  return rows.join('\n');
}

// --- Fine-tuning the student with a head (the teacher, an ONNX graph, stays frozen and is probed linearly). ---

export interface FinetuneOptions {
  epochs: number;
  lr: number;
  batchSize: number;
  pooling: Pooling;
  seed: number;
  backend?: BackendName;
  onProgress?: (done: number, total: number) => void;
}

/** Fine-tune a copy of the student with a linear head on train (AdamW, linear decay), score dev. */
export async function finetuneStudent(dir: string, task: Task, o: FinetuneOptions): Promise<{ metrics: Metrics; tokensPerS: number; losses: number[] }> {
  await selectBackend(o.backend);
  const student = loadStudent(dir);
  const tok = WordPieceTokenizer.fromDir(dir);
  const H = student.config.dim;
  const regression = task.spec.kind === 'regression';
  const C = regression ? 1 : task.classes.length;
  const rng = new Rng(o.seed);
  // The head's variables hold their memory alone (the initial tensors are freed: no leak, and AdamW may update in place).
  const ownedVariable = (initial: tf.Tensor, name: string): tf.Variable => {
    const v = tf.variable(initial, true, name);
    initial.dispose();
    return v;
  };
  const headW = ownedVariable(tf.tensor2d(Float32Array.from({ length: H * C }, () => (rng.next() - 0.5) * 0.04), [H, C]), `probe_head_w_${o.seed}_${Date.now()}`);
  const headB = ownedVariable(tf.zeros([C]), `probe_head_b_${o.seed}_${Date.now()}`);
  // The encoder and the new head: the MLM head (vocab_*) takes no part in classification.
  const encoderVars = student.specs.flatMap((spec, i) => (spec.name.startsWith('vocab_') ? [] : [student.variables()[i]!]));
  const params = [...encoderVars, headW, headB];
  const optimizer = backendAdamW(params, params.map(() => true), { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 });
  const update = new UpdateStep(params, optimizer, { gradAccum: 1, maxGradNorm: 0 });
  const classOf = new Map(task.classes.map((c, i) => [c, i]));
  const encodeAll = (examples: { texts: string[] }[]): number[][] => examples.map((e) => encodeExample(tok, e.texts, student.config.max_position_embeddings));
  const trainIds = encodeAll(task.train);
  const devIds = encodeAll(task.dev);
  const batchOf = (rows: number[][]): { ids: tf.Tensor2D; mask: tf.Tensor2D; weights: tf.Tensor3D } => {
    const t = Math.max(...rows.map((r) => r.length));
    const ids = new Int32Array(rows.length * t).fill(tok.padId);
    const mask = new Int32Array(rows.length * t);
    rows.forEach((r, i) => { ids.set(r, i * t); mask.fill(1, i * t, i * t + r.length); });
    // The pooling weights (the mask as floats) are made from the host's values, not by a cast on the device: on
    // webgpu (tfjs 4.22) the gradient through a cast int32 mask builds a Transpose shader that fails to compile.
    return {
      ids: tf.tensor2d(ids, [rows.length, t], 'int32'), mask: tf.tensor2d(mask, [rows.length, t], 'int32'),
      weights: tf.tensor3d(Float32Array.from(mask), [rows.length, t, 1]), // [B, T, 1]
    };
  };
  const pooled = ({ ids, mask, weights }: { ids: tf.Tensor2D; mask: tf.Tensor2D; weights: tf.Tensor3D }, training: boolean, seed: number): tf.Tensor2D => {
    const hidden = student.encode(ids, mask, { training, dropoutSeed: seed });
    const last = hidden[hidden.length - 1]!; // [B, T, H]
    if (o.pooling === 'cls') return tf.squeeze(tf.slice(last, [0, 0, 0], [-1, 1, -1]), [1]) as tf.Tensor2D;
    return tf.div(tf.sum(tf.mul(last, weights), 1), tf.sum(weights, 1)) as tf.Tensor2D;
  };
  const steps = o.epochs * Math.ceil(trainIds.length / o.batchSize);
  let step = 0;
  let tokens = 0;
  let ms = 0;
  /** The training loss of each fine-tuning update. */
  const losses: number[] = [];
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const order = trainIds.map((_, i) => i);
    Rng.derive(o.seed, epoch).shuffle(order);
    for (let s = 0; s < order.length; s += o.batchSize) {
      const rows = order.slice(s, s + o.batchSize);
      const t0 = performance.now();
      // The training loop's update step (src/train/step.ts): forward + backward, then AdamW (no clipping).
      const [loss] = await update.accumulate(() => {
        const out = tf.add(tf.matMul(pooled(batchOf(rows.map((i) => trainIds[i]!)), true, o.seed * 1000 + step), headW), headB); // [B, C]
        const loss = (regression
          ? tf.losses.meanSquaredError(tf.tensor2d(rows.map((i) => Number(task.train[i]!.label)), [rows.length, 1]), out)
          : tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d(rows.map((i) => classOf.get(task.train[i]!.label)!), 'int32'), C), out));
        return { loss: loss as tf.Scalar, report: tf.reshape(loss, [1]) as tf.Tensor1D };
      });
      await update.apply(o.lr * (1 - step / steps));
      losses.push(loss!);
      ms += performance.now() - t0;
      tokens += rows.reduce((n, i) => n + trainIds[i]!.length, 0);
      step++;
      o.onProgress?.(step, steps);
    }
  }
  const predictions: number[][] = [];
  for (let s = 0; s < devIds.length; s += o.batchSize) {
    const rows = devIds.slice(s, s + o.batchSize);
    const scores = tf.tidy(() => {
      return tf.add(tf.matMul(pooled(batchOf(rows), false, 0), headW), headB);
    });
    predictions.push(...(await scores.array() as number[][]));
    scores.dispose();
  }
  optimizer.dispose();
  tf.dispose([headW, headB]);
  student.dispose();
  const gold = task.dev.map((e) => e.label);
  const predicted = regression ? predictions.map((p) => p[0]!) : predictions.map((p) => task.classes[p.indexOf(Math.max(...p))]!);
  return { metrics: scoreMetrics(task, predicted, gold), tokensPerS: tokens / (ms / 1000), losses };
}
