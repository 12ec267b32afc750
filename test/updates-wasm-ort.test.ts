// The multi-update PyTorch reference (test/updates.ts) on the fresh-install path: wasm with its products on
// onnxruntime's MLAS (no system BLAS; forced with DISTILL_BLAS=ort), and the WebAssembly SIMD passes.
import { expect } from 'vitest';
import { wasmSimd } from '../student/kernels/simd.js';
import { describeReplay, INTERMEDIATE_REFERENCES } from './updates.js';

process.env['DISTILL_BLAS'] = 'ort';
describeReplay('wasm + onnxruntime MLAS + SIMD', 'wasm', undefined, (b) => {
  expect(b.matmul).toMatch(/^onnxruntime \d+\.\d+\.\d+ MLAS/);
  expect(wasmSimd()).not.toBeNull();
}, ['tiny', 'unseen', ...INTERMEDIATE_REFERENCES]);
