// Validation metrics of a masked language model, on batches masked once from a fixed seed (src/eval/data.ts).
// Sums over the batches, in float64, so that ranks can add theirs with one all-reduce and the means come last:
//   val_loss   = −1/M Σ_masked log softmax(s)[true token]      (masked-LM cross-entropy, M masked positions)
//   val_ppl    = exp(val_loss)
//   val_acc    = 1/M Σ_masked [argmax s = true token]
//   val_agree  = 1/M Σ_masked [argmax s = argmax t]           (top-1 agreement with the teacher)
//   val_kl     = 1/M Σ_masked KL(softmax(t) ‖ softmax(s))     (temperature 1)
//   val_cos    = 1/R Σ_real cos(h_s, h_t)                      (last hidden states,
//   R real tokens; null when the widths differ)
// s and t are the model's and the teacher's logits; the teacher's metrics are null when no teacher is given.
// Ties in argmax go to the lowest id (as torch.argmax).

import { ShapeError } from '../core/errors.js';

/** The sums the metrics come from (SUM_FIELDS order is the all-reduce layout). */
export interface EvalSums {
  /** Masked positions M. */
  masked: number;
  /** Real (non-padding) tokens R. */
  real: number;
  /** Sequences evaluated. */
  sequences: number;
  nll: number;
  correct: number;
  agree: number;
  kl: number;
  cosine: number;
}

const SUM_FIELDS = ['masked', 'real', 'sequences', 'nll', 'correct', 'agree', 'kl', 'cosine'] as const;

export function emptySums(): EvalSums {
  return { masked: 0, real: 0, sequences: 0, nll: 0, correct: 0, agree: 0, kl: 0, cosine: 0 };
}

export function packSums(s: EvalSums): Float64Array {
  return Float64Array.from(SUM_FIELDS, (k) => s[k]);
}

export function unpackSums(a: Float64Array): EvalSums {
  const s = emptySums();
  SUM_FIELDS.forEach((k, i) => {
    s[k] = a[i]!;
  });
  return s;
}

/** One model's outputs on one batch, at the rows the metrics read. */
export interface EvalOutputs {
  /** [M, V] logits at the masked positions. */
  logits: Float32Array;
  /** [R, H] last hidden states at the real tokens. */
  hidden: Float32Array;
}

/** Row index of the largest value (the first on ties). */
function argmaxRow(x: Float32Array, o: number, v: number): number {
  let best = o;
  for (let j = o + 1; j < o + v; j++) if (x[j]! > x[best]!) best = j;
  return best - o;
}

/** log Σ exp over one row, and its max (stable). */
function logSumExp(x: Float32Array, o: number, v: number): number {
  let m = -Infinity;
  for (let j = o; j < o + v; j++) if (x[j]! > m) m = x[j]!;
  let z = 0;
  for (let j = o; j < o + v; j++) z += Math.exp(x[j]! - m);
  return m + Math.log(z);
}

/**
 * Add one batch to `sums`. `labels` [M]: the true token at each masked position; `teacher` may be absent
 * (then agreement, KL and cosine stay 0 and are reported as null).
 */
export function addBatch(
  sums: EvalSums,
  model: EvalOutputs,
  teacher: EvalOutputs | undefined,
  labels: Int32Array,
  vocabSize: number,
  hiddenSize: number,
  sequences: number,
  cosine = true,
): void {
  const M = labels.length;
  const V = vocabSize;
  const H = hiddenSize;
  if (model.logits.length !== M * V)
    throw new ShapeError(`eval: model logits hold ${model.logits.length} values, expected [${M}, ${V}]`);
  if (teacher && teacher.logits.length !== M * V)
    throw new ShapeError(`eval: teacher logits hold ${teacher.logits.length} values, expected [${M}, ${V}]`);
  if (teacher && cosine && teacher.hidden.length !== model.hidden.length)
    throw new ShapeError(
      `eval: hidden states of ${model.hidden.length} and ${teacher.hidden.length} values: ` +
        `do the model and the teacher share a hidden size?`,
    );
  const R = model.hidden.length / H;
  const scratch = new Float64Array(V);
  if (!Number.isInteger(R))
    throw new ShapeError(`eval: hidden states of ${model.hidden.length} values are not rows of ${H}`);
  for (let i = 0; i < M; i++) {
    const o = i * V;
    const label = labels[i]!;
    if (label < 0 || label >= V) throw new ShapeError(`eval: label ${label} outside the vocabulary of ${V}`);
    const lseS = logSumExp(model.logits, o, V);
    sums.nll += lseS - model.logits[o + label]!;
    const top = argmaxRow(model.logits, o, V);
    if (top === label) sums.correct++;
    if (teacher) {
      if (argmaxRow(teacher.logits, o, V) === top) sums.agree++;
      // KL(p‖q) = Σ p (log p − log q), p = softmax(t), q = softmax(s): one exponential per element, kept.
      let mt = -Infinity;
      for (let j = o; j < o + V; j++) if (teacher.logits[j]! > mt) mt = teacher.logits[j]!;
      let zt = 0;
      for (let j = 0; j < V; j++) zt += scratch[j] = Math.exp(teacher.logits[o + j]! - mt);
      const lseT = mt + Math.log(zt);
      let kl = 0;
      for (let j = 0; j < V; j++)
        kl += (scratch[j]! / zt) * (teacher.logits[o + j]! - lseT - (model.logits[o + j]! - lseS));
      sums.kl += kl;
    }
  }
  if (teacher && cosine) {
    for (let r = 0; r < R; r++) {
      let dot = 0;
      let ns = 0;
      let nt = 0;
      for (let j = r * H; j < (r + 1) * H; j++) {
        const a = model.hidden[j]!;
        const b = teacher.hidden[j]!;
        dot += a * b;
        ns += a * a;
        nt += b * b;
      }
      // torch.nn.functional.cosine_similarity's eps (1e-8) on each norm.
      sums.cosine += dot / (Math.max(Math.sqrt(ns), 1e-8) * Math.max(Math.sqrt(nt), 1e-8));
    }
  }
  sums.masked += M;
  sums.real += R;
  sums.sequences += sequences;
}

export interface EvalMetrics {
  val_loss: number;
  val_ppl: number;
  val_acc: number;
  val_agree: number | null;
  val_kl: number | null;
  val_cos: number | null;
  val_masked: number;
  val_sequences: number;
}

/**
 * The means; `withTeacher`: whether the teacher's metrics were summed;
 * `withCosine`: the hidden cosine too (equal widths).
 */
export function metricsOf(s: EvalSums, withTeacher: boolean, withCosine = withTeacher): EvalMetrics {
  if (s.masked === 0)
    throw new ShapeError('eval: no masked position in the validation set (too few or too short sequences)');
  const loss = s.nll / s.masked;
  return {
    val_loss: loss,
    val_ppl: Math.exp(loss),
    val_acc: s.correct / s.masked,
    val_agree: withTeacher ? s.agree / s.masked : null,
    val_kl: withTeacher ? s.kl / s.masked : null,
    val_cos: withTeacher && withCosine ? s.cosine / Math.max(s.real, 1) : null,
    val_masked: s.masked,
    val_sequences: s.sequences,
  };
}
