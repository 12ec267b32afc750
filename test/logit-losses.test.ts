// The logit-loss kernel DistillLogitLosses (student/kernels/logit-losses.ts) called directly: the losses, the
// gradient with respect to the logits and its sum over the rows (the vocab bias's gradient), with full and with
// top-k soft targets, on `wasm` (WebAssembly SIMD), on `cpu` and in the JS pass (what `wasm` runs without SIMD),
// against the same maths in float64 within bounds derived from float32 arithmetic (below). The whole-step replays
// against PyTorch (test/updates-*.test.ts, the `unseen-topk8` reference for top-k) run it inside the step.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../student/backend.js';
import { logitLossesHost } from '../student/kernels/logit-losses.js';
import { LOGIT_LOSSES_KERNEL, type LogitLossAttrs } from '../student/ops/logit-losses.js';
import { wasmSimd } from '../student/kernels/simd.js';
import { bucketNegEntropy } from '../src/core/soft-targets.js';
import { IGNORE_INDEX } from '../src/core/labels.js';

process.env['DISTILL_BLAS'] = 'off';

const EPS_F32 = 2 ** -24; // float32's unit roundoff
const TAU = 2;

function random(n: number, seed: number, scale: number): Float64Array {
  let s = seed;
  return Float64Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648 - 0.5) * scale;
  });
}

interface Case {
  n: number;
  v: number;
  /** h Eᵀ [N, V] and the bias [V]: the kernel adds them. */
  projected: Float32Array;
  bias: Float32Array;
  /** [N, V], or [N, k] with ids. */
  probs: Float32Array;
  topkIds?: Int32Array;
  labels: Int32Array;
  negEntropy: number[];
}

/**
 * N rows over a vocabulary of V (not a multiple of 4: the SIMD passes' tails), logits spread over ±`spread`, a
 * masked-LM label on every third row; with k > 0 the teacher's top k ids (distinct, random) and probabilities
 * summing to 0.6–0.95 (the rest is the tail bucket's mass). Row 5 is peaked: its first top-k id 200 above the
 * rest, so the student's tail holds ~V·e⁻¹⁰⁰ of its mass, below what float32 exponentials hold (the kernel's exact
 * fallback for the tail); its label is in the tail (a masked-LM loss of ~200).
 */
function makeCase(n: number, v: number, k: number, spread: number, seed: number): Case {
  const projected = Float32Array.from(random(n * v, seed, spread));
  const bias = Float32Array.from(random(v, seed + 1, 2));
  const labels = new Int32Array(n).fill(IGNORE_INDEX);
  const pick = random(n * (k + 2), seed + 2, 1).map((x) => x + 0.5); // [0, 1)
  for (let r = 0; r < n; r += 3) labels[r] = Math.floor(pick[r * (k + 2)]! * v);
  if (k === 0) {
    // Full soft targets: softmax(t/τ) of random teacher logits, and Σ p log p.
    const t = random(n * v, seed + 3, spread);
    const probs = new Float32Array(n * v);
    const negEntropy: number[] = [];
    for (let r = 0; r < n; r++) {
      const row = t.subarray(r * v, (r + 1) * v).map((x) => x / TAU);
      const m = Math.max(...row);
      const z = row.reduce((a, x) => a + Math.exp(x - m), 0);
      let h = 0;
      for (let j = 0; j < v; j++) {
        probs[r * v + j] = Math.exp(row[j]! - m) / z;
        h += probs[r * v + j]! > 0 ? probs[r * v + j]! * Math.log(probs[r * v + j]!) : 0;
      }
      negEntropy.push(h);
    }
    return { n, v, projected, bias, probs, labels, negEntropy };
  }
  const probs = new Float32Array(n * k);
  const topkIds = new Int32Array(n * k);
  const negEntropy: number[] = [];
  const weights = random(n * k, seed + 4, 1).map((x) => x + 0.6); // (0.1, 1.1)
  for (let r = 0; r < n; r++) {
    // Distinct ids: a random start, then steps of 97 (prime, and no factor of the vocabularies below).
    const start = Math.floor(pick[r * (k + 2) + 2]! * v);
    for (let i = 0; i < k; i++) topkIds[r * k + i] = (start + 97 * i) % v;
    const mass = 0.6 + 0.35 * pick[r * (k + 2) + 1]!;
    const w = weights
      .subarray(r * k, (r + 1) * k)
      .slice()
      .sort((a, b) => b - a);
    const total = w.reduce((a, x) => a + x, 0);
    for (let i = 0; i < k; i++) probs[r * k + i] = (w[i]! / total) * mass;
    negEntropy.push(bucketNegEntropy(probs, r * k, k));
  }
  if (n > 5) {
    const peakId = topkIds[5 * k]!;
    projected[5 * v + peakId] = 200 - bias[peakId]!;
    let tailLabel = 0;
    while (topkIds.subarray(5 * k, 6 * k).includes(tailLabel)) tailLabel++;
    labels[5] = tailLabel;
  }
  return { n, v, projected, bias, probs, topkIds, labels, negEntropy };
}

const attrsOf = (c: Case): LogitLossAttrs => ({
  temperature: TAU,
  alpha_ce: 5,
  alpha_mlm: 2,
  alpha_mse: 0,
  ceCount: c.n,
  mlmCount: c.labels.filter((l) => l !== IGNORE_INDEX).length,
  negEntropy: c.negEntropy,
});

interface Reference {
  weighted: number;
  ce: number;
  mlm: number;
  grad: Float64Array;
  biasGrad: Float64Array;
  tolCe: number;
  tolMlm: number;
  tolGrad: Float64Array;
  tolBias: Float64Array;
}

/**
 * The float64 reference, and for each output the largest error float32 arithmetic may make. With X the row's
 * largest |x|, x = (s − max s)/τ: the kernel's x is within 2ε|x| (the subtraction's and the scaling's roundings),
 * its exponentials within 4ε relatively more (Cephes' expf in SIMD, expNonPositive in JS: < 2e-7), a sum of V of
 * them within V·ε (positive terms, any order); so each q = e/Σe, r = e'/Σe' and the tail's q_tail/Σ are within
 * δ = (4X + V + 12)·ε relatively (X counted at τ for r), and each log q within δ absolutely. A gradient entry is
 * ceScale·(q − p) or ceScale·(q − p_tail·q/q_tail) plus mlmScale·(r − onehot): within δ times the magnitudes of
 * its terms, plus the roundings of the few operations combining them (the factor 2). The bias's gradient adds N
 * rows (another N·ε of Σ|g|); the losses sum per-row terms whose logs carry δ, weighted by p (Σ = 1).
 */
function reference(c: Case): Reference {
  const { n, v, projected, bias, probs, topkIds, labels } = c;
  const a = attrsOf(c);
  const k = topkIds ? probs.length / n : v;
  const ceScale = (TAU / a.ceCount) * a.alpha_ce;
  const mlmScale = a.alpha_mlm / Math.max(a.mlmCount, 1);
  const grad = new Float64Array(n * v);
  const tolGrad = new Float64Array(n * v);
  const biasGrad = new Float64Array(v);
  const absBias = new Float64Array(v);
  const tolBias = new Float64Array(v);
  let ce = 0;
  let mlm = 0;
  let tolCe = 0;
  let tolMlm = 0;
  for (let r = 0; r < n; r++) {
    // the kernel's float32 sum
    const s = Array.from({ length: v }, (_, j) => Math.fround(projected[r * v + j]! + bias[j]!));
    const ms = Math.max(...s);
    const x = s.map((sv) => (sv - ms) / TAU);
    const X = Math.max(...x.map(Math.abs));
    const delta = (4 * X * TAU + v + 12) * EPS_F32;
    const lse = Math.log(x.reduce((acc, xv) => acc + Math.exp(xv), 0));
    const q = x.map((xv) => Math.exp(xv - lse));
    const target = new Float64Array(v); // the KL's gradient per unit ceScale
    const mag = new Float64Array(v); // the magnitudes of its terms
    let cross = 0;
    if (topkIds) {
      const inK = new Set(topkIds.subarray(r * k, (r + 1) * k));
      let pSum = 0;
      for (let i = 0; i < k; i++) {
        const id = topkIds[r * k + i]!;
        const p = probs[r * k + i]!;
        pSum += p;
        cross += p * (x[id]! - lse);
        target[id] = q[id]! - p;
        mag[id] = q[id]! + p;
      }
      const pTail = Math.max(0, 1 - pSum);
      let tailMax = -Infinity;
      for (let j = 0; j < v; j++) if (!inK.has(j)) tailMax = Math.max(tailMax, x[j]!);
      let tailSum = 0;
      for (let j = 0; j < v; j++) if (!inK.has(j)) tailSum += Math.exp(x[j]! - tailMax);
      const logTail = tailMax + Math.log(tailSum); // log Σ_tail e^x
      cross += pTail * (logTail - lse);
      for (let j = 0; j < v; j++) {
        if (inK.has(j)) continue;
        const spread = pTail * Math.exp(x[j]! - logTail); // p_tail·q_v/q_tail
        target[j] = q[j]! - spread;
        mag[j] = q[j]! + spread;
      }
    } else {
      for (let j = 0; j < v; j++) {
        const p = probs[r * v + j]!;
        cross += p * (x[j]! - lse);
        target[j] = q[j]! - p;
        mag[j] = q[j]! + p;
      }
    }
    ce += c.negEntropy[r]! - cross;
    tolCe += 2 * delta;
    const label = labels[r]!;
    const rz = label === IGNORE_INDEX ? 0 : Math.log(s.reduce((acc, sv) => acc + Math.exp(sv - ms), 0));
    if (label !== IGNORE_INDEX) {
      mlm += -(s[label]! - ms - rz);
      tolMlm += 2 * delta + EPS_F32 * Math.abs(s[label]! - ms);
    }
    for (let j = 0; j < v; j++) {
      let g = ceScale * target[j]!;
      let m = ceScale * mag[j]!;
      if (label !== IGNORE_INDEX) {
        const rv = Math.exp(s[j]! - ms - rz);
        g += mlmScale * (rv - (j === label ? 1 : 0));
        m += mlmScale * (rv + (j === label ? 1 : 0));
      }
      grad[r * v + j] = g;
      tolGrad[r * v + j] = 2 * (delta * m + 2 * EPS_F32 * m) + Number.MIN_VALUE;
      biasGrad[j]! += g;
      absBias[j]! += Math.abs(g);
      tolBias[j]! += tolGrad[r * v + j]!;
    }
  }
  for (let j = 0; j < v; j++) tolBias[j]! += 2 * (n + 2) * EPS_F32 * absBias[j]!;
  ce = (TAU * TAU * ce) / a.ceCount;
  mlm /= Math.max(a.mlmCount, 1);
  tolCe = (TAU * TAU * tolCe) / a.ceCount + 2 * EPS_F32 * Math.abs(ce);
  tolMlm = tolMlm / Math.max(a.mlmCount, 1) + 2 * EPS_F32 * Math.abs(mlm);
  return { weighted: a.alpha_ce * ce + a.alpha_mlm * mlm, ce, mlm, grad, biasGrad, tolCe, tolMlm, tolGrad, tolBias };
}

function expectWithin(name: string, got: ArrayLike<number>, want: Float64Array, tol: Float64Array): void {
  expect(got.length, name).toBe(want.length);
  let worst = 0;
  let at = 0;
  for (let i = 0; i < want.length; i++) {
    const ratio = Math.abs(got[i]! - want[i]!) / tol[i]!;
    if (!(ratio <= worst)) {
      worst = ratio;
      at = i;
    }
  }
  expect(worst, `${name}[${at}]: ${got[at]} against ${want[at]} (bound ${tol[at]})`).toBeLessThanOrEqual(1);
}

function expectReference(
  c: Case,
  losses: ArrayLike<number>,
  grad: ArrayLike<number>,
  biasGrad: ArrayLike<number>,
): void {
  const ref = reference(c);
  expect(Math.abs(losses[1]! - ref.ce), `loss_ce ${losses[1]} against ${ref.ce}`).toBeLessThanOrEqual(ref.tolCe);
  expect(Math.abs(losses[2]! - ref.mlm), `loss_mlm ${losses[2]} against ${ref.mlm}`).toBeLessThanOrEqual(ref.tolMlm);
  expect(Math.abs(losses[0]! - ref.weighted)).toBeLessThanOrEqual(
    5 * ref.tolCe + 2 * ref.tolMlm + 2 * EPS_F32 * Math.abs(ref.weighted),
  );
  expect(losses[3]).toBe(0);
  expectWithin('grad', grad, ref.grad, ref.tolGrad);
  expectWithin('biasGrad', biasGrad, ref.biasGrad, ref.tolBias);
}

function runKernel(c: Case): { losses: Float32Array; grad: Float32Array; biasGrad: Float32Array } {
  const k = c.topkIds ? c.probs.length / c.n : c.v;
  const outs = tf.tidy(() => {
    const inputs: tf.NamedTensorMap = {
      projected: tf.tensor2d(c.projected, [c.n, c.v]),
      bias: tf.tensor1d(c.bias),
      probs: tf.tensor2d(c.probs, [c.n, k]),
      labels: tf.tensor1d(c.labels, 'int32'),
      ...(c.topkIds ? { topkIds: tf.tensor2d(c.topkIds, [c.n, k], 'int32') } : {}),
    };
    return tf.engine().runKernel(LOGIT_LOSSES_KERNEL, inputs, { ...attrsOf(c) }) as unknown as tf.Tensor[];
  });
  const [losses, grad, biasGrad] = outs.map((t) => t.dataSync() as Float32Array);
  outs.forEach((t) => t.dispose());
  return { losses: losses!, grad: grad!, biasGrad: biasGrad! };
}

const CASES: [string, Case][] = [
  ['top-8 soft targets, a row with its tail below float32', makeCase(12, 1003, 8, 12, 11)],
  ['top-1 soft targets', makeCase(7, 517, 1, 8, 21)],
  ['full soft targets', makeCase(9, 1003, 0, 12, 31)],
];

describe('logit-loss kernel: losses and gradients against float64', () => {
  for (const backend of ['wasm', 'cpu'] as const) {
    for (const [name, c] of CASES) {
      it(`${backend}${backend === 'wasm' ? ' (SIMD)' : ''}: ${name}`, async () => {
        await selectBackend(backend);
        if (backend === 'wasm') expect(wasmSimd(), 'the SIMD module loaded').not.toBeNull();
        const before = tf.memory().numTensors;
        const { losses, grad, biasGrad } = runKernel(c);
        expectReference(c, losses, grad, biasGrad);
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  }
  for (const [name, c] of CASES) {
    it(`JS (wasm without SIMD): ${name}`, () => {
      const a = attrsOf(c);
      const h = logitLossesHost(c.projected, c.bias, c.n, c.v, { probs: c.probs, topkIds: c.topkIds }, c.labels, a);
      expectReference(c, [a.alpha_ce * h.ce + a.alpha_mlm * h.mlm, h.ce, h.mlm, h.mse], h.grad, h.biasGrad);
    });
  }

  it('names a repeated or out-of-range top-k id, and a k that leaves no tail', async () => {
    await selectBackend('wasm');
    const c = makeCase(4, 64, 4, 4, 41);
    const repeated = { ...c, topkIds: c.topkIds!.slice() };
    repeated.topkIds[1] = repeated.topkIds[0]!;
    expect(() => runKernel(repeated)).toThrow(`top-k id ${repeated.topkIds[0]} appears twice in one row`);
    const outside = { ...c, topkIds: c.topkIds!.slice() };
    outside.topkIds[2] = 64;
    expect(() => runKernel(outside)).toThrow('top-k id 64 outside the vocabulary of 64');
    const whole = makeCase(2, 5, 4, 4, 43);
    expect(() =>
      runKernel({
        ...whole,
        probs: new Float32Array(10).fill(0.2),
        topkIds: Int32Array.from([0, 1, 2, 3, 4, 0, 1, 2, 3, 4]),
      }),
    ).toThrow('top-k of 5 for a vocabulary of 5: expected 1 ≤ k < 5');
  });
});
