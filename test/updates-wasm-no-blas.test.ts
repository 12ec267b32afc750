// The multi-update PyTorch reference (test/updates.ts) on the path a fresh `npm install` gives: wasm without a
// BLAS library (tfjs's own XNNPACK products, whose operator cache is what the in-place AdamW must not leave
// stale: student/kernels/simd.ts) and with the SIMD passes.
import { expect } from 'vitest';
import { wasmSimd } from '../student/kernels/simd.js';
import { describeReplay, INTERMEDIATE_REFERENCES } from './updates.js';

process.env['DISTILL_BLAS'] = 'off';
describeReplay(
  'wasm without BLAS',
  'wasm',
  undefined,
  (b) => {
    expect(b.matmul).toBe('wasm');
    expect(wasmSimd()).not.toBeNull();
  },
  ['tiny', 'unseen', 'tiny-dropout-mse', ...INTERMEDIATE_REFERENCES],
  'fp32',
  { forms: ['variables', 'on copies'] },
);
