// DistillDropout (student/kernels/dropout.ts): the mask is a hash of the seed and the element's index, the same bits
// on every backend; the kept elements are x · fround(1/keep), the dropped x · 0; the gradient is the same mask on dy.
// The backends' outputs are compared bit for bit with the JS definition (`kept`), which is itself checked for the
// statistics a dropout mask must have.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { selectBackend } from '../student/backend.js';
import { wasmSimd } from '../student/kernels/simd.js';
import { dropoutKey, keepThreshold, kept } from '../student/kernels/dropout.js';
import { DROPOUT_KERNEL, dropout } from '../student/ops/dropout.js';
import { canRun, webgpuUnavailable } from './helpers.js';
import { random as randomUnit } from './product-cases.js';

/** Deterministic values in [-4, 4). */
const random = (n: number, seed: number): Float32Array => randomUnit(n, seed).map((v) => v * 8);

/** The expected output, element by element, from the definition. */
function expected(x: Float32Array, rate: number, seed: number): Float32Array {
  const key = dropoutKey(seed);
  const threshold = keepThreshold(rate);
  const scale = Math.fround(1 / (1 - rate));
  return x.map((v, i) => v * (kept(i, key, threshold) ? scale : 0));
}

/** Bitwise equality of two float32 arrays (NaN equal to NaN, −0 distinct from +0). */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  const ia = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ib = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return ia.length === ib.length && ia.every((v, i) => v === ib[i]);
}

describe('the dropout mask', () => {
  // n = 2²⁰ elements at keep q = 0.9: the number kept is Binomial(n, q) if the hash behaves like independent draws,
  // σ = √(n q (1 − q)) ≈ 307; a biased or correlated hash moves the counts below by many σ. Bounds: 6σ.
  const n = 1 << 20;
  const q = keepThreshold(0.1) / 2 ** 24;
  const sixSigma = (p: number): number => 6 * Math.sqrt(n * p * (1 - p));

  it("keeps a share 1 − rate of the elements, independently of the neighbour and of another seed's mask", () => {
    expect(q).toBeCloseTo(0.9, 7); // round(0.9 · 2²⁴) / 2²⁴
    const threshold = keepThreshold(0.1);
    const a = dropoutKey(12345);
    const b = dropoutKey(12346);
    let keptA = 0;
    let bothNeighbours = 0;
    let bothSeeds = 0;
    let prev = false;
    for (let i = 0; i < n; i++) {
      const ka = kept(i, a, threshold);
      const kb = kept(i, b, threshold);
      if (ka) keptA++;
      if (ka && prev) bothNeighbours++;
      if (ka && kb) bothSeeds++;
      prev = ka;
    }
    expect(Math.abs(keptA - n * q)).toBeLessThan(sixSigma(q));
    expect(Math.abs(bothNeighbours - n * q * q)).toBeLessThan(sixSigma(q * q));
    expect(Math.abs(bothSeeds - n * q * q)).toBeLessThan(sixSigma(q * q));
    // At rate 0.5 too (the hash's top bits are what the threshold reads).
    const half = keepThreshold(0.5);
    let keptHalf = 0;
    for (let i = 0; i < n; i++) if (kept(i, a, half)) keptHalf++;
    expect(Math.abs(keptHalf - n / 2)).toBeLessThan(sixSigma(0.5));
  });
});

const backends: ('cpu' | 'wasm' | 'webgpu')[] = ['cpu', 'wasm'];
if (canRun('dropout.test.ts (its webgpu cases)', await webgpuUnavailable())) backends.push('webgpu');

describe.each(backends)('DistillDropout on %s', (backend) => {
  it(
    "gives the definition's output bit for bit (SIMD tail lengths, " +
      'NaN and −0 kept), the same for a seed, another for another',
    async () => {
      await selectBackend(backend);
      expect(tf.getKernel(DROPOUT_KERNEL, backend), 'the kernel is registered').toBeDefined();
      if (backend === 'wasm') expect(wasmSimd(), 'the SIMD module loaded').not.toBeNull();
      for (const [rows, cols] of [
        [1003, 7],
        [64, 192],
        [1, 3],
      ] as const) {
        const x = random(rows * cols, rows + cols);
        x[5 % x.length] = NaN; // a NaN stays NaN whether kept or dropped (x · 0), as in PyTorch
        const input = tf.tensor2d(x, [rows, cols]);
        for (const [rate, seed] of [
          [0.1, 7],
          [0.1, 0xfffffff0],
          [0.5, 7],
        ] as const) {
          const y = dropout(input, rate, seed);
          const got = Float32Array.from(await y.data());
          y.dispose();
          expect(sameBits(got, expected(x, rate, seed)), `${rows}×${cols} rate ${rate} seed ${seed}`).toBe(true);
        }
        if (rows * cols > 3) {
          const [ya, yb] = [dropout(input, 0.1, 1), dropout(input, 0.1, 2)];
          const [a, b] = [Float32Array.from(await ya.data()), Float32Array.from(await yb.data())];
          tf.dispose([ya, yb]);
          expect(sameBits(a, b), 'another seed, another mask').toBe(false);
        }
        input.dispose();
      }
    },
  );

  it('its gradient is the same mask on dy: ∂ Σ w·dropout(x) / ∂x = w · (kept ? 1/keep : 0), exactly', async () => {
    await selectBackend(backend);
    const x = random(1003 * 7, 3);
    const w = random(1003 * 7, 4);
    const gradient = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(dropout(input, 0.1, 99), tf.tensor2d(w, [1003, 7]))));
    const g = gradient(tf.tensor2d(x, [1003, 7]));
    const got = Float32Array.from(await g.data());
    g.dispose();
    expect(sameBits(got, expected(w, 0.1, 99))).toBe(true);
  });
});
