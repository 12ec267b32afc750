// Precision "fp16-mixed" on webgpu (student/kernels/matmul-webgpu.ts), on Mesa's software adapter in CI (it offers
// shader-f16): the product kernel against f16-rounded operands summed in float64, and 8 whole updates against
// PyTorch with the same arithmetic (test/fixtures/updates/tiny-f16, make_update_references.py run_half) and
// against the fp32 run of the same batches (tiny). Skipped only when WebGPU is not installed or finds no adapter.
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { canRun, relDiff, webgpuUnavailable, weightDifference } from './helpers.js';
import { expectMatchesReference, referenceJson, referenceWeights, replay } from './updates.js';
import { selectBackend, type BackendChoice } from '../student/backend.js';
import { halfProductsOn, setHalfProducts, setTiledProducts } from '../student/kernels/matmul-webgpu.js';
import { HalfPrecisionOverflow, UpdateStep } from '../src/train/step.js';
import { AdamW } from '../src/train/adamw.js';
import { LossScale } from '../src/train/loss-scale.js';
import { DistillError } from '../src/core/errors.js';
import { loadConfig, validateConfig } from '../src/config.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { train } from '../src/train/loop.js';
import { latestCheckpoint } from '../src/train/checkpoint.js';
import { tinyRunConfig } from './helpers.js';

/** x rounded to the nearest f16 (ties to even; subnormals kept; beyond 65504: Infinity), as a number. */
function toHalf(x: number): number {
  const a = Math.abs(x);
  if (a === 0 || !Number.isFinite(a)) return x;
  const e = Math.max(Math.floor(Math.log2(a)), -14); // f16's smallest normal exponent; below it a fixed step of 2^-24
  const step = 2 ** (e - 10); // 10 fraction bits
  const r = a / step; // exact: a power-of-2 division
  let n = Math.floor(r);
  const frac = r - n;
  if (frac > 0.5 || (frac === 0.5 && n % 2 === 1)) n += 1;
  const h = n * step;
  return Math.sign(x) * (h > 65504 ? Infinity : h);
}

/**
 * op(a) @ op(b) over a batch, as flat row-major arrays:
 * with f16-rounded operands, exact products, float64 sums; and Σ|a·b|.
 */
function reference(
  a: Float32Array,
  b: Float32Array,
  batch: [number, number],
  M: number,
  K: number,
  N: number,
  ta: boolean,
  tb: boolean,
  half: boolean,
): { out: Float64Array; magnitude: Float64Array } {
  const r = half ? toHalf : (x: number) => x;
  const out = new Float64Array(Math.max(batch[0], batch[1]) * M * N);
  const magnitude = new Float64Array(out.length);
  for (let g = 0; g < Math.max(batch[0], batch[1]); g++) {
    const ga = batch[0] === 1 ? 0 : g;
    const gb = batch[1] === 1 ? 0 : g;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        let mag = 0;
        for (let k = 0; k < K; k++) {
          const av = r(a[ga * M * K + (ta ? k * M + m : m * K + k)]!);
          const bv = r(b[gb * K * N + (tb ? n * K + k : k * N + n)]!);
          s += av * bv;
          mag += Math.abs(av * bv);
        }
        out[g * M * N + m * N + n] = s;
        magnitude[g * M * N + m * N + n] = mag;
      }
    }
  }
  return { out, magnitude };
}

const haveWebgpu = canRun('updates-webgpu-f16.test.ts', await webgpuUnavailable());

describe.runIf(haveWebgpu)('precision fp16-mixed on webgpu', () => {
  let backend: BackendChoice;
  beforeAll(async () => {
    backend = await selectBackend('webgpu', { precision: 'fp16-mixed' });
  });

  it("toHalf (the test's own f16 rounding) is right on known values", () => {
    expect(toHalf(1 + 2 ** -11)).toBe(1); // a tie: to even
    expect(toHalf(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9); // a tie: to even (up)
    expect(toHalf(1 + 2 ** -11 + 2 ** -20)).toBe(1 + 2 ** -10);
    expect(toHalf(65504)).toBe(65504);
    expect(toHalf(70000)).toBe(Infinity);
    expect(toHalf(2 ** -24)).toBe(2 ** -24); // the smallest subnormal
    expect(toHalf(-0.1)).toBe(-0.0999755859375);
  });

  // [batchA, batchB], M, K, N, transposeA, transposeB: sizes off the 64 × 64 × 16 and 128 × 128 × 8 tiles, one
  // operand broadcast, each transpose on each tile size.
  const cases: [[number, number], number, number, number, boolean, boolean][] = [
    [[3, 3], 70, 33, 90, false, false],
    [[3, 3], 65, 17, 64, true, false],
    [[2, 2], 5, 100, 129, false, true],
    [[2, 2], 64, 48, 7, true, true],
    [[4, 1], 31, 40, 50, false, false],
    [[1, 4], 1, 200, 3, false, true],
    [[2, 2], 130, 40, 200, false, false],
    [[2, 1], 128, 9, 128, true, false],
    [[1, 3], 257, 24, 129, false, true],
    [[1, 1], 200, 300, 150, true, true],
  ];

  /**
   * Every case through tf.matMul against float64 sums of the operands (f16-rounded when `half`): within the
   * float32 summation bound. Returns how many outputs differ from the fp32 products by more than 4 bounds, of how many.
   */
  async function checkProducts(half: boolean): Promise<{ beyondFp32: number; outputs: number }> {
    let seed = 11;
    let beyondFp32 = 0;
    let outputs = 0;
    for (const [batch, M, K, N, ta, tb] of cases) {
      const aShape = [batch[0], ...(ta ? [K, M] : [M, K])];
      const bShape = [batch[1], ...(tb ? [N, K] : [K, N])];
      const a = tf.randomNormal(aShape, 0, 1, 'float32', seed++);
      const b = tf.randomNormal(bShape, 0, 3, 'float32', seed++);
      const y = tf.matMul(a, b, ta, tb);
      expect(y.shape).toEqual([Math.max(...batch), M, N]);
      const got = await y.data();
      const av = (await a.data()) as Float32Array;
      const bv = (await b.data()) as Float32Array;
      const want = reference(av, bv, batch, M, K, N, ta, tb, half);
      const exact = half ? reference(av, bv, batch, M, K, N, ta, tb, false) : want;
      // The products of f16 values are exact in float32 (22 significant bits), those of float32 values carry one
      // rounding each (2⁻²⁴ relative, inside γ_K's K terms): what remains is the float32 summation,
      // |error| ≤ γ_K·Σ|a·b| with γ_K = K·2⁻²⁴/(1 − K·2⁻²⁴) (Higham, sequential sums, products rounded included
      // by taking γ_{K+1}), plus the one rounding of the result (2⁻²⁴ of it).
      const gamma = ((K + 1) * 2 ** -24) / (1 - (K + 1) * 2 ** -24);
      let worst = 0;
      outputs += got.length;
      for (let i = 0; i < got.length; i++) {
        const bound = gamma * want.magnitude[i]! + 2 ** -24 * Math.abs(want.out[i]!) + 1e-30;
        worst = Math.max(worst, Math.abs(got[i]! - want.out[i]!) / bound);
        if (Math.abs(got[i]! - exact.out[i]!) > 4 * bound) beyondFp32++;
      }
      expect(worst, `case ${JSON.stringify([batch, M, K, N, ta, tb])}`).toBeLessThanOrEqual(1);
      tf.dispose([a, b, y]);
    }
    return { beyondFp32, outputs };
  }

  /** The shader keys tfjs compiled so far (its pipeline cache), to tell which program ran. */
  const compiledPrograms = (): string[] =>
    Object.keys((tf.backend() as unknown as { pipelineCache: Record<string, unknown> }).pipelineCache);

  it(
    'the product kernel: f16 operands, float32 sums, every transpose, ' +
      'broadcast batches, ragged tiles, both tile sizes',
    async () => {
      expect(backend.matmul).toContain('f16');
      expect(halfProductsOn()).toBe(true);
      const { beyondFp32, outputs } = await checkProducts(true);
      // The f16 rounding of the operands is 2⁻¹¹ relative each, far above the bound: some outputs must differ from
      // the fp32 products by more than it, or the operands were not rounded.
      expect(beyondFp32).toBeGreaterThan(outputs / 4);
      expect(compiledPrograms().some((k) => k.includes('distill_matmul_f16_128_'))).toBe(true);
    },
  );

  it(
    'webgpu_products "tiled": the same program on float32 operands, ' +
      'within the float32 summation bound of exact sums',
    async () => {
      setHalfProducts(false);
      setTiledProducts(true);
      try {
        expect(compiledPrograms().some((k) => k.includes('distill_matmul_f32_'))).toBe(false);
        await checkProducts(false);
        // It ran (not tfjs's kernel): both tile sizes, all four transpose combinations compiled.
        const compiled = compiledPrograms();
        for (const name of [64, 128].flatMap((t) =>
          ['NN', 'NT', 'TN', 'TT'].map((f) => `distill_matmul_f32_${t}_${f}`),
        )) {
          expect(
            compiled.some((k) => k.includes(name)),
            name,
          ).toBe(true);
        }
      } finally {
        setTiledProducts(false);
        setHalfProducts(true);
      }
    },
  );

  it(
    'webgpu_products "tiled": 8 updates of the tiny and unseen ' +
      "references match PyTorch's fp32 run; no tensor left behind",
    async () => {
      setHalfProducts(false);
      setTiledProducts(true);
      try {
        for (const name of ['tiny', 'unseen'] as const) {
          const tensors = tf.memory().numTensors;
          const run = await replay(name, backend);
          const d = weightDifference(run.weights, referenceWeights(name), referenceJson(name).lr);
          console.log(
            JSON.stringify({ path: 'webgpu tiled fp32', name, ...d, losses: run.records.map((r) => r.loss) }),
          );
          expectMatchesReference(name, run);
          expect(tf.memory().numTensors).toBe(tensors);
        }
      } finally {
        setTiledProducts(false);
        setHalfProducts(true);
      }
    },
  );

  it(
    "an operand beyond f16's range makes its tile's outputs " + "NaN (not a wrong number); fp32 keeps tfjs's kernel",
    async () => {
      const a = tf.tensor2d([
        [1e5, 1],
        [1, 1],
      ]);
      const b = tf.tensor2d([
        [1, 0],
        [0, 1],
      ]);
      const y = await tf.matMul(a, b).data();
      expect(Array.from(y).every((v) => Number.isNaN(v))).toBe(true);
      setHalfProducts(false);
      try {
        expect(Array.from(await tf.matMul(a, b).data())).toEqual([1e5, 1, 1, 1]);
        const x = tf.tensor2d([[1 + 2 ** -13]]);
        // fp32: not rounded to f16
        expect((await tf.matMul(x, tf.tensor2d([[1]])).data())[0]).toBe(Math.fround(1 + 2 ** -13));
        setHalfProducts(true);
        expect((await tf.matMul(x, tf.tensor2d([[1]])).data())[0]).toBe(1); // f16: 1 + 2⁻¹³ rounds to 1
      } finally {
        setHalfProducts(true);
      }
      tf.dispose([a, b]);
    },
  );

  it(
    'a gradient beyond f16: a static scale stops with the loss_scale hint, ' +
      'a dynamic one skips and halves; the weights stay as they were',
    async () => {
      const w = tf.variable(
        tf.tensor2d([
          [0.5, -0.25],
          [0.125, 1],
        ]),
        true,
        'f16-test-w',
      );
      const before = Array.from(await w.data());
      const optimizer = new AdamW([w], [true], { betas: [0.9, 0.98], eps: 1e-6, weightDecay: 0 });
      // ∂loss/∂y = 100 · 2¹⁰ per element: the product of the backward pass gets an operand above 65504.
      const step = new UpdateStep([w], optimizer, { gradAccum: 1, maxGradNorm: 0, lossScale: new LossScale(1024, 0) });
      await step.accumulate(() => {
        const loss = tf.mul(tf.sum(tf.matMul(tf.ones([3, 2]), w)), 100) as tf.Scalar;
        return { loss, report: tf.stack([loss]) as tf.Tensor1D };
      });
      const error = await step.apply(1e-3).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HalfPrecisionOverflow);
      expect((error as DistillError).hint).toContain('loss_scale=256');
      expect(Array.from(await w.data())).toEqual(before);
      // A dynamic scale skips instead: at 1024 the update overflows (100·1024 > 65504) and is skipped, the scale
      // halves, and at 512 (100·512 = 51200 < 65504) the update applies with the unscaled gradient.
      const dynamic = new UpdateStep([w], optimizer, {
        gradAccum: 1,
        maxGradNorm: 0,
        lossScale: new LossScale(1024, 2000),
      });
      const skipped: boolean[] = [];
      const norms: number[] = [];
      for (let u = 0; u < 2; u++) {
        await dynamic.accumulate(() => {
          const loss = tf.mul(tf.sum(tf.matMul(tf.ones([3, 2]), w)), 100) as tf.Scalar;
          return { loss, report: tf.stack([loss]) as tf.Tensor1D };
        });
        const applied = await dynamic.apply(1e-3);
        skipped.push(applied.skipped);
        norms.push(applied.norm);
        if (u === 0) expect(Array.from(await w.data())).toEqual(before);
      }
      expect(skipped).toEqual([true, false]);
      expect(norms[1]).toBeCloseTo(Math.sqrt(4 * 300 * 300), 3);
      expect(optimizer.step).toBe(1);
      expect(Array.from(await w.data())).not.toEqual(before);
      optimizer.dispose();
      w.dispose();
    },
  );

  it(
    '8 updates match PyTorch with f16 operands in every ' + 'product (loss_scale 1024); no tensor left behind',
    async () => {
      const tensors = tf.memory().numTensors;
      const run = await replay('tiny-f16', backend);
      const d = weightDifference(run.weights, referenceWeights('tiny-f16'), referenceJson('tiny-f16').lr);
      console.log(
        JSON.stringify({
          path: 'webgpu fp16-mixed',
          name: 'tiny-f16',
          matmul: backend.matmul,
          ...d,
          losses: run.records.map((r) => r.loss),
        }),
      );
      expectMatchesReference('tiny-f16', run);
      expect(tf.memory().numTensors).toBe(tensors);

      // Against the fp32 run of the same batches (PyTorch's tiny reference): each product's operands carry a
      // relative rounding of at most 2⁻¹¹ each, so a product is off by at most 2·2⁻¹¹ ≈ 1e-3 of Σ|a·b|; the losses
      // (sums and means of such values, through 2 layers) stay within that order. Bound: 1e-3 relative on each
      // loss and 2e-3 on the gradient norm (a sum of squares of gradients that each passed through two rounded
      // products). Measured: this replay against the fp32 reference, losses 4.0e-5 and gradient norms 1.2e-4 at most;
      // PyTorch's f16 run against its fp32 run, 1.2e-4 and 2.4e-4. On this small model the f16 rounding is as small
      // as the float32 noise between two implementations: the kernel test above is the one that tells them apart.
      const fp32 = referenceJson('tiny').records;
      run.records.forEach((r, u) => {
        for (const k of ['loss', 'loss_ce', 'loss_mlm', 'loss_cos'] as const) {
          expect(relDiff(r[k], fp32[u]![k]), `update ${u + 1} ${k} against fp32`).toBeLessThan(1e-3);
        }
        expect(relDiff(r.grad_norm, fp32[u]!.grad_norm), `update ${u + 1} grad_norm against fp32`).toBeLessThan(2e-3);
      });
    },
  );

  it(
    'a whole run with a dynamic loss scale skips the updates that overflow, ' +
      'grows the scale back, and a stop + resume repeats it exactly',
    async () => {
      // At 2¹⁹ the backward products' incoming gradients pass 65504 (the mean losses' per-token gradients times the
      // scale: on these batches 2¹⁸ is the highest that fits, measured), so the first update overflows; growth after
      // 2 finite updates brings the scale back into overflow, so halving and growth both happen within 8 updates.
      const { work, configPath } = tinyRunConfig('f16-run', {
        max_steps: 8,
        checkpoint_every: 0,
        backend: 'webgpu',
        precision: 'fp16-mixed',
        loss_scale: 2 ** 19,
        loss_scale_growth_interval: 2,
        teacher_ep: 'cpu',
        teacher_threads: 1,
        seed: 3,
      });
      const straight = join(work, 'straight');
      const split = join(work, 'split');
      await train({ config: loadConfig(configPath), runDir: straight, resume: false });
      // mid-count: scale 2¹⁸, 1 finite update
      await train({ config: loadConfig(configPath), runDir: split, resume: false, stopAfter: 2 });
      expect(
        (
          JSON.parse(readFileSync(join(latestCheckpoint(split)!, 'trainer_state.json'), 'utf8')) as {
            loss_scale: unknown;
          }
        ).loss_scale,
      ).toBeDefined();
      await train({ config: loadConfig(configPath), runDir: split, resume: true });

      type Line = { step: number; loss: number; grad_norm: number | null; loss_scale: number; skipped?: true };
      const lines = (dir: string): Line[] =>
        readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as Line);
      const run = lines(straight);
      console.log(JSON.stringify(run.map((m) => [m.loss_scale, m.skipped ?? false, m.loss])));
      expect(run.length).toBe(8);
      // The rule, line by line: a skipped update (grad_norm null: not finite) halves the next scale; the second
      // finite update in a row doubles it; otherwise it stays.
      let finiteInARow = 0;
      for (let i = 0; i + 1 < run.length; i++) {
        const m = run[i]!;
        expect(m.skipped === true, `update ${m.step}`).toBe(m.grad_norm === null);
        expect(Number.isFinite(m.loss)).toBe(true);
        finiteInARow = m.skipped ? 0 : finiteInARow + 1;
        const expected = m.skipped ? m.loss_scale / 2 : finiteInARow === 2 ? m.loss_scale * 2 : m.loss_scale;
        if (finiteInARow === 2) finiteInARow = 0;
        expect(run[i + 1]!.loss_scale, `the scale after update ${m.step}`).toBe(expected);
      }
      expect(run[0]!.loss_scale).toBe(2 ** 19);
      expect(run[0]!.skipped).toBe(true);
      expect(run.some((m) => !m.skipped)).toBe(true);
      expect(run.some((m, i) => i > 0 && m.loss_scale > run[i - 1]!.loss_scale)).toBe(true); // it grew at least once

      // Stopped after 2 updates and resumed: the same lines (scales, skips, losses) and the same weights and moments.
      // the timings differ, nothing else may
      const timeless = (ls: Line[]): Line[] => ls.map((m) => ({ ...m, tokens_per_s: 0, elapsed_s: 0 }));
      expect(timeless(lines(split))).toEqual(timeless(run));
      for (const file of ['model.safetensors', 'optimizer.safetensors']) {
        expect(
          readFileSync(join(latestCheckpoint(split)!, file)).equals(
            readFileSync(join(latestCheckpoint(straight)!, file)),
          ),
          file,
        ).toBe(true);
      }
    },
  );

  it(
    'fp16-mixed is refused off webgpu, and by the config without backend webgpu or with a loss_scale not a power of ' +
      '2; tiled products without webgpu too',
    async () => {
      await expect(selectBackend('wasm', { precision: 'fp16-mixed' })).rejects.toThrow(
        /runs on the webgpu backend only/,
      );
      expect(() => validateConfig({ teacher: 't', corpus: 'c', precision: 'fp16-mixed' }, 'run.json')).toThrow(
        /"precision" is "fp16-mixed" but "backend" is null/,
      );
      expect(() =>
        validateConfig(
          { teacher: 't', corpus: 'c', backend: 'webgpu', precision: 'fp16-mixed', loss_scale: 1000 },
          'run.json',
        ),
      ).toThrow(/"loss_scale" is 1000: expected a power of 2/);
      expect(
        validateConfig(
          { teacher: 't', corpus: 'c', backend: 'webgpu', precision: 'fp16-mixed', loss_scale: 256 },
          'run.json',
        ).loss_scale,
      ).toBe(256);
      expect(() => validateConfig({ teacher: 't', corpus: 'c', webgpu_products: 'tiled' }, 'run.json')).toThrow(
        /"webgpu_products" is "tiled" but "backend" is null/,
      );
      expect(
        validateConfig({ teacher: 't', corpus: 'c', backend: 'webgpu', webgpu_products: 'tiled' }, 'run.json')
          .webgpu_products,
      ).toBe('tiled');
    },
  );
});
