// The multi-update PyTorch reference (test/updates.ts) on tfjs's webgpu backend (in CI: Mesa's software adapter),
// with the teacher on onnxruntime's WebGPU provider as `distill train --backend webgpu` chooses. Skipped only
// when WebGPU is not installed or finds no adapter; any other error fails.
import { expect } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { webgpuUnavailable } from './helpers.js';
import { describeReplay, INTERMEDIATE_REFERENCES } from './updates.js';
import { setAdamWInPlace } from '../student/kernels/adamw-webgpu.js';

describeReplay(
  'webgpu',
  'webgpu',
  await webgpuUnavailable(),
  () => {
    expect(tf.getBackend()).toBe('webgpu');
  },
  ['tiny', 'unseen', 'unseen-topk8', 'tiny-dropout-mse', ...INTERMEDIATE_REFERENCES],
  'fp32',
  { forms: ['variables', 'on copies', 'three programs'], setInPlace: setAdamWInPlace },
);
