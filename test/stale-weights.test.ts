// The in-place invariant (student/kernels/simd.ts): after AdamW rewrites a weight in place, every product sees the
// new values. Run where the trap is: `wasm` without a BLAS library, whose tfjs kernels cache an XNNPACK
// operator with the right operand packed into it under that operand's tensor id (issue #12: training on
// the first weights it saw). Every product shape and transpose the student uses is checked.
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../student/backend.js';
import { wasmSimd } from '../student/kernels/simd.js';
import { AdamW } from '../src/train/adamw.js';
import { maxAbsDiff } from './helpers.js';

process.env['DISTILL_BLAS'] = 'off';

/** A variable that holds its memory alone, as the student's do (so AdamW updates it in place). */
function ownedVariable(shape: number[], seed: number): tf.Variable {
  const t = tf.randomNormal(shape, 0, 1, 'float32', seed);
  const v = tf.variable(t, true);
  t.dispose();
  return v;
}

describe('products after an in-place AdamW update (wasm, no BLAS)', () => {
  beforeAll(async () => {
    const b = await selectBackend('wasm');
    expect(b.matmul).toBe('wasm');
    expect(wasmSimd()).not.toBeNull(); // the in-place SIMD update runs
  });

  const cases: { name: string; x: number[]; w: number[]; ta: boolean; tb: boolean }[] = [
    { name: 'x @ W (dense layers)', x: [64, 32], w: [32, 16], ta: false, tb: false },
    { name: 'x @ Wᵀ (tied projector)', x: [64, 32], w: [16, 32], ta: false, tb: true },
    { name: 'Wᵀ @ x', x: [64, 16], w: [64, 32], ta: true, tb: false },
    { name: 'batch of one [1, M, K] @ [1, K, N]', x: [1, 64, 32], w: [1, 32, 16], ta: false, tb: false },
  ];
  for (const c of cases) {
    it(`${c.name}: the product uses the updated weight`, () => {
      const x = tf.randomNormal(c.x, 0, 1, 'float32', 1);
      const w = ownedVariable(c.w, 2);
      const optimizer = new AdamW([w], [true], { betas: [0.9, 0.98], eps: 1e-6, weightDecay: 0 });
      const product = (): Float32Array =>
        tf.tidy(() => (c.ta ? tf.matMul(w, x, true, false) : tf.matMul(x, w, false, c.tb)).dataSync() as Float32Array);
      const before = product(); // caches whatever the kernel caches for w
      const grad = tf.onesLike(w);
      optimizer.apply([grad], 0.5); // moves every weight by 0.5: the product must change
      const after = product();
      const fresh = tf.tidy(() => {
        const copy = tf.tensor(w.dataSync(), w.shape); // a new tensor id: nothing cached for it
        return (c.ta ? tf.matMul(copy, x, true, false) : tf.matMul(x, copy, false, c.tb)).dataSync() as Float32Array;
      });
      expect(maxAbsDiff(before, fresh)).toBeGreaterThan(0.1);
      expect(maxAbsDiff(after, fresh)).toBeLessThan(1e-5);
      tf.dispose([x, w, grad]);
      optimizer.dispose();
    });
  }
});
