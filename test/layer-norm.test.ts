// LayerNorm's host kernel (student/kernels/layer-norm.ts): on `wasm` in WebAssembly SIMD, on `cpu` and without
// SIMD in JS. The output and all three gradients against the same maths in float64, within bounds derived from
// float32 arithmetic (below); the whole-step replays against PyTorch (test/updates-*.test.ts) run it too.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../student/backend.js';
import { layerNormBackwardInto, layerNormForwardInto } from '../student/kernels/layer-norm.js';
import { LAYER_NORM_KERNEL, layerNorm } from '../student/ops/layer-norm.js';
import { wasmSimd } from '../student/kernels/simd.js';

process.env['DISTILL_BLAS'] = 'off';

const EPS_F32 = 2 ** -24; // float32's unit roundoff
const LN_EPS = 1e-12;

function random(n: number, seed: number, scale: number, shift: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648 - 0.5) * scale + shift;
  });
}

interface Case {
  rows: number;
  width: number;
  x: Float32Array;
  gamma: Float32Array;
  beta: Float32Array;
  dy: Float32Array;
}

/**
 * The float64 reference, and for each output the largest error float32 arithmetic may make. A sum of n float32
 * terms is within n·ε·Σ|term| of the exact sum (ε = 2⁻²⁴), whatever the order (the SIMD lanes' or the JS loop's);
 * so μ is within e_μ = H·ε·mean|x| (+ its rounding) and r within (H/2 + 2)·ε relatively; x̂ = (x − μ)·r then within
 * r·e_μ + (H + 2)·ε·|x̂|. Each bound below adds these through the formula it checks, times 2 for the few roundings of
 * the final multiply-adds; the factor (1 + r·mean|x|) is how much an error in μ weighs against x̂'s own scale.
 */
function reference(c: Case): {
  y: Float64Array;
  dx: Float64Array;
  dgamma: Float64Array;
  dbeta: Float64Array;
  tolY: Float64Array;
  tolDx: Float64Array;
  tolDgamma: Float64Array;
  tolDbeta: Float64Array;
} {
  const { rows, width: H, x, gamma, beta, dy } = c;
  const y = new Float64Array(rows * H);
  const dx = new Float64Array(rows * H);
  const tolY = new Float64Array(rows * H);
  const tolDx = new Float64Array(rows * H);
  const dgamma = new Float64Array(H);
  const dbeta = new Float64Array(H);
  const absDgamma = new Float64Array(H);
  const absDbeta = new Float64Array(H);
  let weight = 0;
  for (let row = 0; row < rows; row++) {
    const o = row * H;
    let mean = 0;
    let meanAbs = 0;
    for (let j = 0; j < H; j++) {
      mean += x[o + j]!;
      meanAbs += Math.abs(x[o + j]!);
    }
    mean /= H;
    meanAbs /= H;
    let variance = 0;
    for (let j = 0; j < H; j++) variance += (x[o + j]! - mean) ** 2;
    const r = 1 / Math.sqrt(variance / H + LN_EPS);
    const muWeight = 1 + r * meanAbs; // an error e_μ in μ moves x̂ by r·e_μ = H·ε·(r·mean|x|) in x̂'s units
    weight = Math.max(weight, muWeight);
    const xhat = (j: number): number => (x[o + j]! - mean) * r;
    let sg = 0;
    let sgx = 0;
    let sgAbs = 0;
    let sgxAbs = 0;
    for (let j = 0; j < H; j++) {
      const g = dy[o + j]! * gamma[j]!;
      sg += g;
      sgx += g * xhat(j);
      sgAbs += Math.abs(g);
      sgxAbs += Math.abs(g * xhat(j));
    }
    const mg = sg / H;
    const mgx = sgx / H;
    for (let j = 0; j < H; j++) {
      const i = o + j;
      const g = dy[i]! * gamma[j]!;
      y[i] = xhat(j) * gamma[j]! + beta[j]!;
      tolY[i] = 2 * (H + 4) * EPS_F32 * muWeight * (Math.abs(gamma[j]!) * (1 + Math.abs(xhat(j))) + Math.abs(beta[j]!));
      dx[i] = r * (g - mg - xhat(j) * mgx);
      // g, mg and x̂·mgx each within (H + 4)·ε of their scale (sums of H terms; x̂'s own error), then times r.
      tolDx[i] =
        2 *
        (H + 4) *
        EPS_F32 *
        muWeight *
        r *
        (Math.abs(g) + sgAbs / H + (1 + Math.abs(xhat(j))) * (Math.abs(mgx) + sgxAbs / H));
      dgamma[j]! += dy[i]! * xhat(j);
      dbeta[j]! += dy[i]!;
      absDgamma[j]! += Math.abs(dy[i]!) * (1 + Math.abs(xhat(j)));
      absDbeta[j]! += Math.abs(dy[i]!);
    }
  }
  // dγ and dβ: sums over the rows (another rows·ε), of terms whose x̂ carries the error above.
  const tolDgamma = absDgamma.map((a) => 2 * (rows + H + 4) * EPS_F32 * weight * a);
  const tolDbeta = absDbeta.map((a) => 2 * (rows + 2) * EPS_F32 * a);
  return { y, dx, dgamma, dbeta, tolY, tolDx, tolDgamma, tolDbeta };
}

function expectWithin(name: string, got: ArrayLike<number>, want: Float64Array, tol: Float64Array): void {
  expect(got.length, name).toBe(want.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const ratio = Math.abs(got[i]! - want[i]!) / tol[i]!;
    if (!(ratio <= worst)) {
      worst = ratio;
      at = i;
    }
  }
  expect(worst, `${name}[${at}]: ${got[at]} against ${want[at]} (bound ${tol[at]})`).toBeLessThanOrEqual(1);
}

const CASES: [string, Case][] = [
  // Off-centre rows (mean 3, spread 8), a width that is not a multiple of 4 (the SIMD tail), a batch-like row count.
  [
    '[300, 10], rows centred at 3',
    (() => {
      const rows = 300,
        width = 10;
      return {
        rows,
        width,
        x: random(rows * width, 1, 8, 3),
        gamma: random(width, 2, 2, 1),
        beta: random(width, 3, 1, 0),
        dy: random(rows * width, 4, 2, 0),
      };
    })(),
  ],
  // The tiny student's width.
  [
    '[256, 192]',
    (() => {
      const rows = 256,
        width = 192;
      return {
        rows,
        width,
        x: random(rows * width, 5, 6, -1),
        gamma: random(width, 6, 2, 1),
        beta: random(width, 7, 1, 0),
        dy: random(rows * width, 8, 2, 0),
      };
    })(),
  ],
];

describe('LayerNorm host kernel: output and gradients against float64', () => {
  for (const backend of ['wasm', 'cpu'] as const) {
    for (const [name, c] of CASES) {
      it(`${backend}${backend === 'wasm' ? ' (SIMD)' : ''}: ${name}`, async () => {
        await selectBackend(backend);
        expect(tf.getKernel(LAYER_NORM_KERNEL, backend), 'our kernel is registered').toBeDefined();
        if (backend === 'wasm') expect(wasmSimd(), 'the SIMD module loaded').not.toBeNull();
        const ref = reference(c);
        const before = tf.memory().numTensors;
        const [y, dx, dgamma, dbeta] = tf.tidy(() => {
          // Through the model's entry point, as rank 3 (layerNorm reshapes to rows itself).
          const x3 = tf.tensor3d(c.x, [c.rows / 2, 2, c.width]);
          const gamma = tf.tensor1d(c.gamma);
          const beta = tf.tensor1d(c.beta);
          const out = layerNorm(x3, gamma, beta, LN_EPS);
          expect(out.shape).toEqual([c.rows / 2, 2, c.width]);
          const grads = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => layerNorm(a, g, b, LN_EPS))(
            [x3, gamma, beta],
            tf.tensor3d(c.dy, x3.shape),
          );
          return [out, ...grads].map((t) => t.dataSync());
        });
        expectWithin('y', y!, ref.y, ref.tolY);
        expectWithin('dx', dx!, ref.dx, ref.tolDx);
        expectWithin('dgamma', dgamma!, ref.dgamma, ref.tolDgamma);
        expectWithin('dbeta', dbeta!, ref.dbeta, ref.tolDbeta);
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  }
  for (const [name, c] of CASES) {
    it(`JS (wasm without SIMD): ${name}`, () => {
      const ref = reference(c);
      const y = new Float32Array(c.rows * c.width);
      const stats = new Float32Array(2 * c.rows);
      layerNormForwardInto(c.x, c.gamma, c.beta, LN_EPS, c.width, y, stats);
      const dx = new Float32Array(c.rows * c.width);
      const dgamma = new Float32Array(c.width).fill(Number.NaN); // written, not accumulated into
      const dbeta = new Float32Array(c.width).fill(Number.NaN);
      layerNormBackwardInto(c.x, c.gamma, stats, c.dy, c.width, dx, dgamma, dbeta);
      expectWithin('y', y, ref.y, ref.tolY);
      expectWithin('dx', dx, ref.dx, ref.tolDx);
      expectWithin('dgamma', dgamma, ref.dgamma, ref.tolDgamma);
      expectWithin('dbeta', dbeta, ref.dbeta, ref.tolDbeta);
    });
  }
});
