// The golden step on `wasm` as a machine without OpenBLAS runs it: tfjs's own matrix products (with the
// transposed copies the plain-product path makes) and the WebAssembly SIMD loss pass on them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { readEncoderConfig } from '../src/core/model-dir.js';
import { selectBackend } from '../student/backend.js';
import { productsOnBlas } from '../student/kernels/products.js';
import { wasmSimd } from '../student/kernels/simd.js';
import { defaultStudentLayers, initStudentFromTeacher } from '../student/init.js';
import type { DistilBertStudent } from '../student/model.js';
import { TINY, maxAbsDiff } from './helpers.js';
import { PRODUCT_CASES } from './product-cases.js';
import { expectGoldenGradients, goldenGradients } from './golden.js';

process.env['DISTILL_BLAS'] = 'off';

describe('student on wasm without a BLAS library', () => {
  let student: DistilBertStudent;
  beforeAll(async () => {
    const choice = await selectBackend('wasm');
    expect(choice.matmul).toBe('wasm');
    student = initStudentFromTeacher(TINY, readEncoderConfig(TINY), defaultStudentLayers(4), 0);
  });
  afterAll(() => student.dispose());

  it("uses tfjs's products and the SIMD loss pass", () => {
    expect(tf.getBackend()).toBe('wasm');
    expect(productsOnBlas()).toBe(false);
    expect(wasmSimd()).not.toBeNull();
  });

  for (const c of PRODUCT_CASES) {
    it(`products on XNNPACK, ${c.name}: equal tfjs's cpu kernel`, async () => {
      const a = Float32Array.from({ length: c.a.reduce((x, y) => x * y, 1) }, (_, i) => Math.sin(i * 1.3 + 0.2));
      const b = Float32Array.from({ length: c.b.reduce((x, y) => x * y, 1) }, (_, i) => Math.cos(i * 0.7 + 0.1));
      const product = async (backend: 'wasm' | 'cpu'): Promise<{ shape: number[]; values: Float32Array }> => {
        await selectBackend(backend);
        return tf.tidy(() => {
          const t = tf.matMul(tf.tensor(a, c.a), tf.tensor(b, c.b), c.ta, c.tb);
          return { shape: t.shape, values: Float32Array.from(t.dataSync() as Float32Array) };
        });
      };
      const before = tf.memory().numTensors;
      const onCpu = await product('cpu');
      const onWasm = await product('wasm');
      expect(onWasm.shape).toEqual(onCpu.shape);
      expect(maxAbsDiff(onWasm.values, onCpu.values)).toBeLessThan(1e-5);
      expect(tf.memory().numTensors).toBe(before); // the transposed copies are freed
    });
  }

  for (const fused of [true, false]) {
    it(`gives PyTorch's loss and gradient norms (${fused ? 'SIMD loss pass' : 'tfjs ops'})`, () => {
      expectGoldenGradients(goldenGradients(student, false, fused));
    });
  }
});
