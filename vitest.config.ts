import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    // The tests' scratch folders live under one folder per run, removed at the end (test/global-setup.ts).
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // tfjs backends and onnxruntime sessions are process-wide: one file at a time, each in its own fork.
    pool: 'forks',
    fileParallelism: false,
  },
});
