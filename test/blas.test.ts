// The native-BLAS matrix products (student/kernels/blas.ts) and the other kernels the wasm backend gets from us
// (student/kernels/wasm-cpu.ts: Identity and Cast sharing memory, GatherV2 by rows, Sum over leading axes;
// student/kernels/gelu.ts), each against tfjs's own `cpu` kernels or the tfjs-op formula.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../student/backend.js';
import { blasColumnSums, loadBlas, productGeometry } from '../student/kernels/blas.js';
import { describeProductCases } from './product-cases.js';
import { erf } from '../student/kernels/gelu.js';
import { geluOps } from '../student/ops/gelu.js';
import { gelu } from '../student/model.js';
import { TINY, canRun, maxAbsDiff } from './helpers.js';
import { runCli } from './cli-helpers.js';

import { random } from './product-cases.js';

const blas = loadBlas();
// Unset DISTILL_BLAS takes a system BLAS when one loads: in CI's first pass that must be OpenBLAS (.ci/run installs
// it), not onnxruntime's MLAS standing in for a missing one.
const wanted =
  process.env['DISTILL_BLAS'] === undefined && process.env['CI'] === 'true' && !/OpenBLAS/.test(blas?.description ?? '')
    ? `the product engine is ${blas?.description ?? 'none'}, not OpenBLAS (apt-get install libopenblas0-pthread)`
    : undefined;
const haveBlas = canRun(
  'blas.test.ts',
  blas ? wanted : "no product engine loads (libopenblas.so.0 or onnxruntime's MLAS)",
);

describe.runIf(haveBlas)(`BatchMatMul on the product engine (${blas?.description ?? 'none'})`, () => {
  describeProductCases();

  it('gradients through transposed products equal those of the plain formulation', async () => {
    await selectBackend('wasm');
    const a = random(6 * 5, 3);
    const b = random(4 * 5, 4);
    const [ga, gb] = tf.tidy(() => {
      const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, y, false, true))));
      return g([tf.tensor2d(a, [6, 5]), tf.tensor2d(b, [4, 5])]).map((t) =>
        Float32Array.from(t.dataSync() as Float32Array),
      );
    });
    // d/dA Σ (A Bᵀ)² = 2 (A Bᵀ) B, d/dB = 2 (A Bᵀ)ᵀ A, computed by hand.
    const prod = new Float64Array(6 * 4);
    for (let i = 0; i < 6; i++)
      for (let j = 0; j < 4; j++) for (let k = 0; k < 5; k++) prod[i * 4 + j]! += a[i * 5 + k]! * b[j * 5 + k]!;
    const wantA = new Float64Array(6 * 5);
    const wantB = new Float64Array(4 * 5);
    for (let i = 0; i < 6; i++)
      for (let j = 0; j < 4; j++)
        for (let k = 0; k < 5; k++) {
          wantA[i * 5 + k]! += 2 * prod[i * 4 + j]! * b[j * 5 + k]!;
          wantB[j * 5 + k]! += 2 * prod[i * 4 + j]! * a[i * 5 + k]!;
        }
    expect(maxAbsDiff(ga!, wantA)).toBeLessThan(1e-5);
    expect(maxAbsDiff(gb!, wantB)).toBeLessThan(1e-5);
  });

  it('column sums equal a float64 loop', () => {
    const x = random(37 * 11, 9);
    const out = new Float32Array(11);
    expect(blasColumnSums(x, 37, 11, out)).toBe(true);
    const want = new Float64Array(11);
    for (let r = 0; r < 37; r++) for (let c = 0; c < 11; c++) want[c]! += x[r * 11 + c]!;
    expect(maxAbsDiff(out, want)).toBeLessThan(1e-5);
  });
});

describe('product geometry', () => {
  it('broadcasts a batch of one and names both shapes when inner dimensions differ', () => {
    expect(productGeometry([1, 7, 3], [5, 3, 4], false, false)).toMatchObject({
      batch: 5,
      batchA: 1,
      batchB: 5,
      M: 7,
      K: 3,
      N: 4,
      outShape: [5, 7, 4],
    });
    expect(productGeometry([2, 7, 3], [3, 3, 4], false, false)).toBeNull();
    expect(() => productGeometry([7, 3], [4, 3], false, false)).toThrow(
      /inner dimensions differ \(3 in \[7, 3\] and 4 in \[4, 3\]\)/,
    );
  });
});

describe('wasm kernels that share memory or copy rows', () => {
  it('a clone (Identity) shares memory but keeps its values when the variable is assigned and disposed', async () => {
    await selectBackend('wasm');
    const v = tf.variable(tf.tensor1d([1, 2, 3]));
    const saved = tf.engine().runKernel('Identity', { x: v }) as tf.Tensor;
    const cast = tf.cast(saved, 'float32');
    v.assign(tf.tensor1d([4, 5, 6]));
    expect(Array.from(v.dataSync())).toEqual([4, 5, 6]);
    v.dispose();
    expect(Array.from(saved.dataSync())).toEqual([1, 2, 3]);
    expect(Array.from(cast.dataSync())).toEqual([1, 2, 3]);
    const before = tf.memory().numTensors;
    tf.dispose([saved, cast]);
    expect(tf.memory().numTensors).toBe(before - 2);
  });

  it('gather along axis 0 and sums over leading axes equal the cpu backend', async () => {
    const x = random(9 * 4 * 3, 11);
    const ids = Int32Array.from([8, 0, 3, 3, 7]);
    const run = async (backend: 'wasm' | 'cpu'): Promise<Float32Array[]> => {
      await selectBackend(backend);
      return tf.tidy(() => {
        const t = tf.tensor3d(x, [9, 4, 3]);
        return [
          tf.gather(t, tf.tensor1d(ids, 'int32')),
          tf.gather(t, tf.tensor2d(ids.subarray(0, 4), [2, 2], 'int32')),
          tf.gather(t, tf.tensor1d([2, 0], 'int32'), 1), // another axis: tfjs's kernel
          tf.sum(t, 0),
          tf.sum(t, [0, 1]),
          tf.sum(t, 0, true),
          tf.sum(t, -1),
          tf.sum(t),
        ].map((r) => Float32Array.from(r.dataSync() as Float32Array));
      });
    };
    const onWasm = await run('wasm');
    const onCpu = await run('cpu');
    onWasm.forEach((w, i) => expect(maxAbsDiff(w, onCpu[i]!), `case ${i}`).toBeLessThan(1e-5));
    await selectBackend('wasm');
    expect(() => tf.gather(tf.tensor2d([1, 2], [2, 1]), tf.tensor1d([2], 'int32'))).toThrow(
      /index value 2 is not in \[0, 1\]/,
    );
  });
});

describe('GELU', () => {
  it('erf is within 1e-7 of reference values', () => {
    // erf at these points, from Python's math.erf.
    const points: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [-1.7, -0.9837904585907746],
      [2.5, 0.999593047982555],
      [3.9, 0.9999999652077514],
      [6, 1],
    ];
    for (const [x, want] of points) expect(Math.abs(erf(x) - want), `erf(${x})`).toBeLessThan(1e-7);
  });

  for (const backend of ['wasm', 'cpu'] as const) {
    it(`${backend}: the one-pass kernels equal the tfjs-op formula, value and gradient`, async () => {
      await selectBackend(backend);
      const x = Float32Array.from(random(3000, 5), (v) => v * 12); // [-6, 6]
      const [y, g, yRef, gRef] = tf.tidy(() => {
        const t = tf.tensor1d(x);
        const w = tf.tensor1d(random(3000, 6));
        const f = (op: (t: tf.Tensor) => tf.Tensor) => tf.grad((u: tf.Tensor) => tf.sum(tf.mul(op(u), w)));
        return [gelu(t), f(gelu)(t), geluOps(t), f(geluOps)(t)].map((r) =>
          Float32Array.from(r.dataSync() as Float32Array),
        );
      });
      expect(tf.getKernel('DistillGelu', backend)).toBeDefined();
      expect(maxAbsDiff(y!, yRef!)).toBeLessThan(2e-6);
      expect(maxAbsDiff(g!, gRef!)).toBeLessThan(2e-6);
      expect(y!.some((v) => v > 5)).toBe(true);
    });
  }
});

describe('choosing the BLAS library', () => {
  it('names the library and the fix when DISTILL_BLAS cannot be loaded', () => {
    const r = runCli(['bench', '--teacher', TINY, '--batch', '1', '--seq', '8', '--steps', '1'], {
      env: { DISTILL_BLAS: '/nonexistent/libblas.so' },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/DISTILL_BLAS=\/nonexistent\/libblas\.so: the library cannot be loaded/);
    expect(r.stderr).toMatch(/hint: .*DISTILL_BLAS=off/);
  });

  it.runIf(haveBlas)('rejects a thread count that is not a whole number', () => {
    const r = runCli(['bench', '--teacher', TINY, '--batch', '1', '--seq', '8', '--steps', '1'], {
      env: { DISTILL_BLAS_THREADS: 'many' },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/DISTILL_BLAS_THREADS=many is not a whole number of threads/);
  });
});
