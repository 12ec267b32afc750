// The kernel of the three logit losses (distillation KL, masked-LM cross-entropy, optional MSE) and their gradient
// with respect to the student's logits, DistillLogitLosses, on the CPU backends (`wasm`: one pass per row in
// WebAssembly SIMD on the backend's own memory, or in JS where SIMD is off; `cpu`: in JS). The op (student/ops/
// logit-losses.ts fusedHeadLosses): the tied projector's product h Eᵀ, then this kernel, which adds the vocab bias
// b row by row as it reads the product (s = h Eᵀ + b, the same float32 sums tfjs's Add makes, without an [N, V]
// tensor and its pass), with its own gradient.
// Where no kernel is registered (webgpu, tensorflow) losses/total.ts runs the per-loss files
// (losses/distillation.ts, mlm.ts, mse.ts) in tfjs ops instead: they say what is computed, this computes the
// same (the golden tests hold both paths to PyTorch's numbers) without a dozen [N, V] tensors: on `wasm` the
// tfjs-op version spends seconds a step in Exp/Sum/logSoftmax over [N, V] and in their gradients. The
// teacher's side (p = softmax(t/τ) and Σ p log p) is prepared once per batch, off the student's path
// (teacher/soft-targets.ts).
//
// With p = softmax(t/τ), q = softmax(s/τ), r = softmax(s), over the selected rows:
//   loss_ce  = τ²/N_ce  Σ_rows Σ_v p (log p − log q)      ∂/∂s = τ/N_ce (q − p)
//   loss_mlm = −1/N_mlm Σ_mlm rows log r[label]          ∂/∂s = (r − onehot(label))/N_mlm
//   loss_mse = 1/N_ce   Σ_rows Σ_v (s − t)²               ∂/∂s = 2(s − t)/N_ce
// N_ce and N_mlm are the row counts to average over (global counts in data-parallel runs).
// Through the projector s = h Eᵀ + b:  ∂h = G E,  ∂E = Gᵀ h,  ∂b = Σ_rows G (the kernel sums it in its pass).
//
// With top-k soft targets the KL is losses/distillation-topk.ts's (k outcomes and one tail bucket), same pass.
//
// The kernel: inputs {projected [N, V] = h Eᵀ, bias [V], probs [N, V] (or [N, k] with topkIds [N, k] int32),
// labels [N] int32 (-100: no MLM label), teacherLogits [N, V] (only with α_mse ≠ 0)}; attributes LogitLossAttrs;
// outputs [losses [4] = (α-weighted sum, ce, mlm, mse), grad [N, V] = ∂(weighted sum)/∂s, biasGrad [V] = Σ_rows grad].

import * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../../src/core/errors.js';
import { IGNORE_INDEX } from '../../src/core/labels.js';
import { expNonPositive } from '../../src/core/math.js';
import { heapOffset, wasmSimd, type SimdKernels } from './simd.js';
import { cpuBackend, wasmBackend, type KernelArgs, type WasmBackend } from './backend-internals.js';
import { LOGIT_LOSSES_KERNEL, type LogitLossAttrs } from '../ops/logit-losses.js';
import type { BackendKernels } from './kinds.js';

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
  /** ∂(α_ce·ce)/∂s = ceScale·(q − p). */
  ceScale: number;
  /** ∂(α_mse·mse)/∂s = mseScale·(s − t). */
  mseScale: number;
  /** ∂(α_mlm·mlm)/∂s = mlmScale·(r − onehot). */
  mlmScale: number;
}

/** The sizes of the kernel's inputs, checked by lossScales. */
interface InputSizes {
  n: number;
  v: number;
  probs: number;
  bias: number;
  /** Of the top-k ids; absent with full soft targets. */
  topkIds?: number;
}

/**
 * Check the inputs of the logit losses and work out their scales (shared by the host and wasm passes). Returns
 * k as well: the soft targets a row holds (V, or the top k).
 */
function lossScales(
  { n, v, probs, bias, topkIds }: InputSizes,
  labels: Int32Array,
  hasTeacherLogits: boolean,
  a: LogitLossAttrs,
): LossScales & { k: number } {
  const k = topkIds === undefined ? v : n > 0 ? probs / n : 0;
  if (topkIds === undefined && probs !== n * v)
    throw new ShapeError(`logit losses: teacher targets hold ${probs} values, expected [${n}, ${v}]`);
  if (topkIds !== undefined) {
    if (topkIds !== probs || !Number.isInteger(k))
      throw new ShapeError(`logit losses: top-k soft targets of ${probs} values and ${topkIds} ids for ${n} rows`);
    if (n > 0 && !(k >= 1 && k < v))
      throw new ShapeError(`logit losses: top-k of ${k} for a vocabulary of ${v}: expected 1 ≤ k < ${v}`);
    if (a.alpha_mse !== 0)
      throw new ShapeError("logit losses: the MSE loss needs the teacher's full logits, not top-k soft targets");
  }
  if (bias !== v) throw new ShapeError(`logit losses: a vocab bias of ${bias} values for logits [${n}, ${v}]`);
  if (labels.length !== n) throw new ShapeError(`logit losses: ${labels.length} labels for ${n} rows`);
  if (a.negEntropy.length !== n)
    throw new ShapeError(`logit losses: ${a.negEntropy.length} teacher entropies for ${n} rows`);
  if (a.alpha_mse !== 0 && !hasTeacherLogits)
    throw new ShapeError('logit losses: the MSE loss needs the teacher logits kept (keepLogits)');
  for (const label of labels) {
    if (label !== IGNORE_INDEX && (label < 0 || label >= v))
      throw new ShapeError(`loss_mlm: label ${label} outside the vocabulary of ${v}`);
  }
  const tau = a.temperature;
  return {
    k,
    tau,
    invTau: 1 / tau,
    ceScale: (tau / a.ceCount) * a.alpha_ce,
    mseScale: (2 / a.ceCount) * a.alpha_mse,
    mlmScale: a.alpha_mlm / Math.max(a.mlmCount, 1),
  };
}

/** The three means from the sums (shared by both passes). */
function means(
  sums: { ce: number; mlm: number; mse: number },
  a: LogitLossAttrs,
  tau: number,
): { ce: number; mlm: number; mse: number } {
  return {
    ce: (tau * tau * sums.ce) / a.ceCount,
    mlm: a.mlmCount > 0 ? sums.mlm / a.mlmCount : 0,
    mse: a.alpha_mse !== 0 ? sums.mse / a.ceCount : 0,
  };
}

/** The teacher's side, on the host: soft targets [N, V], or the top k [N, k] with their ids; logits for the MSE. */
export interface HostLogitTargets {
  probs: Float32Array;
  topkIds?: Int32Array;
  teacherLogits?: Float32Array;
}

/**
 * Below this, Σ of a row's tail exponentials is recomputed exactly (topkRow):
 * float32 exps there are clamped or subnormal.
 */
const TAIL_FLOOR = 1e-30;

/** One row of the top-k KL, on views of the kernel's buffers (both passes: JS and SIMD). */
interface TopkRow {
  /** e = exp((s − ms)/τ) from `at`, Σ e = zq; the KL's gradient on return. */
  g: Float32Array;
  at: number;
  /** The row's logits s [V] and their max. */
  s: Float32Array;
  ms: number;
  zq: number;
  /** The teacher's k largest soft targets and their ids, from `kAt`. */
  probs: Float32Array;
  ids: Int32Array;
  kAt: number;
  k: number;
  /** Σ_rows of the gradient, [V]. */
  biasGrad: Float32Array;
  /** Marks the row's top-k ids: stamp[id] = rowStamp. */
  stamp: Int32Array;
  rowStamp: number;
  /** [k] scratch: the top-k entries' e. */
  eTop: Float64Array;
  /** Σ of the row's e (the top-k entries already zeroed). */
  tailSum(): number;
  /** g = c·g over the row and biasGrad += g. */
  scaleTail(c: number): void;
}

/**
 * The top-k KL of one row (losses/distillation-topk.ts: the k ids are outcomes of their own, the rest of the
 * vocabulary one tail bucket): fills the row's gradient ∂/∂s = ceScale·(q_v − p_v) on the k ids and
 * ceScale·q_v·(1 − p_tail/q_tail) on the tail, adds it to biasGrad, and returns Σ_K p log q + p_tail log q_tail.
 * q_tail is the sum of the tail's own exponentials (not 1 − Σ_K q, which loses every digit when the student
 * puts nearly all its mass on K), recomputed in float64 from s when that sum falls below TAIL_FLOOR.
 */
function topkRow(r: TopkRow, invTau: number, ceScale: number, v: number): number {
  const { g, at, s, ms, zq, probs, ids, kAt, k, biasGrad, stamp, rowStamp, eTop } = r;
  const logZq = Math.log(zq);
  let cross = 0;
  let pSum = 0;
  for (let i = 0; i < k; i++) {
    const id = ids[kAt + i]!;
    if (!(id >= 0 && id < v)) throw new ShapeError(`loss_ce: top-k id ${id} outside the vocabulary of ${v}`);
    if (stamp[id] === rowStamp) throw new ShapeError(`loss_ce: top-k id ${id} appears twice in one row`);
    stamp[id] = rowStamp;
    const p = probs[kAt + i]!;
    eTop[i] = g[at + id]!;
    g[at + id] = 0; // out of the tail's sum and its scaling; set below
    pSum += p;
    cross += p * ((s[id]! - ms) * invTau - logZq);
  }
  const pTail = Math.max(0, 1 - pSum);
  const tail = r.tailSum();
  if (tail >= TAIL_FLOOR) {
    if (pTail > 0) cross += pTail * (Math.log(tail) - logZq);
    r.scaleTail(ceScale * (1 / zq - pTail / tail));
  } else {
    // log Σ_tail exp((s − ms)/τ) in float64, and the tail's gradient from it.
    let mt = -Infinity;
    for (let j = 0; j < v; j++) if (stamp[j] !== rowStamp) mt = Math.max(mt, (s[j]! - ms) * invTau);
    let st = 0;
    for (let j = 0; j < v; j++) if (stamp[j] !== rowStamp) st += Math.exp((s[j]! - ms) * invTau - mt);
    const logTail = mt + Math.log(st);
    if (pTail > 0) cross += pTail * (logTail - logZq);
    for (let j = 0; j < v; j++) {
      if (stamp[j] === rowStamp) continue;
      const x = (s[j]! - ms) * invTau;
      const grad = ceScale * (Math.exp(x - logZq) - pTail * Math.exp(x - logTail));
      g[at + j] = grad;
      biasGrad[j]! += grad;
    }
  }
  for (let i = 0; i < k; i++) {
    const id = ids[kAt + i]!;
    const grad = ceScale * (eTop[i]! / zq - probs[kAt + i]!);
    g[at + id] = grad;
    biasGrad[id]! += grad;
  }
  return cross;
}

/**
 * Loss values and their gradient for host logits s = projected + bias ([N, V] and [V]; labels [N], -100 where a
 * row has no MLM label).
 */
export function logitLossesHost(
  projected: Float32Array,
  bias: Float32Array,
  n: number,
  v: number,
  targets: HostLogitTargets,
  labels: Int32Array,
  a: LogitLossAttrs,
): HostLogitLosses {
  const { probs: p, topkIds, teacherLogits } = targets;
  const { k, tau, invTau, ceScale, mseScale, mlmScale } = lossScales(
    { n, v, probs: p.length, bias: bias.length, topkIds: topkIds?.length },
    labels,
    teacherLogits !== undefined,
    a,
  );
  const grad = new Float32Array(n * v);
  const sums = { ce: 0, mlm: 0, mse: 0 };
  const biasGrad = new Float32Array(v);
  const s = new Float32Array(v); // this row's logits: projected + bias, rounded to float32 as tfjs's Add rounds them
  const stamp = topkIds ? new Int32Array(v) : undefined;
  const eTop = new Float64Array(topkIds ? k : 0);
  // Distillation KL for every row: three tight passes (logits and their max; exponentials, dot with p; gradient).
  for (let row = 0; row < n; row++) {
    const o0 = row * v;
    let ms = -Infinity;
    for (let j = 0; j < v; j++) {
      s[j] = projected[o0 + j]! + bias[j]!;
      if (s[j]! > ms) ms = s[j]!;
    }
    let zq = 0;
    let dot = 0; // Σ p (s − ms)/τ
    for (let j = 0; j < v; j++) {
      const x = (s[j]! - ms) * invTau;
      const e = expNonPositive(x);
      grad[o0 + j] = e; // exp((s − ms)/τ), until the gradient pass
      zq += e;
      if (!topkIds) dot += p[o0 + j]! * x;
    }
    if (topkIds) {
      const cross = topkRow(
        {
          g: grad,
          at: o0,
          s,
          ms,
          zq,
          probs: p,
          ids: topkIds,
          kAt: row * k,
          k,
          biasGrad,
          stamp: stamp!,
          rowStamp: row + 1,
          eTop,
          tailSum: () => {
            let t = 0;
            for (let j = o0; j < o0 + v; j++) t += grad[j]!;
            return t;
          },
          scaleTail: (c) => {
            for (let j = 0; j < v; j++) {
              const g = c * grad[o0 + j]!;
              grad[o0 + j] = g;
              biasGrad[j]! += g;
            }
          },
        },
        invTau,
        ceScale,
        v,
      );
      sums.ce += a.negEntropy[row]! - cross;
    } else {
      // KL(p‖q) = Σ p log p − Σ p log q, with log q = (s − ms)/τ − log zq
      sums.ce += a.negEntropy[row]! - (dot - Math.log(zq));
      const qScale = ceScale / zq;
      for (let j = 0; j < v; j++) {
        const g = qScale * grad[o0 + j]! - ceScale * p[o0 + j]!;
        grad[o0 + j] = g;
        biasGrad[j]! += g;
      }
    }
    const label = labels[row]!;
    if (label !== IGNORE_INDEX) {
      // Masked-LM cross-entropy on this row: r = softmax(s).
      let zr = 0;
      for (let j = 0; j < v; j++) zr += expNonPositive(s[j]! - ms);
      sums.mlm += -(s[label]! - ms - Math.log(zr));
      const rScale = mlmScale / zr;
      for (let j = 0; j < v; j++) {
        const g = rScale * expNonPositive(s[j]! - ms);
        grad[o0 + j]! += g;
        biasGrad[j]! += g;
      }
      grad[o0 + label]! -= mlmScale;
      biasGrad[label]! -= mlmScale;
    }
    if (teacherLogits && a.alpha_mse !== 0) {
      for (let j = 0; j < v; j++) {
        const d = s[j]! - teacherLogits[o0 + j]!;
        sums.mse += d * d;
        grad[o0 + j]! += mseScale * d;
        biasGrad[j]! += mseScale * d;
      }
    }
  }
  return { ...means(sums, a, tau), grad, biasGrad };
}

type LossInputs = {
  projected: tf.TensorInfo;
  bias: tf.TensorInfo;
  probs: tf.TensorInfo;
  labels: tf.TensorInfo;
  topkIds?: tf.TensorInfo;
  teacherLogits?: tf.TensorInfo;
};

/**
 * The same pass as logitLossesHost, on the `wasm` backend's memory with the SIMD module (student/kernels/simd.ts):
 * the product is read where it lies and the gradient is written into the output, so neither crosses to JS.
 * Same formulas, per row: the logits s = h Eᵀ + b and their max; exponentials with Σ and Σ p·a; KL gradient and
 * bias (with top-k targets: exponentials and Σ, then topkRow with the SIMD sum and scaling of the tail); then the
 * MLM and MSE terms where they apply. `grad` and `biasGrad` are the kernel's outputs, `scratch` a [2, V] buffer:
 * the row's logits, then the MLM pass's exponentials. `topkIds` is a host copy of the ids input.
 */
function logitLossesSimd(
  simd: SimdKernels,
  backend: WasmBackend,
  ins: LossInputs,
  labels: Int32Array,
  topkIds: Int32Array | undefined,
  out: { grad: tf.TensorInfo; biasGrad: tf.TensorInfo; scratch: tf.TensorInfo },
  a: LogitLossAttrs,
): { ce: number; mlm: number; mse: number } {
  const [n, v] = ins.projected.shape as [number, number];
  const { k, tau, invTau, ceScale, mseScale, mlmScale } = lossScales(
    {
      n,
      v,
      probs: tf.util.sizeFromShape(ins.probs.shape),
      bias: tf.util.sizeFromShape(ins.bias.shape),
      topkIds: topkIds?.length,
    },
    labels,
    ins.teacherLogits !== undefined,
    a,
  );
  const gView = backend.typedArrayFromHeap(out.grad) as Float32Array;
  const pView = topkIds ? (backend.typedArrayFromHeap(ins.probs) as Float32Array) : undefined;
  const stamp = topkIds ? new Int32Array(v) : undefined;
  const eTop = new Float64Array(topkIds ? k : 0);
  const biasView = backend.typedArrayFromHeap(out.biasGrad) as Float32Array;
  const sView = backend.typedArrayFromHeap(out.scratch) as Float32Array; // [0, v): the row's logits
  biasView.fill(0);
  const H = heapOffset(ins.projected);
  const B = heapOffset(ins.bias);
  const P = heapOffset(ins.probs);
  const G = heapOffset(out.grad);
  const Bias = heapOffset(out.biasGrad);
  const s = heapOffset(out.scratch);
  const Tmp = s + v * 4;
  const Tl = ins.teacherLogits && a.alpha_mse !== 0 ? heapOffset(ins.teacherLogits) : undefined;
  const rowBytes = v * 4;
  const sums = { ce: 0, mlm: 0, mse: 0 };
  for (let row = 0; row < n; row++) {
    const g = G + row * rowBytes;
    const ms = simd.addMax(H + row * rowBytes, B, s, v);
    if (topkIds) {
      const zq = simd.expSum(s, g, v, ms, invTau);
      sums.ce +=
        a.negEntropy[row]! -
        topkRow(
          {
            g: gView,
            at: row * v,
            s: sView,
            ms,
            zq,
            probs: pView!,
            ids: topkIds,
            kAt: row * k,
            k,
            biasGrad: biasView,
            stamp: stamp!,
            rowStamp: row + 1,
            eTop,
            tailSum: () => simd.sum(g, v),
            scaleTail: (c) => simd.scaleAcc(g, Bias, v, c),
          },
          invTau,
          ceScale,
          v,
        );
    } else {
      const p = P + row * rowBytes;
      const zq = simd.expSumDot(s, g, p, v, ms, invTau);
      sums.ce += a.negEntropy[row]! - (simd.second() - Math.log(zq));
      simd.klGrad(g, p, Bias, v, ceScale / zq, ceScale);
    }
    const label = labels[row]!;
    if (label !== IGNORE_INDEX) {
      const zr = simd.expSum(s, Tmp, v, ms, 1);
      sums.mlm += -(sView[label]! - ms - Math.log(zr));
      simd.axpy2(g, Tmp, Bias, v, mlmScale / zr);
      gView[row * v + label]! -= mlmScale;
      biasView[label]! -= mlmScale;
    }
    if (Tl !== undefined) sums.mse += simd.mseGrad(g, s, Tl + row * rowBytes, Bias, v, mseScale);
  }
  return means(sums, a, tau);
}

const weightedSum = (l: { ce: number; mlm: number; mse: number }, a: LogitLossAttrs): Float32Array =>
  Float32Array.from([a.alpha_ce * l.ce + a.alpha_mlm * l.mlm + a.alpha_mse * l.mse, l.ce, l.mlm, l.mse]);

function wasmKernel({ inputs, attrs, backend }: KernelArgs): tf.TensorInfo[] {
  const wasm = wasmBackend(backend);
  const ins = inputs as unknown as LossInputs;
  const a = attrs as unknown as LogitLossAttrs;
  const [n, v] = ins.projected.shape as [number, number];
  const losses = wasm.makeOutput([4], 'float32');
  const grad = wasm.makeOutput([n, v], 'float32');
  const biasGrad = wasm.makeOutput([v], 'float32');
  const simd = wasmSimd();
  const scratch = simd ? wasm.makeOutput([2, v], 'float32') : undefined;
  // Views after every allocation (allocating may grow the memory and detach earlier views).
  const labels = Int32Array.from(wasm.typedArrayFromHeap(ins.labels) as Int32Array);
  const topkIds = ins.topkIds ? Int32Array.from(wasm.typedArrayFromHeap(ins.topkIds) as Int32Array) : undefined;
  let values: { ce: number; mlm: number; mse: number };
  try {
    if (simd && scratch) values = logitLossesSimd(simd, wasm, ins, labels, topkIds, { grad, biasGrad, scratch }, a);
    else {
      const view = (t: tf.TensorInfo): Float32Array => wasm.typedArrayFromHeap(t) as Float32Array;
      const h = logitLossesHost(
        view(ins.projected),
        view(ins.bias),
        n,
        v,
        { probs: view(ins.probs), topkIds, teacherLogits: ins.teacherLogits ? view(ins.teacherLogits) : undefined },
        labels,
        a,
      );
      view(grad).set(h.grad);
      view(biasGrad).set(h.biasGrad);
      values = h;
    }
  } catch (e) {
    // Bad input (shapes, labels, ids): the outputs were never handed to tfjs, so free them here.
    for (const t of [losses, grad, biasGrad]) wasm.disposeData(t.dataId);
    throw e;
  } finally {
    if (scratch) wasm.disposeData(scratch.dataId);
  }
  (wasm.typedArrayFromHeap(losses) as Float32Array).set(weightedSum(values, a));
  return [losses, grad, biasGrad];
}

function cpuKernel({ inputs, attrs, backend }: KernelArgs): tf.TensorInfo[] {
  const cpu = cpuBackend(backend);
  const ins = inputs as unknown as LossInputs;
  const a = attrs as unknown as LogitLossAttrs;
  const [n, v] = ins.projected.shape as [number, number];
  const read = (t: tf.TensorInfo): Float32Array => cpu.readSync(t.dataId) as Float32Array;
  const h = logitLossesHost(
    read(ins.projected),
    read(ins.bias),
    n,
    v,
    {
      probs: read(ins.probs),
      topkIds: ins.topkIds ? (cpu.readSync(ins.topkIds.dataId) as Int32Array) : undefined,
      teacherLogits: ins.teacherLogits ? read(ins.teacherLogits) : undefined,
    },
    cpu.readSync(ins.labels.dataId) as Int32Array,
    a,
  );
  return [
    cpu.makeTensorInfo([4], 'float32', weightedSum(h, a)),
    cpu.makeTensorInfo([n, v], 'float32', h.grad),
    cpu.makeTensorInfo([v], 'float32', h.biasGrad),
  ];
}

/**
 * DistillLogitLosses (student/ops/logit-losses.ts) on wasm (SIMD or JS)
 * and cpu; other backends keep the tfjs ops on the device.
 */
export const LOGIT_LOSSES: BackendKernels<'wasm' | 'cpu'> = {
  wasm: [{ kernelName: LOGIT_LOSSES_KERNEL, backendName: 'wasm', kernelFunc: wasmKernel as unknown as tf.KernelFunc }],
  cpu: [{ kernelName: LOGIT_LOSSES_KERNEL, backendName: 'cpu', kernelFunc: cpuKernel as unknown as tf.KernelFunc }],
};
