// The multi-update PyTorch reference (test/updates.ts) on wasm without the WebAssembly SIMD passes
// (DISTILL_SIMD=off: the JS passes of the logit losses, full and top-k, GELU and LayerNorm; AdamW in tfjs ops),
// products as installed.
import { expect } from 'vitest';
import { wasmSimd } from '../student/kernels/simd.js';
import { describeReplay, INTERMEDIATE_REFERENCES } from './updates.js';

process.env['DISTILL_SIMD'] = 'off';
describeReplay(
  'wasm without SIMD',
  'wasm',
  undefined,
  () => {
    expect(wasmSimd()).toBeNull();
  },
  ['tiny', 'unseen', 'unseen-topk8', 'tiny-dropout-mse', ...INTERMEDIATE_REFERENCES],
);
