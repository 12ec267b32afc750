// The teacher's soft targets: softmax(t/τ) of the rows a logit loss reads and Σ p log p, computed inside the
// teacher's ONNX graph (softTargetNodes, appended to any export) or on the host from its logits
// (teacherSoftTargets), and the rows kept (selectSoftRows). The losses (losses/total.ts and its fused pass, student/kernels/logit-losses.ts) read
// them; the teacher's worker (teacher/worker.ts) makes them.

import { onnx, type GraphAddition } from '../src/core/onnx.js';
import { expNonPositive } from '../src/core/math.js';

export const SOFT_TARGETS_OUTPUT = 'distill_soft_targets';
export const SOFT_NEG_ENTROPY_OUTPUT = 'distill_soft_neg_entropy';

/**
 * Nodes computing the distillation's soft targets inside the teacher graph, so that onnxruntime does the
 * exponentials (vectorised, off the JS thread): p = softmax(logits/τ) [B, T, V] and Σ_v p log p [B, T, 1]
 * (a product with a ones vector: no opset-dependent reduction). Softmax and LogSoftmax over the last axis mean
 * the same in every opset.
 */
export function softTargetNodes(logits: string, vocabSize: number, temperature: number): GraphAddition {
  const F = onnx.TensorProto.DataType.FLOAT;
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
  /** softmax(t/τ), [N, V]. */
  probs: Float32Array;
  /** Σ_v p log p of each row. */
  negEntropy: Float64Array;
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

