// `npm run test:fast`: the unit tests, for the inner loop: the maths of the losses and the optimizer, the kernels on
// each backend, the student's golden step and gradients, safetensors, the tokenizer, the teacher and its soft targets,
// the config's checks, the docs' claims and the progress line. No training run; under a minute on 2 cores. `npm test`
// is the whole suite.
import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// The base config's settings with this list instead of its include (mergeConfig would add the two lists together).
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: [
      'test/adamw.test.ts',
      'test/distillation-topk.test.ts',
      'test/intermediate-losses.test.ts',
      'test/kernels.test.ts',
      'test/layer-norm.test.ts',
      'test/logit-losses.test.ts',
      'test/loss-scale.test.ts',
      'test/products-ort.test.ts',
      'test/progress.test.ts',
      'test/qa.test.ts',
      'test/safetensors.test.ts',
      'test/span-metrics.test.ts',
      'test/simd.test.ts',
      'test/stale-weights.test.ts',
      'test/tokenizer.test.ts',
      'test/wasm-heap.test.ts',
      'test/wasm-heap-wrap.test.ts',
      'test/config.test.ts',
      'test/docs.test.ts',
      'test/blas.test.ts',
      'test/dropout.test.ts',
      'test/student.test.ts',
      'test/teacher.test.ts',
    ],
  },
});
