// Every product shape and transpose the student uses (and a few more), for the tests of each product kernel:
// describeProductCases compares the engine loadBlas() chose (OpenBLAS, onnxruntime's MLAS) with tfjs's own
// `cpu` kernel on both CPU backends.
import { expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../student/backend.js';
import { productsOnBlas } from '../student/kernels/products.js';
import { originalKernel } from '../student/kernels/registry.js';
import { maxAbsDiff } from './helpers.js';

/** Deterministic values in [-0.5, 0.5). */
export function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}
const size = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);
export const PRODUCT_CASES: { name: string; a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
  { name: '2-D', a: [7, 3], b: [3, 4], ta: false, tb: false },
  { name: '2-D, a transposed', a: [3, 7], b: [3, 4], ta: true, tb: false },
  { name: '2-D, b transposed', a: [7, 3], b: [4, 3], ta: false, tb: true },
  { name: '2-D, both transposed', a: [3, 7], b: [4, 3], ta: true, tb: true },
  { name: 'batched 3-D', a: [5, 7, 3], b: [5, 3, 4], ta: false, tb: false },
  { name: 'batched, b transposed (attention scores)', a: [6, 9, 5], b: [6, 9, 5], ta: false, tb: true },
  { name: 'batch of one broadcast against a batch', a: [1, 7, 3], b: [5, 3, 4], ta: false, tb: false },
  { name: '2-D weight against a batch', a: [5, 7, 3], b: [3, 4], ta: false, tb: false },
  { name: 'rank 4', a: [2, 3, 7, 3], b: [2, 3, 4, 3], ta: false, tb: true },
  { name: 'projector-sized, a transposed', a: [64, 96], b: [64, 40], ta: true, tb: false },
];

/**
 * One test per case: the product on `cpu` and `wasm` (our kernel, on the loaded engine) against tfjs's own cpu
 * kernel. Inner dimensions are at most 96 and values in [-0.5, 0.5), so a float32 sum's rounding stays far below
 * 1e-5 in any summation order.
 */
export function describeProductCases(): void {
  for (const c of PRODUCT_CASES) {
    it(`${c.name}: equals tfjs's own cpu kernel on wasm and cpu`, async () => {
      const a = random(size(c.a), c.a.length * 31 + 1);
      const b = random(size(c.b), c.b.length * 17 + 2);
      await selectBackend('cpu');
      expect(productsOnBlas('cpu')).toBe(true);
      const original = originalKernel('cpu', 'BatchMatMul')!;
      const expected = tf.tidy(() => {
        const info = original({
          inputs: { a: tf.tensor(a, c.a), b: tf.tensor(b, c.b) },
          backend: tf.backend(),
          attrs: { transposeA: c.ta, transposeB: c.tb },
        } as never) as tf.TensorInfo;
        const t = tf.engine().makeTensorFromTensorInfo(info);
        return { shape: t.shape, values: Float32Array.from(t.dataSync() as Float32Array) };
      });
      for (const backend of ['cpu', 'wasm'] as const) {
        await selectBackend(backend);
        expect(productsOnBlas(backend)).toBe(true);
        const got = tf.tidy(() => {
          const t = tf.matMul(tf.tensor(a, c.a), tf.tensor(b, c.b), c.ta, c.tb);
          return { shape: t.shape, values: Float32Array.from(t.dataSync() as Float32Array) };
        });
        expect(got.shape, backend).toEqual(expected.shape);
        expect(maxAbsDiff(got.values, expected.values), backend).toBeLessThan(1e-5);
      }
      expect(expected.values.some((v) => Math.abs(v) > 0.01)).toBe(true);
    });
  }
}
