// The multi-update PyTorch reference (test/updates.ts) on the default path with a BLAS installed: wasm, its
// products on OpenBLAS, the WebAssembly SIMD passes (loss pass, GELU, in-place AdamW).
import { expect } from 'vitest';
import { loadBlas } from '../student/kernels/blas.js';
import { wasmSimd } from '../student/kernels/simd.js';
import { describeReplay } from './updates.js';

const skip = loadBlas() ? undefined : 'no BLAS library loads (DISTILL_BLAS=off, or apt-get install libopenblas0-pthread): updates-wasm-no-blas.test.ts covers this machine\'s path';
describeReplay('wasm + BLAS + SIMD', 'wasm', skip, (b) => {
  expect(b.matmul).not.toBe('wasm');
  expect(wasmSimd()).not.toBeNull();
});
