// The multi-update PyTorch reference (test/updates.ts) on the default path: wasm, its products on the engine
// loadBlas() picks (OpenBLAS where installed, else onnxruntime's MLAS), the WebAssembly SIMD passes (loss pass,
// GELU, in-place AdamW). updates-wasm-ort.test.ts forces MLAS; updates-wasm-no-blas.test.ts tfjs's own kernels.
import { expect } from 'vitest';
import { loadBlas } from '../student/kernels/blas.js';
import { wasmSimd } from '../student/kernels/simd.js';
import { describeReplay, INTERMEDIATE_REFERENCES } from './updates.js';

const skip = loadBlas()
  ? undefined
  : 'no product engine loads (DISTILL_BLAS=off): updates-wasm-no-blas.test.ts covers that path';
describeReplay(
  'wasm + product engine + SIMD',
  'wasm',
  skip,
  (b) => {
    expect(b.matmul).not.toBe('wasm');
    expect(wasmSimd()).not.toBeNull();
  },
  ['tiny', 'unseen', 'unseen-topk8', 'tiny-dropout-mse', ...INTERMEDIATE_REFERENCES],
  'fp32',
  { forms: ['variables', 'on copies'] },
);
