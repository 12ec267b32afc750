// The teacher's soft targets: softmax(t/τ) of the rows a logit loss reads and Σ p log p, computed inside the
// teacher's ONNX graph (softTargetNodes, appended to any export) or on the host from its logits
// (teacherSoftTargets), and the rows kept (selectSoftRows).
// Top-k soft targets (`soft_targets_topk: k`): the graph ends in TopK, so only the k largest probabilities of
// each row and their token ids leave it ([B, T, k] each instead of [B, T, V]); the rest of the vocabulary, the
// tail, is one bucket of mass 1 − Σ_k p (see losses/distillation-topk.ts for the KL on that support). The losses (losses/total.ts and its fused pass, student/kernels/logit-losses.ts) read
// them; the teacher's worker (teacher/worker.ts) makes them.

import { onnx, type GraphAddition } from '../src/core/onnx.js';
import { expNonPositive } from '../src/core/math.js';

export const SOFT_TARGETS_OUTPUT = 'distill_soft_targets';
export const SOFT_NEG_ENTROPY_OUTPUT = 'distill_soft_neg_entropy';
export const SOFT_TOPK_IDS_OUTPUT = 'distill_soft_topk_ids';

/**
 * Nodes computing the distillation's soft targets inside the teacher graph, so that onnxruntime does the
 * exponentials (vectorised, off the JS thread): p = softmax(logits/τ) [B, T, V] and Σ_v p log p [B, T, 1]
 * (a product with a ones vector: no opset-dependent reduction). Softmax and LogSoftmax over the last axis mean
 * the same in every opset.
 */
export function softTargetNodes(logits: string, vocabSize: number, temperature: number, topk = 0, opset = 17): GraphAddition {
  const F = onnx.TensorProto.DataType.FLOAT;
  if (topk > 0) {
    // p = softmax(logits/τ), then its k largest values and their ids (TopK sorts them, largest first). TopK
    // takes k as an input from opset 10, as an attribute before.
    const INT64 = onnx.TensorProto.DataType.INT64;
    const kAsInput = opset >= 10;
    return {
      initializers: [
        { name: 'distill_temperature', dataType: F, dims: [], rawData: new Uint8Array(Float32Array.from([temperature]).buffer) },
        ...(kAsInput ? [{ name: 'distill_topk_k', dataType: INT64, dims: [1], rawData: new Uint8Array(BigInt64Array.from([BigInt(topk)]).buffer) }] : []),
      ],
      nodes: [
        { opType: 'Div', input: [logits, 'distill_temperature'], output: ['distill_scaled_logits'], name: 'distill_scale' },
        { opType: 'Softmax', input: ['distill_scaled_logits'], output: ['distill_soft_full'], name: 'distill_softmax', attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }] },
        {
          opType: 'TopK', input: kAsInput ? ['distill_soft_full', 'distill_topk_k'] : ['distill_soft_full'], output: [SOFT_TARGETS_OUTPUT, SOFT_TOPK_IDS_OUTPUT], name: 'distill_topk',
          attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }, ...(kAsInput ? [] : [{ name: 'k', type: onnx.AttributeProto.AttributeType.INT, i: topk }])],
        },
      ],
      outputs: [{ name: SOFT_TARGETS_OUTPUT, elemType: F }, { name: SOFT_TOPK_IDS_OUTPUT, elemType: INT64 }],
    };
  }
  return {
    initializers: [
      { name: 'distill_temperature', dataType: F, dims: [], rawData: new Uint8Array(Float32Array.from([temperature]).buffer) },
      { name: 'distill_ones_v', dataType: F, dims: [vocabSize, 1], rawData: new Uint8Array(new Float32Array(vocabSize).fill(1).buffer) },
    ],
    nodes: [
      { opType: 'Div', input: [logits, 'distill_temperature'], output: ['distill_scaled_logits'], name: 'distill_scale' },
      { opType: 'Softmax', input: ['distill_scaled_logits'], output: [SOFT_TARGETS_OUTPUT], name: 'distill_softmax', attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }] },
      { opType: 'LogSoftmax', input: ['distill_scaled_logits'], output: ['distill_log_soft'], name: 'distill_log_softmax', attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }] },
      { opType: 'Mul', input: [SOFT_TARGETS_OUTPUT, 'distill_log_soft'], output: ['distill_p_log_p'], name: 'distill_p_log_p' },
      { opType: 'MatMul', input: ['distill_p_log_p', 'distill_ones_v'], output: [SOFT_NEG_ENTROPY_OUTPUT], name: 'distill_neg_entropy' },
    ],
    outputs: [{ name: SOFT_TARGETS_OUTPUT, elemType: F }, { name: SOFT_NEG_ENTROPY_OUTPUT, elemType: F }],
  };
}

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
export function teacherSoftTargets(logits: Float32Array, rows: Int32Array, v: number, temperature: number, keepLogits: boolean): TeacherSoftTargets {
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

/** The soft targets of rows `rows`, from p [rows of width v] and Σ p log p [one per row] computed in the teacher graph. */
export function selectSoftRows(probs: Float32Array, negEntropy: Float32Array, rows: Int32Array, v: number, temperature: number, logits?: Float32Array): TeacherSoftTargets {
  const n = rows.length;
  const out = new Float32Array(n * v);
  const ne = new Float64Array(n);
  const kept = logits ? new Float32Array(n * v) : undefined;
  for (let i = 0; i < n; i++) {
    const src = rows[i]! * v;
    out.set(probs.subarray(src, src + v), i * v);
    ne[i] = negEntropy[rows[i]!]!;
    if (kept) kept.set(logits!.subarray(src, src + v), i * v);
  }
  return { temperature, probs: out, negEntropy: ne, logits: kept };
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
export function selectTopkRows(top: Float32Array, ids: BigInt64Array | Int32Array, rows: Int32Array, k: number, temperature: number): TeacherSoftTargets {
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
