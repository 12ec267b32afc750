// The teacher's soft targets as the losses read them (TeacherSoftTargets), and the host maths that makes them:
// softmax(t/τ) and Σ p log p of the rows a logit loss reads, from the teacher's logits (teacherSoftTargets) or from
// what the teacher's graph computed (selectSoftRows, selectTopkRows; the graph's nodes: teacher/soft-targets.ts).
// Shared by teacher/ (which makes them) and losses/ (which reads them), so neither imports the other.

import { expNonPositive, selectRows } from './math.js';

/** What the logit losses need of the teacher, for the selected rows. */
export interface TeacherSoftTargets {
  temperature: number;
  /** softmax(t/τ), [N, V]; with `topkIds`, its k largest values per row, [N, k]. */
  probs: Float32Array;
  /** Σ_v p log p of each row; with `topkIds`, of the bucketed distribution (the k values and the tail's mass). */
  negEntropy: Float64Array;
  /** Top-k soft targets: the token ids of `probs`, [N, k]. */
  topkIds?: Int32Array;
  /** The raw logits of the rows, [N, V]: only kept when the MSE loss is on. */
  logits?: Float32Array;
}

/** Soft targets of the teacher rows `rows` of `logits` ([rows of width v]). */
export function teacherSoftTargets(
  logits: Float32Array,
  rows: Int32Array,
  v: number,
  temperature: number,
  keepLogits: boolean,
): TeacherSoftTargets {
  const n = rows.length;
  const probs = new Float32Array(n * v);
  const negEntropy = new Float64Array(n);
  const kept = keepLogits ? new Float32Array(n * v) : undefined;
  const invTau = 1 / temperature;
  for (let i = 0; i < n; i++) {
    const src = rows[i]! * v;
    const dst = i * v;
    let m = -Infinity;
    for (let j = 0; j < v; j++) if (logits[src + j]! > m) m = logits[src + j]!;
    let z = 0;
    let zt = 0; // Σ e·(t − m)/τ
    for (let j = 0; j < v; j++) {
      const a = (logits[src + j]! - m) * invTau;
      const e = expNonPositive(a);
      probs[dst + j] = e;
      z += e;
      zt += e * a;
    }
    const invZ = 1 / z;
    for (let j = 0; j < v; j++) probs[dst + j]! *= invZ;
    // Σ p log p = Σ p (a − log z) = zt/z − log z
    negEntropy[i] = zt * invZ - Math.log(z);
    if (kept) kept.set(logits.subarray(src, src + v), dst);
  }
  return { temperature, probs, negEntropy, logits: kept };
}

/**
 * The soft targets of rows `rows`, from p [rows of width v] and Σ p log p [one per row] computed in the teacher
 * graph. With `inPlace` (for arrays nothing else reads: the teacher's outputs in its worker) and `rows` strictly
 * ascending, as lossRows gives them, the rows move to the front of `probs` (and `logits`) themselves and the result
 * views them (see keepRows); else they are copied into new arrays.
 */
export function selectSoftRows(
  probs: Float32Array,
  negEntropy: Float32Array,
  rows: Int32Array,
  v: number,
  temperature: number,
  logits?: Float32Array,
  inPlace = false,
): TeacherSoftTargets {
  const ne = Float64Array.from(rows, (r) => negEntropy[r]!);
  return {
    temperature,
    probs: keepRows(probs, rows, v, inPlace),
    negEntropy: ne,
    logits: logits && keepRows(logits, rows, v, inPlace),
  };
}

/**
 * Rows `rows` of a row-major [·, width] array as a [rows.length, width] array. In place when allowed and `rows` is
 * strictly ascending (row i then moves down to i ≤ rows[i], so no row is overwritten before it is read): a view of
 * `data`'s front. Why: a new array of the full soft targets' size pays a page fault per 4 KB page on its first
 * write, which a reused buffer does not: rows of [4096, 6144] float32 took 443–488 ms into a new array and 3 ms in
 * place on the 2-core development machine (a virtual machine, where page faults are dear).
 */
function keepRows(data: Float32Array, rows: Int32Array, width: number, inPlace: boolean): Float32Array {
  const ascending = rows.every((r, i) => i === 0 || r > rows[i - 1]!);
  if (inPlace && ascending) {
    rows.forEach((r, i) => {
      if (r !== i) data.copyWithin(i * width, r * width, (r + 1) * width);
    });
    return data.subarray(0, rows.length * width);
  }
  return selectRows(data, rows, width);
}

/**
 * Σ q log q of a row's bucketed distribution: its k top probabilities and the tail's mass 1 − Σ_k p (clamped at
 * 0: the float32 values may sum to a hair above 1). Float64 throughout.
 */
export function bucketNegEntropy(top: Float32Array, from: number, k: number): number {
  let sum = 0;
  let plogp = 0;
  for (let j = 0; j < k; j++) {
    const p = top[from + j]!;
    sum += p;
    if (p > 0) plogp += p * Math.log(p);
  }
  const tail = 1 - sum;
  return tail > 0 ? plogp + tail * Math.log(tail) : plogp;
}

/**
 * The top-k soft targets of rows `rows`, from the graph's outputs: the k largest probabilities [rows of width k]
 * and their ids (int64 from onnxruntime, [rows of width k]).
 */
export function selectTopkRows(
  top: Float32Array,
  ids: BigInt64Array | Int32Array,
  rows: Int32Array,
  k: number,
  temperature: number,
): TeacherSoftTargets {
  const n = rows.length;
  const probs = new Float32Array(n * k);
  const topkIds = new Int32Array(n * k);
  const negEntropy = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const src = rows[i]! * k;
    probs.set(top.subarray(src, src + k), i * k);
    for (let j = 0; j < k; j++) topkIds[i * k + j] = Number(ids[src + j]!);
    negEntropy[i] = bucketNegEntropy(top, src, k);
  }
  return { temperature, probs, negEntropy, topkIds };
}

/** The top-k soft targets of full soft targets [N, V] (the host form of the graph's TopK; ties: the lower id first). */
export function topkOfSoftTargets(soft: TeacherSoftTargets, v: number, k: number): TeacherSoftTargets {
  const n = soft.negEntropy.length;
  const top = new Float32Array(n * k);
  const ids = new Int32Array(n * k);
  const order = new Int32Array(v);
  for (let i = 0; i < n; i++) {
    const row = soft.probs.subarray(i * v, (i + 1) * v);
    for (let j = 0; j < v; j++) order[j] = j;
    const sorted = order.slice().sort((a, b) => row[b]! - row[a]! || a - b);
    for (let j = 0; j < k; j++) {
      ids[i * k + j] = sorted[j]!;
      top[i * k + j] = row[sorted[j]!]!;
    }
  }
  const negEntropy = Float64Array.from({ length: n }, (_, i) => bucketNegEntropy(top, i * k, k));
  return { temperature: soft.temperature, probs: top, negEntropy, topkIds: ids };
}
