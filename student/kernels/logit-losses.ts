// The tied projector and the three logit losses (distillation KL, masked-LM cross-entropy, optional MSE) as
// one custom-gradient op: the student's logits are computed on the device, read once, and the losses and
// their gradient with respect to the logits are computed in one pass on the host. The gradient is then pushed
// through the projector with two plain products.
//
// The per-loss files (losses/distillation.ts, mlm.ts, mse.ts) say what is computed, in tfjs ops; this computes the
// same (the golden tests hold both paths to PyTorch's numbers) without a dozen [N, V] tensors on the device:
// on the `wasm` backend the tfjs-op version spends seconds a step in Exp/Sum/logSoftmax over [N, V] and in
// their gradients. The teacher's side (p = softmax(t/τ) and Σ p log p) is prepared once per batch, off the
// student's path (teacherSoftTargets).
//
// With p = softmax(t/τ), q = softmax(s/τ), r = softmax(s), over the selected rows:
//   loss_ce  = τ²/N_ce  Σ_rows Σ_v p (log p − log q)      ∂/∂s = τ/N_ce (q − p)
//   loss_mlm = −1/N_mlm Σ_mlm rows log r[label]          ∂/∂s = (r − onehot(label))/N_mlm
//   loss_mse = 1/N_ce   Σ_rows Σ_v (s − t)²               ∂/∂s = 2(s − t)/N_ce
// N_ce and N_mlm are the row counts to average over (global counts in data-parallel runs).
// Through the projector s = h Eᵀ + b:  ∂h = G E,  ∂E = Gᵀ h,  ∂b = Σ_rows G.

import * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../../src/core/errors.js';
import { expNonPositive } from '../../src/core/math.js';
import { heapOffset, wasmSimd, type SimdKernels } from './simd.js';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/**
 * What the logit losses need of the teacher, for the selected rows: p = softmax(t/τ) [N, V], Σ p log p [N]
 * (float64), and the logits [N, V] when the MSE loss is on. The teacher's soft targets
 * (teacher/soft-targets.ts) are this; the student's kernels do not import the teacher.
 */
export interface TeacherSoftTargets {
  temperature: number;
  probs: Float32Array;
  negEntropy: Float64Array;
  logits?: Float32Array;
}

export interface LogitLossOptions {
  alpha_ce: number;
  alpha_mlm: number;
  alpha_mse: number;
  /** Rows (indices into the selected rows) that carry an MLM label, and the labels. */
  mlmRows: Int32Array;
  mlmLabels: Int32Array;
  /** Divisors of the means (default: this batch's rows and labels). */
  ceCount?: number;
  mlmCount?: number;
}

export interface HostLogitLosses {
  ce: number;
  mlm: number;
  mse: number;
  /** ∂(α_ce·ce + α_mlm·mlm + α_mse·mse)/∂s, [N, V]. */
  grad: Float32Array;
  /** Its sum over the rows, [V]: the gradient of the vocab bias. */
  biasGrad: Float32Array;
}

interface LossScales {
  tau: number;
  invTau: number;
  ceCount: number;
  mlmCount: number;
  /** ∂(α_ce·ce)/∂s = ceScale·(q − p). */
  ceScale: number;
  /** ∂(α_mse·mse)/∂s = mseScale·(s − t). */
  mseScale: number;
  /** ∂(α_mlm·mlm)/∂s = mlmScale·(r − onehot). */
  mlmScale: number;
  /** The MLM label of each selected row, −1 where none. */
  mlmLabelOf: Int32Array;
}

/** Check the inputs of the logit losses and work out their scales (shared by the host and wasm passes). */
function lossScales(n: number, v: number, t: TeacherSoftTargets, o: LogitLossOptions): LossScales {
  if (t.probs.length !== n * v) throw new ShapeError(`logit losses: teacher targets hold ${t.probs.length} values, expected [${n}, ${v}]`);
  if (o.mlmRows.length !== o.mlmLabels.length) throw new ShapeError(`logit losses: ${o.mlmRows.length} MLM rows but ${o.mlmLabels.length} labels`);
  if (o.alpha_mse !== 0 && !t.logits) throw new ShapeError('logit losses: the MSE loss needs the teacher logits kept (keepLogits)');
  const tau = t.temperature;
  const ceCount = o.ceCount ?? n;
  const mlmCount = o.mlmCount ?? o.mlmRows.length;
  const mlmLabelOf = new Int32Array(n).fill(-1);
  o.mlmRows.forEach((r, i) => {
    const label = o.mlmLabels[i]!;
    if (label < 0 || label >= v) throw new ShapeError(`loss_mlm: label ${label} outside the vocabulary of ${v}`);
    if (r < 0 || r >= n) throw new ShapeError(`loss_mlm: row ${r} outside the ${n} selected rows`);
    mlmLabelOf[r] = label;
  });
  return {
    tau, invTau: 1 / tau, ceCount, mlmCount, mlmLabelOf,
    ceScale: (tau / ceCount) * o.alpha_ce,
    mseScale: (2 / ceCount) * o.alpha_mse,
    mlmScale: o.alpha_mlm / Math.max(mlmCount, 1),
  };
}

/** Loss values and their gradient for host logits s [N, V]. */
export function logitLossesHost(s: Float32Array, n: number, v: number, t: TeacherSoftTargets, o: LogitLossOptions): HostLogitLosses {
  const { tau, invTau, ceCount, mlmCount, ceScale, mseScale, mlmScale, mlmLabelOf } = lossScales(n, v, t, o);
  const grad = new Float32Array(n * v);
  let ceSum = 0;
  let mlmSum = 0;
  let mseSum = 0;
  const p = t.probs;
  const biasGrad = new Float32Array(v);
  // Distillation KL for every row: three tight passes (max; exponentials, dot with p; gradient).
  for (let row = 0; row < n; row++) {
    const o0 = row * v;
    let ms = -Infinity;
    for (let j = o0; j < o0 + v; j++) if (s[j]! > ms) ms = s[j]!;
    let zq = 0;
    let dot = 0; // Σ p (s − ms)/τ
    for (let j = o0; j < o0 + v; j++) {
      const a = (s[j]! - ms) * invTau;
      const e = expNonPositive(a);
      grad[j] = e; // exp((s − ms)/τ), until the gradient pass
      zq += e;
      dot += p[j]! * a;
    }
    // KL(p‖q) = Σ p log p − Σ p log q, with log q = (s − ms)/τ − log zq
    ceSum += t.negEntropy[row]! - (dot - Math.log(zq));
    const qScale = ceScale / zq;
    for (let j = 0; j < v; j++) {
      const g = qScale * grad[o0 + j]! - ceScale * p[o0 + j]!;
      grad[o0 + j] = g;
      biasGrad[j]! += g;
    }
    const label = mlmLabelOf[row]!;
    if (label >= 0) {
      // Masked-LM cross-entropy on this row: r = softmax(s).
      let zr = 0;
      for (let j = o0; j < o0 + v; j++) zr += expNonPositive(s[j]! - ms);
      mlmSum += -(s[o0 + label]! - ms - Math.log(zr));
      const rScale = mlmScale / zr;
      for (let j = 0; j < v; j++) {
        const g = rScale * expNonPositive(s[o0 + j]! - ms);
        grad[o0 + j]! += g;
        biasGrad[j]! += g;
      }
      grad[o0 + label]! -= mlmScale;
      biasGrad[label]! -= mlmScale;
    }
    if (o.alpha_mse !== 0) {
      const tl = t.logits!;
      for (let j = 0; j < v; j++) {
        const d = s[o0 + j]! - tl[o0 + j]!;
        mseSum += d * d;
        grad[o0 + j]! += mseScale * d;
        biasGrad[j]! += mseScale * d;
      }
    }
  }
  return {
    ce: (tau * tau * ceSum) / ceCount,
    mlm: mlmCount > 0 ? mlmSum / mlmCount : 0,
    mse: o.alpha_mse !== 0 ? mseSum / ceCount : 0,
    grad,
    biasGrad,
  };
}

export interface DeviceLogitLosses {
  ce: number;
  mlm: number;
  mse: number;
  /** ∂(weighted losses)/∂s, [N, V], on the device. */
  grad: tf.Tensor2D;
  /** Its sum over the rows, [V]. */
  biasGrad: tf.Tensor1D;
}

/**
 * The same pass as logitLossesHost, on the `wasm` backend's memory with the SIMD module (student/kernels/simd.ts):
 * the logits are read where they lie and the gradient is written into a new tensor, so neither crosses to
 * JS; only the teacher's targets are uploaded. Same formulas, per row: max; exponentials with Σ and Σ p·a;
 * KL gradient and bias; then the MLM and MSE terms where they apply.
 */
export function logitLossesWasm(simd: SimdKernels, logits: tf.Tensor2D, t: TeacherSoftTargets, o: LogitLossOptions): DeviceLogitLosses {
  const [n, v] = logits.shape;
  const { tau, invTau, ceCount, mlmCount, ceScale, mseScale, mlmScale, mlmLabelOf } = lossScales(n, v, t, o);
  const backend = tf.backend() as BackendWasm;
  const probs = tf.tensor2d(t.probs, [n, v]);
  const teacherLogits = o.alpha_mse !== 0 ? tf.tensor2d(t.logits!, [n, v]) : undefined;
  const gradInfo = backend.makeOutput([n, v], 'float32');
  const biasInfo = backend.makeOutput([v], 'float32');
  const scratch = backend.makeOutput([v], 'float32');
  // Views after every allocation (allocating may grow the memory and detach earlier views); the SIMD
  // passes never allocate.
  const sView = backend.typedArrayFromHeap(logits) as Float32Array;
  const gView = backend.typedArrayFromHeap(gradInfo) as Float32Array;
  const biasView = backend.typedArrayFromHeap(biasInfo) as Float32Array;
  biasView.fill(0);
  const S = heapOffset(logits);
  const P = heapOffset(probs);
  const G = heapOffset(gradInfo);
  const Bias = heapOffset(biasInfo);
  const Tmp = heapOffset(scratch);
  const Tl = teacherLogits ? heapOffset(teacherLogits) : 0;
  const rowBytes = v * 4;
  let ceSum = 0;
  let mlmSum = 0;
  let mseSum = 0;
  for (let row = 0; row < n; row++) {
    const s = S + row * rowBytes;
    const g = G + row * rowBytes;
    const p = P + row * rowBytes;
    const ms = simd.max(s, v);
    const zq = simd.expSumDot(s, g, p, v, ms, invTau);
    ceSum += t.negEntropy[row]! - (simd.second() - Math.log(zq));
    simd.klGrad(g, p, Bias, v, ceScale / zq, ceScale);
    const label = mlmLabelOf[row]!;
    if (label >= 0) {
      const zr = simd.expSum(s, Tmp, v, ms, 1);
      mlmSum += -(sView[row * v + label]! - ms - Math.log(zr));
      simd.axpy2(g, Tmp, Bias, v, mlmScale / zr);
      gView[row * v + label]! -= mlmScale;
      biasView[label]! -= mlmScale;
    }
    if (teacherLogits) mseSum += simd.mseGrad(g, s, Tl + row * rowBytes, Bias, v, mseScale);
  }
  backend.disposeData(scratch.dataId);
  tf.dispose([probs, ...(teacherLogits ? [teacherLogits] : [])]);
  return {
    ce: (tau * tau * ceSum) / ceCount,
    mlm: mlmCount > 0 ? mlmSum / mlmCount : 0,
    mse: o.alpha_mse !== 0 ? mseSum / ceCount : 0,
    grad: tf.engine().makeTensorFromTensorInfo(gradInfo) as tf.Tensor2D,
    biasGrad: tf.engine().makeTensorFromTensorInfo(biasInfo) as tf.Tensor1D,
  };
}


export interface FusedHeadLosses {
  /** α_ce·loss_ce + α_mlm·loss_mlm + α_mse·loss_mse, differentiable with respect to h, E and b. */
  weighted: tf.Scalar;
  loss_ce: number;
  loss_mlm: number;
  loss_mse: number;
}

/**
 * Logits s = h Eᵀ + b for the selected rows (h [N, H] from the vocab transform, E [V, H] the word embeddings,
 * b [V]) and the weighted logit losses against the teacher's soft targets, as one op.
 */
export function fusedHeadLosses(h: tf.Tensor2D, embeddings: tf.Tensor2D, bias: tf.Tensor1D, targets: TeacherSoftTargets, o: LogitLossOptions): FusedHeadLosses {
  const [n] = h.shape;
  const [v] = embeddings.shape;
  const values = { ce: 0, mlm: 0, mse: 0 };
  const op = tf.customGrad(((x: tf.Tensor2D, e: tf.Tensor2D, b: tf.Tensor1D, save: tf.GradSaveFunc) => {
    const logits = tf.tidy(() => tf.add(tf.matMul(x, e, false, true), b)) as tf.Tensor2D; // [N, V]
    const simd = wasmSimd();
    let g: tf.Tensor2D; // [N, V]
    let gb: tf.Tensor1D; // [V]
    let host: { ce: number; mlm: number; mse: number };
    if (simd) {
      const device = logitLossesWasm(simd, logits, targets, o);
      host = device;
      g = device.grad;
      gb = device.biasGrad;
    } else {
      const h = logitLossesHost(logits.dataSync() as Float32Array, n, v, targets, o);
      host = h;
      g = tf.tensor2d(h.grad, [n, v]);
      gb = tf.tensor1d(h.biasGrad);
    }
    logits.dispose();
    values.ce = host.ce;
    values.mlm = host.mlm;
    values.mse = host.mse;
    save([x, e, g, gb]);
    return {
      value: tf.scalar(o.alpha_ce * host.ce + o.alpha_mlm * host.mlm + o.alpha_mse * host.mse),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, es, gs, gbs] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const eGrad = tf.matMul(gs, xs, true, false); // [V, H]
        return [tf.mul(tf.matMul(gs, es), dy), tf.mul(eGrad, dy), tf.mul(gbs, dy)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  const weighted = op(h, embeddings, bias) as tf.Scalar;
  return { weighted, loss_ce: values.ce, loss_mlm: values.mlm, loss_mse: values.mse };
}

/** The backends that run the logit losses in this pass (registered when the backend starts: the CPU ones). */
const passBackends = new Set<string>();

/** Run the logit losses in the fused pass on `backendName` (wasm, cpu); other backends keep the tfjs ops on the device. */
export function registerLogitLossPass(backendName: 'wasm' | 'cpu'): void {
  passBackends.add(backendName);
}

/** The fused pass when the active backend has it (decided when it started), else undefined: the tfjs-op losses run. */
export function logitLossPass(): typeof fusedHeadLosses | undefined {
  return passBackends.has(tf.getBackend()) ? fusedHeadLosses : undefined;
}
