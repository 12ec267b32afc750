// The multi-update PyTorch reference (test/updates.ts) on wasm without the WebAssembly SIMD passes
// (DISTILL_SIMD=off: the JS loss pass, tfjs-op GELU and AdamW), products as installed.
import { expect } from 'vitest';
import { wasmSimd } from '../student/kernels/simd.js';
import { describeReplay, INTERMEDIATE_REFERENCES } from './updates.js';

process.env['DISTILL_SIMD'] = 'off';
describeReplay('wasm without SIMD', 'wasm', undefined, () => {
  expect(wasmSimd()).toBeNull();
}, ['tiny', 'unseen', ...INTERMEDIATE_REFERENCES]);
