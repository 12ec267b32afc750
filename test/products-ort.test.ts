// The fresh-install product engine: onnxruntime's MLAS through its C API (student/kernels/ort-gemm.ts),
// forced here with DISTILL_BLAS=ort even where OpenBLAS is installed. Every product shape the student uses
// against tfjs's own cpu kernel; the multi-update PyTorch reference on this path is updates-wasm-ort.test.ts.
import { describe, expect, it } from 'vitest';
import { loadBlas } from '../student/kernels/blas.js';
import { describeProductCases } from './product-cases.js';
import { runCli } from './cli-helpers.js';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO, TINY } from './helpers.js';

process.env['DISTILL_BLAS'] = 'ort';

describe("BatchMatMul on onnxruntime's MLAS", () => {
  it('is the engine DISTILL_BLAS=ort loads, named as onnxruntime with its version and threads', () => {
    const engine = loadBlas()!;
    expect(engine.description).toMatch(/^onnxruntime \d+\.\d+\.\d+ MLAS$/);
    expect(engine.library).toMatch(/onnxruntime/);
    expect(engine.threads).toBeGreaterThanOrEqual(1);
  });

  describeProductCases();

  it(
    'refuses arguments it does not implement (alpha ≠ 1, beta ≠ 0, ' +
      'strided operands) instead of computing something else',
    () => {
      const { sgemm } = loadBlas()!;
      const a = new Float32Array(6);
      const c = new Float32Array(4);
      expect(() => sgemm(101, 111, 111, 2, 2, 3, 2, a, 3, a, 2, 0, c, 2)).toThrow(/alpha 1 and beta 0 only|alpha 2/);
      expect(() => sgemm(101, 111, 111, 2, 2, 3, 1, a, 4, a, 2, 0, c, 2)).toThrow(/lda 4/);
    },
  );

  it(
    'works in a fresh process that starts the wasm backend first (the engine loads before it; a first session made ' +
      'after tfjs-wasm and wabt crashed)',
    () => {
      const script = [
        `const { selectBackend } = await import(${JSON.stringify(join(REPO, 'dist', 'student', 'backend.js'))});`,
        'const choice = await selectBackend("wasm");',
        `const { loadBlas } = await import(${JSON.stringify(join(REPO, 'dist', 'student', 'kernels', 'blas.js'))});`,
        'const c = new Float32Array(4);',
        'loadBlas().sgemm(101, 111, 111, 2, 2, 3, 1, Float32Array.from([1, 2, ' +
          '3, 4, 5, 6]), 3, Float32Array.from([1, 0, 0, 1, 1, 1]), 2, 0, c, 2);',
        'console.log(JSON.stringify({ matmul: choice.matmul, backend: choice.name, values: Array.from(c) }));',
      ].join('\n');
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        cwd: REPO,
        encoding: 'utf8',
        env: { ...process.env, DISTILL_BLAS: 'ort' },
      });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim()) as { matmul: string; backend: string; values: number[] };
      expect(out.backend).toBe('wasm');
      expect(out.matmul).toMatch(/^onnxruntime /);
      expect(out.values).toEqual([4, 5, 10, 11]); // [1 2 3; 4 5 6] · [1 0; 0 1; 1 1]
    },
  );

  it(
    'works on one thread in a process that imports nothing else, on a product of 16M outputs (it crashed there ' +
      'before the binding was loaded first)',
    () => {
      // [4096, 192] · [192, 4096] with every value 1/2 · 1/4: each output is 192/8 = 24 exactly in float32.
      const script = [
        `const { loadOrtGemm } = await ` +
          `import(${JSON.stringify(join(REPO, 'dist', 'student', 'kernels', 'ort-gemm.js'))});`,
        'const g = loadOrtGemm(1);',
        'const M = 4096, N = 4096, K = 192;',
        'const a = new Float32Array(M * K).fill(0.5), b = new Float32Array(K * N).fill(0.25);',
        'const c = new Float32Array(M * N);',
        'for (let i = 0; i < 3; i++) g.sgemm(101, 111, 111, M, N, K, 1, a, K, b, N, 0, c, N);',
        'console.log(JSON.stringify({ threads: g.threads, wrong: c.filter((v) => v !== 24).length }));',
      ].join('\n');
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO, encoding: 'utf8' });
      expect(r.status, `${r.stderr} (signal ${r.signal})`).toBe(0);
      expect(JSON.parse(r.stdout.trim())).toEqual({ threads: 1, wrong: 0 });
    },
  );

  it('distill bench names it as the engine of the products', () => {
    const r = runCli(['bench', '--teacher', TINY, '--batch', '2', '--seq', '16', '--steps', '1', '--backend', 'wasm'], {
      env: { DISTILL_BLAS: 'ort' },
    });
    expect(r.status, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { matmul: string }).matmul).toMatch(
      /^onnxruntime \d+\.\d+\.\d+ MLAS, \d+ threads$/,
    );
  });
});
