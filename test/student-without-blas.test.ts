// The golden step on `wasm` as a machine without OpenBLAS runs it: tfjs's own matrix products (with the
// transposed copies the plain-product path makes) and the WebAssembly SIMD loss pass on them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { readEncoderConfig } from '../src/model-dir.js';
import { selectBackend } from '../student/backend.js';
import { productsOnBlas } from '../student/blas.js';
import { wasmSimd } from '../student/simd.js';
import { defaultStudentLayers, initStudentFromTeacher } from '../student/init.js';
import type { DistilBertStudent } from '../student/model.js';
import { TINY } from './helpers.js';
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

  it('uses tfjs\'s products and the SIMD loss pass', () => {
    expect(tf.getBackend()).toBe('wasm');
    expect(productsOnBlas()).toBe(false);
    expect(wasmSimd()).not.toBeNull();
  });

  for (const fused of [true, false]) {
    it(`gives PyTorch's loss and gradient norms (${fused ? 'SIMD loss pass' : 'tfjs ops'})`, () => {
      expectGoldenGradients(goldenGradients(student, false, fused));
    });
  }
});
