import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // tfjs backends and onnxruntime sessions are process-wide: one file at a time, each in its own fork.
    pool: 'forks',
    fileParallelism: false,
  },
});
