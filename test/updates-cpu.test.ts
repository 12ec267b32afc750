// The multi-update PyTorch reference (test/updates.ts) on tfjs's pure-JS `cpu` backend (products on the BLAS
// where one is installed, as `distill train --backend cpu` runs them).
import { expect } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { describeReplay, INTERMEDIATE_REFERENCES } from './updates.js';

describeReplay(
  'cpu',
  'cpu',
  undefined,
  () => {
    expect(tf.getBackend()).toBe('cpu');
  },
  ['tiny', 'unseen', 'unseen-topk8', 'tiny-dropout-mse', ...INTERMEDIATE_REFERENCES],
);
