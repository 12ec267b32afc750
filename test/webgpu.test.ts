// The student on tfjs's webgpu backend (Dawn, npm `webgpu`) and the teacher on onnxruntime's WebGPU
// execution provider, against the same PyTorch numbers as the wasm/cpu golden tests. In CI this runs on
// Mesa's software adapter (llvmpipe, installed by .ci/run); where no adapter is found the file is skipped
// with the reason printed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { readEncoderConfig } from '../src/core/model-dir.js';
import { sumOfSquares } from '../src/train/adamw.js';
import { ADAMW_KERNEL, adamwOps, adamwUpdate } from '../student/ops/adamw.js';
import { adamwGrid, setAdamWInPlace } from '../student/kernels/adamw-webgpu.js';
import { GpuTrafficCounter } from '../src/bench/gpu-traffic.js';
import { LAYER_NORM_KERNEL, layerNorm, layerNormOps } from '../student/ops/layer-norm.js';
import { SUM_SQUARES_KERNEL } from '../student/ops/sum-squares.js';
import { train } from '../src/train/loop.js';
import { loadConfig } from '../src/config.js';
import { latestCheckpoint } from '../src/train/checkpoint.js';
import {
  activeGpuDevice,
  adapterForRank,
  noMatchingAdapterError,
  prefetch,
  selectBackend,
} from '../student/backend.js';
import { LOGIT_LOSSES_KERNEL } from '../student/ops/logit-losses.js';
import { defaultStudentLayers, initStudentFromTeacher } from '../student/init.js';
import { saveStudent } from '../student/io.js';
import { gelu, hfNameOfVariable, type DistilBertStudent } from '../student/model.js';
import { biasGelu, geluOps } from '../student/ops/gelu.js';
import { MASKED_SOFTMAX_KERNEL, maskedSoftmax, maskedSoftmaxOps } from '../student/ops/attention-softmax.js';
import { Teacher, profiledPlacement } from '../teacher/teacher.js';
import * as ort from 'onnxruntime-node';
import { distillLosses, RECIPE_LOSS_WEIGHTS, type TeacherTargets } from '../losses/total.js';
import { lossesFromPacked } from '../losses/record.js';
import { teacherSoftTargets } from '../src/core/soft-targets.js';
import { lossRows } from '../losses/rows.js';
import { expectCleanError, runCli } from './cli-helpers.js';
import {
  GOLDEN,
  TINY,
  canRun,
  goldenBatch,
  maxAbsDiff,
  relDiff,
  negEntropyBound,
  softTargetModel,
  tidy,
  tiedLogits,
  tinyRunConfig,
  underflowingLogits,
  webgpuUnavailable,
} from './helpers.js';
import reference from './fixtures/tiny-bert-cased/reference.json' with { type: 'json' };

// Skipped only where WebGPU is not installed or finds no adapter; any other error fails the file.
const unavailable = canRun('webgpu.test.ts', await webgpuUnavailable()) ? undefined : 'no WebGPU adapter';
const device = unavailable ? '' : ((await selectBackend('webgpu')).device ?? '');

const ref = SafetensorsFile.read(join(GOLDEN, 'reference.safetensors'));
const { B, T, maskedIds, attention, labels, teacherLogits, teacherLast } = goldenBatch(ref);
const H = 192;
const V = 6144;
const rows = lossRows(attention, labels, B, T, V);

describe.skipIf(unavailable !== undefined)('student on webgpu', () => {
  let student: DistilBertStudent;
  beforeAll(async () => {
    await selectBackend('webgpu');
    student = initStudentFromTeacher(TINY, readEncoderConfig(TINY), defaultStudentLayers(4), 0);
  });
  afterAll(() => student.dispose());

  it('runs on the adapter found, and keeps the logit losses on the device', () => {
    expect(tf.getBackend()).toBe('webgpu');
    expect(device.length).toBeGreaterThan(0);
    expect(tf.getKernel(LOGIT_LOSSES_KERNEL, 'webgpu')).toBeUndefined();
  });

  it('GELU runs as one WGSL program each way, equal to the tfjs-op formula (value and gradient)', async () => {
    expect(tf.getKernel('DistillGelu', 'webgpu')).toBeDefined();
    const x = Float32Array.from({ length: 3001 }, (_, i) => -6 + (12 * i) / 3000);
    const w = Float32Array.from(x, (v) => Math.cos(v));
    const outs = tf.tidy(() => {
      const t = tf.tensor1d(x);
      const f = (op: (u: tf.Tensor) => tf.Tensor) => tf.grad((u: tf.Tensor) => tf.sum(tf.mul(op(u), tf.tensor1d(w))));
      return [gelu(t), f(gelu)(t), geluOps(t), f(geluOps)(t)];
    });
    const [y, g, yRef, gRef] = await Promise.all(outs.map((o) => o.data()));
    tf.dispose(outs);
    expect(maxAbsDiff(y!, yRef!)).toBeLessThan(2e-6);
    expect(maxAbsDiff(g!, gRef!)).toBeLessThan(2e-6);
    expect(Math.max(...(y as Float32Array))).toBeGreaterThan(5.9);
  });

  it(
    'bias + GELU runs as one WGSL program each way (DistillBiasGelu), ' +
      'equal to gelu(x + b) in tfjs ops (value, ∂x, ∂b), at two widths',
    async () => {
      // Two widths in a row: tfjs caches a pipeline by the program's key, so a width written into the code would
      // reuse the first width's program for the second (the student's FFN and its MLM head differ so).
      for (const [n, width] of [
        [29, 70],
        [13, 33],
      ] as const) {
        const x = tf.tensor2d(
          Float32Array.from({ length: n * width }, (_, i) => Math.sin(i * 0.37) * 4),
          [n, width],
        );
        const b = tf.tensor1d(Float32Array.from({ length: width }, (_, i) => Math.cos(i * 1.1)));
        const w = tf.tensor2d(
          Float32Array.from({ length: n * width }, (_, i) => Math.cos(i * 0.05)),
          [n, width],
        );
        const before = tf.memory().numTensors;
        const both = (f: (x: tf.Tensor2D, b: tf.Tensor1D) => tf.Tensor): tf.Tensor[] =>
          tf.tidy(() => {
            const g = tf.grads((u: tf.Tensor, v: tf.Tensor) =>
              tf.sum(tf.mul(f(u as tf.Tensor2D, v as tf.Tensor1D), w)),
            )([x, b]);
            return [f(x, b), ...g];
          });
        const fused = both(biasGelu);
        const ops = both((u, v) => geluOps(tf.add(u, v)));
        const [fv, ov] = [await Promise.all(fused.map((t) => t.data())), await Promise.all(ops.map((t) => t.data()))];
        tf.dispose([...fused, ...ops]);
        expect(tf.memory().numTensors).toBe(before);
        // The same formula in float32 (the erf approximations differ by < 1e-7): values and ∂x within 2e-6 as GELU's
        // own test; ∂b sums n ≤ 29 rows of ∂x (|∂x| ≤ 1.2) in another order, within 29·2e-6 ≈ 6e-5. A dropped or
        // misaligned bias moves values by up to |b| = 1, a wrong ∂b by O(1).
        expect(maxAbsDiff(fv[0]!, ov[0]!), `width ${width}`).toBeLessThan(2e-6);
        expect(maxAbsDiff(fv[1]!, ov[1]!), `width ${width}`).toBeLessThan(2e-6);
        expect(maxAbsDiff(fv[2]!, ov[2]!), `width ${width}`).toBeLessThan(6e-5);
        tf.dispose([x, b, w]);
      }
    },
  );

  it(
    'the attention softmax with its mask runs as one WGSL program each ' +
      'way (DistillMaskedSoftmax), equal to softmax(s + m) in tfjs ops',
    async () => {
      expect(tf.getKernel(MASKED_SOFTMAX_KERNEL, 'webgpu')).toBeDefined();
      const [b, heads, t] = [3, 2, 9];
      const s = tf.tensor4d(
        Float32Array.from({ length: b * heads * t * t }, (_, i) => Math.sin(i * 0.61) * 6),
        [b, heads, t, t],
      );
      // Sequences of 9, 5 and 1 real tokens: the padded keys get −1e9, as the student's mask bias.
      const lengths = [9, 5, 1];
      const m = tf.tensor4d(
        Float32Array.from({ length: b * t }, (_, i) => (i % t < lengths[Math.floor(i / t)]! ? 0 : -1e9)),
        [b, 1, 1, t],
      );
      const w = tf.tensor4d(
        Float32Array.from({ length: b * heads * t * t }, (_, i) => Math.cos(i * 0.3)),
        [b, heads, t, t],
      );
      const before = tf.memory().numTensors;
      const both = (f: typeof maskedSoftmaxOps): tf.Tensor[] =>
        tf.tidy(() => [f(s, m), tf.grad((u: tf.Tensor) => tf.sum(tf.mul(f(u as tf.Tensor4D, m), w)))(s)]);
      const fused = both(maskedSoftmax);
      const ops = both(maskedSoftmaxOps);
      const [fv, ov] = [await Promise.all(fused.map((x) => x.data())), await Promise.all(ops.map((x) => x.data()))];
      tf.dispose([...fused, ...ops]);
      expect(tf.memory().numTensors).toBe(before);
      // Probabilities ≤ 1: a row's max and sum of ≤ 9 exps in another order agree within a few float32 ulps (1e-6
      // with margin); the gradient y·(dy − Σ dy·y) with |dy| ≤ 1 the same. A padded key given weight, or the wrong
      // row's mask, moves a probability by O(0.1).
      expect(maxAbsDiff(fv[0]!, ov[0]!)).toBeLessThan(1e-6);
      expect(maxAbsDiff(fv[1]!, ov[1]!)).toBeLessThan(1e-6);
      const probs = fv[0] as Float32Array;
      expect(probs[(2 * heads * t + 3) * t + 0]).toBeCloseTo(1, 6); // the third sequence: one real key takes it all
      expect(probs[1 * heads * t * t + 7]).toBe(0); // the second: key 7 is padding
      tf.dispose([s, m, w]);
    },
  );

  it(
    'LayerNorm runs as WGSL programs (DistillLayerNorm), ' +
      'equal to the tfjs ops in value and gradient; no tensor left behind',
    async () => {
      expect(tf.getKernel(LAYER_NORM_KERNEL, 'webgpu')).toBeDefined();
      const [rows, width] = [37, 192];
      const wave = (n: number, k: number, shift = 0): Float32Array =>
        Float32Array.from({ length: n }, (_, i) => Math.sin(i * k) * 2 + shift + (i % 7) * 0.1);
      const x = tf.tensor2d(wave(rows * width, 0.37, 3), [rows, width]); // mean ≈ 3: the centring matters
      const gamma = tf.tensor1d(wave(width, 1.3, 1));
      const beta = tf.tensor1d(wave(width, 0.7));
      const dy = tf.tensor2d(wave(rows * width, 0.11), [rows, width]);
      const before = tf.memory().numTensors;
      const both = (f: typeof layerNormOps): tf.Tensor[] =>
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(
            () => tf.sum(tf.mul(f(xv, gv, bv, 1e-12), dy)) as tf.Scalar,
            [xv, gv, bv],
          );
          return [f(x, gamma, beta, 1e-12), value, grads[xv.name]!, grads[gv.name]!, grads[bv.name]!];
        });
      const [xv, gv, bv] = [tf.variable(x), tf.variable(gamma), tf.variable(beta)];
      const fused = both(layerNorm);
      const ops = both(layerNormOps);
      const [fv, ov] = [await Promise.all(fused.map((t) => t.data())), await Promise.all(ops.map((t) => t.data()))];
      tf.dispose([...fused, ...ops, xv, gv, bv]);
      expect(tf.memory().numTensors).toBe(before);
      // The row statistics are sums of 192 float32 terms in another order than tfjs's: each within 192·2⁻²⁴ ≈ 1.1e-5
      // of its magnitude at worst, and x − μ (|x| ≤ 5, |x − μ| ~ 2) amplifies the mean's error about 2.5×: ≤ ~3e-5
      // relative to each output's scale, 1e-4 with margin (seen here: ~1e-6). Dropping a term of dx moves it by > 1e-2.
      ['y', 'Σ y·dy', 'dx', 'dγ', 'dβ'].forEach((what, i) => {
        const scale = Math.max(1, ...Array.from(ov[i]!, Math.abs));
        expect(maxAbsDiff(fv[i]!, ov[i]!) / scale, what).toBeLessThan(1e-4);
      });
      tf.dispose([x, gamma, beta, dy]);
    },
  );

  it(
    "the gradient norm's Σ x² runs four tensors per " + 'dispatch (DistillSumSquares), equal to a float64 sum',
    async () => {
      expect(tf.getKernel(SUM_SQUARES_KERNEL, 'webgpu')).toBeDefined();
      // Sizes below, at and above one dispatch's 64 × 256 invocations; 6 tensors: a group of 4 and one of 2.
      const sizes = [1, 7, 16384, 16385, 70001, 300];
      const values = sizes.map((n, k) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7 + k) * (k + 1)));
      const tensors = values.map((v) => tf.tensor1d(v));
      const before = tf.memory().numTensors;
      const squared = tidy(() => sumOfSquares(tensors));
      const got = (await squared.data())[0]!;
      squared.dispose();
      expect(tf.memory().numTensors).toBe(before);
      const want = values.reduce((a, v) => a + v.reduce((b, x) => b + x * x, 0), 0);
      // Positive terms, no cancellation: float32 error ≤ (longest chain of additions)·2⁻²⁴ relative. The chain: ≤ 10
      // strided adds per invocation over the four inputs, 8 levels of the workgroup tree, 1 AddN, ≤ 64 in the final
      // sum of the partials: ~83 · 6e-8 ≈ 5e-6. A tensor left out would be off by ≥ 1e-4 here.
      expect(relDiff(got, want)).toBeLessThan(1e-5);
      tf.dispose(tensors);
    },
  );

  it(
    'AdamW (DistillAdamW) in place, one dispatch, ' +
      'and as three programs on fresh outputs: both equal to the tfjs-op form',
    async () => {
      expect(tf.getKernel(ADAMW_KERNEL, 'webgpu')).toBeDefined();
      const n = 3001;
      const wave = (k: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * k) * 0.5);
      const c = {
        b1: 0.9,
        b2: 0.98,
        biasCorrection2Sqrt: Math.sqrt(1 - 0.98 ** 3),
        eps: 1e-6,
        stepSize: 1e-3 / (1 - 0.9 ** 3),
        decayFactor: 1 - 1e-3 * 0.01,
      };
      // p, g, m, v: fresh tensors each (the in-place form rewrites the ones that hold their memory alone).
      const inputs = (): tf.Tensor[] => [
        tf.tensor1d(wave(0.37)),
        tf.tensor1d(wave(1.3)),
        tf.tensor1d(wave(0.11)),
        tf.tensor1d(wave(0.7).map((x) => x * x)),
      ]; // v ≥ 0
      const read = (ts: tf.Tensor[]): Promise<Float32Array[]> =>
        Promise.all(ts.map((t) => t.data() as Promise<Float32Array>));
      const opsIn = inputs();
      const ops = tf.tidy(() => adamwOps(opsIn[0]!, opsIn[1]!, opsIn[2]!, opsIn[3]!, c));
      const want = await read(ops);
      tf.dispose([...opsIn, ...ops]);

      // Three programs: new ids, the inputs untouched.
      setAdamWInPlace(false);
      const [p3, g3, m3, v3] = inputs();
      const three = adamwUpdate(p3!, g3!, m3!, v3!, c);
      const threeValues = await read(three);
      expect(three[0]!.dataId).not.toBe(p3!.dataId);
      expect(Array.from(await p3!.data())).toEqual(Array.from(Float32Array.from(wave(0.37))));
      tf.dispose([p3!, g3!, m3!, v3!, ...three]);
      setAdamWInPlace(true);

      // In place: the same ids back, rewritten, after a read that left a host copy of p's old values beside its buffer.
      const [p0, g, m, v] = inputs();
      const p = tf.tidy(() => tf.mul(p0!, 1)); // computed on the GPU, as the optimizer's weights are after an update
      p0!.dispose();
      // the read leaves a host copy beside the buffer (as a checkpoint's does)
      const before = Float32Array.from(await p.data());
      const traffic = new GpuTrafficCounter(activeGpuDevice());
      const outs = adamwUpdate(p, g!, m!, v!, c);
      const inPlace = await read(outs);
      const counted = traffic.report();
      traffic.dispose();
      expect(outs.map((t) => t.dataId)).toEqual([p.dataId, m!.dataId, v!.dataId]);
      expect(counted.dispatches).toBe(1);
      expect(Array.from(await p.data())).toEqual(Array.from(inPlace[0]!));
      expect(maxAbsDiff(inPlace[0]!, before)).toBeGreaterThan(1e-4); // the update moved p (not the stale host copy)
      tf.dispose([p, g!, m!, v!, ...outs]);

      // Against the ops: a float32 rounding or two (the compiler may fuse a multiply-add).
      for (let i = 0; i < 3; i++) {
        expect(maxAbsDiff(threeValues[i]!, want[i]!)).toBeLessThan(1e-6);
        expect(maxAbsDiff(inPlace[i]!, want[i]!)).toBeLessThan(1e-6);
      }
    },
  );

  it(
    'AdamW leaves a tensor that shares its memory alone: ' + 'a variable made from p and p both keep their values',
    async () => {
      const p = tf.tensor1d([0.5, -0.5, 0.25]);
      const shared = tf.variable(p, false); // holds p's memory too (refcount 2)
      const [g, m, v] = [tf.tensor1d([1, 1, 1]), tf.zeros([3]), tf.zeros([3])];
      const c = {
        b1: 0.9,
        b2: 0.98,
        biasCorrection2Sqrt: Math.sqrt(1 - 0.98),
        eps: 1e-6,
        stepSize: 1e-2 / (1 - 0.9),
        decayFactor: 1,
      };
      const outs = adamwUpdate(p, g, m, v, c);
      expect(outs[0]!.dataId).not.toBe(p.dataId);
      // Adam's first step: p − lr (g = 1)
      expect(maxAbsDiff(await outs[0]!.data(), [0.49, -0.51, 0.24])).toBeLessThan(1e-6);
      expect(Array.from(await p.data())).toEqual([0.5, -0.5, 0.25]);
      expect(Array.from(await shared.data())).toEqual([0.5, -0.5, 0.25]);
      tf.dispose([p, shared, g, m, v, ...outs]);
    },
  );

  it(
    'AdamW in place beyond 65535 × 256 elements: ' + 'the workgroups go in a 2-D grid and every element is updated',
    async () => {
      expect(adamwGrid(28996 * 768, 65535)).toEqual([65535, 2]); // bert-base's word embeddings, on a 65535 adapter
      expect(adamwGrid(1000, 65535)).toEqual([4, 1]);
      const limit = (activeGpuDevice() as { limits: { maxComputeWorkgroupsPerDimension: number } }).limits
        .maxComputeWorkgroupsPerDimension;
      const n = limit * 256 + 1000; // one row of workgroups cannot hold it
      const [p, g, m, v] = [tf.fill([n], 0.5), tf.fill([n], 1), tf.zeros([n]), tf.zeros([n])];
      const c = {
        b1: 0.9,
        b2: 0.98,
        biasCorrection2Sqrt: Math.sqrt(1 - 0.98),
        eps: 1e-6,
        stepSize: 1e-2 / (1 - 0.9),
        decayFactor: 1,
      };
      const outs = adamwUpdate(p, g, m, v, c);
      const values = await outs[0]!.data();
      // Adam's first step with g = 1: m̂/√v̂ = 1/(1 + ε/√0.02·…)
      // ≈ 1, so p' = 0.5 − 0.01 everywhere, the last element too.
      expect(Math.abs(values[0]! - 0.49)).toBeLessThan(1e-6);
      expect(Math.abs(values[n - 1]! - 0.49)).toBeLessThan(1e-6);
      let wrong = 0;
      for (let i = 0; i < n; i++) if (Math.abs(values[i]! - 0.49) > 1e-6) wrong++;
      expect(wrong).toBe(0);
      tf.dispose([p, g, m, v, ...outs]);
    },
  );

  it(
    'AdamW takes the gradients times gradScale (1/loss_scale, ' +
      'precision fp16-mixed) as the tfjs ops do on g·gradScale',
    async () => {
      // Gradients 1024 times too large with gradScale 2⁻¹⁰, and small enough (~1e-6 after scaling) that ε matters
      // (Adam's m/√v alone is blind to a gradient's scale): a kernel that ignored gradScale moves p' by ~1e-4.
      const n = 1001;
      const wave = (k: number, a: number): Float32Array =>
        Float32Array.from({ length: n }, (_, i) => Math.sin(i * k) * a);
      const c = {
        b1: 0.9,
        b2: 0.98,
        biasCorrection2Sqrt: Math.sqrt(1 - 0.98),
        eps: 1e-6,
        stepSize: 1e-3 / (1 - 0.9),
        decayFactor: 1,
      };
      const inputs = (): [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor] => [
        tf.tensor1d(wave(0.37, 0.5)),
        tf.tensor1d(wave(1.3, 1024 * 2e-6)),
        tf.zeros([n]),
        tf.zeros([n]),
      ];
      const run = async (
        f: (p: tf.Tensor, g: tf.Tensor, m: tf.Tensor, v: tf.Tensor) => tf.Tensor[],
      ): Promise<Float32Array[]> => {
        const ins = inputs();
        const outs = f(...ins);
        const values = await Promise.all(outs.map((t) => t.data() as Promise<Float32Array>));
        tf.dispose([...ins, ...outs]);
        return values;
      };
      const want = await run((p, g, m, v) => tf.tidy(() => adamwOps(p, tf.mul(g, 2 ** -10), m, v, c)));
      const unscaled = await run((p, g, m, v) => adamwUpdate(p, g, m, v, c));
      for (const inPlace of [true, false]) {
        setAdamWInPlace(inPlace);
        const got = await run((p, g, m, v) => adamwUpdate(p, g, m, v, c, 2 ** -10));
        for (let i = 0; i < 3; i++) expect(maxAbsDiff(got[i]!, want[i]!), `in place: ${inPlace}`).toBeLessThan(1e-9);
        expect(maxAbsDiff(got[0]!, unscaled[0]!)).toBeGreaterThan(1e-5); // without the scale the step differs
      }
      setAdamWInPlace(true);
    },
  );

  it("logits and hidden states equal PyTorch's within 1e-4", async () => {
    const out = tidy(() =>
      student.forward(tf.tensor2d(maskedIds, [B, T], 'int32'), tf.tensor2d(attention, [B, T], 'int32'), {
        training: false,
      }),
    );
    const logits = await out.logits.data();
    const hidden = await Promise.all(out.hiddenStates.map((h) => h.data()));
    tf.dispose([out.logits, ...out.hiddenStates]);
    expect(maxAbsDiff(logits, ref.getFloat32('student_logits'))).toBeLessThan(1e-4);
    const refHidden = ref.getFloat32('student_hidden_states');
    hidden.forEach((h, i) =>
      expect(maxAbsDiff(h, refHidden.subarray(i * B * T * H, (i + 1) * B * T * H))).toBeLessThan(1e-4),
    );
  });

  const fromLogits: TeacherTargets = { logits: teacherLogits, lastHidden: teacherLast };
  const fromSoft: TeacherTargets = {
    lastHidden: teacherLast,
    soft: teacherSoftTargets(teacherLogits, rows.realRows, V, 2, false),
  };
  for (const [what, targets] of [
    ['teacher logits', fromLogits],
    ['teacher soft targets', fromSoft],
  ] as const) {
    it(`each loss within 1e-4 relative, gradient norms within 1e-3 (from the ${what})`, async () => {
      let packed: tf.Tensor1D | undefined;
      const squares = tf.tidy(() => {
        const { grads } = tf.variableGrads(() => {
          const l = distillLosses(
            student,
            tf.tensor2d(maskedIds, [B, T], 'int32'),
            tf.tensor2d(attention, [B, T], 'int32'),
            rows,
            targets,
            RECIPE_LOSS_WEIGHTS,
            { training: false },
          );
          packed = tf.keep(l.packed());
          return l.loss;
        }, student.variables());
        return Object.entries(grads).map(([name, g]) => [hfNameOfVariable(name), sumOfSquares([g])] as const);
      });
      const values = lossesFromPacked(await packed!.data());
      expect(relDiff(values.ce, reference.loss_ce)).toBeLessThan(1e-4);
      expect(relDiff(values.mlm, reference.loss_mlm)).toBeLessThan(1e-4);
      expect(relDiff(values.cos, reference.loss_cos)).toBeLessThan(1e-4);
      expect(relDiff(values.total, reference.loss_total)).toBeLessThan(1e-4);
      const refByParam = reference.student_grad_norm_by_param as Record<string, number>;
      let total = 0;
      for (const [name, sq] of squares) {
        const norm = Math.sqrt((await sq.data())[0]!);
        total += norm * norm;
        expect(Math.abs(norm - refByParam[name]!), name).toBeLessThan(Math.max(1e-3 * refByParam[name]!, 1e-3));
      }
      expect(squares.length).toBe(Object.keys(refByParam).length);
      expect(relDiff(Math.sqrt(total), reference.student_grad_norm)).toBeLessThan(1e-3);
      tf.dispose([packed!, ...squares.map(([, s]) => s)]);
    });
  }

  it("eval-batch --backend webgpu reproduces PyTorch's losses and gradient norm", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'distill-webgpu-student-'));
    await prefetch(student.variables()); // saving reads synchronously
    saveStudent(student, dir);
    const r = runCli([
      'eval-batch',
      '--teacher',
      TINY,
      '--student',
      dir,
      '--batch',
      join(GOLDEN, 'reference.safetensors'),
      '--backend',
      'webgpu',
    ]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, number | string>;
    expect(out['backend']).toBe('webgpu');
    expect(relDiff(out['loss_total'] as number, reference.loss_total)).toBeLessThan(1e-4);
    expect(relDiff(out['grad_norm'] as number, reference.student_grad_norm)).toBeLessThan(1e-3);
  });

  // What one update asks of the GPU once warm (distill bench --profile counts it at Dawn's GPUDevice): the
  // uploads are the batch and the teacher's outputs and nothing the size of an activation or of the logits
  // (tfjs's own Sum/Mean gradients uploaded a host-made ones(x.shape) per reduction: 7.8 MB here, not 3.3);
  // the reads are the losses and the gradient norm; no shader is compiled after the warm-up.
  for (const [topk, precision] of [
    [0, 'fp32'],
    [8, 'fp32'],
    [8, 'fp16-mixed'],
  ] as const) {
    it(
      `one warm update uploads only the batch and the teacher's outputs, ` +
        `reads back ≤ 1 KB, compiles nothing (top-k ${topk}, ${precision})`,
      () => {
        const [b, t] = [4, 32];
        const r = runCli([
          'bench',
          '--teacher',
          TINY,
          '--backend',
          'webgpu',
          '--teacher-ep',
          'webgpu',
          '--batch',
          String(b),
          '--seq',
          String(t),
          '--steps',
          '1',
          '--profile',
          '--topk',
          String(topk),
          '--precision',
          precision,
        ]);
        expect(r.status, r.stderr).toBe(0);
        expect((JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { matmul: string }).matmul).toBe(
          precision === 'fp32' ? 'webgpu' : 'webgpu, f16 operands with fp32 accumulation',
        );
        const traffic = (
          JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
            profile: { gpu_traffic_per_update: Record<string, number> };
          }
        ).profile.gpu_traffic_per_update;
        const tokens = b * t; // every position is real in the bench's batch: every token is a loss row
        // hidden + soft targets (top-k: values and int32 ids) + one Σ p log p per row
        const teacherOut = tokens * H * 4 + (topk ? tokens * topk * 8 : tokens * V * 4) + tokens * 4;
        const batch = 8 * tokens * 4; // ids, mask, labels and the row-index vectors, int32, [B·T] at most each
        expect(traffic['uploaded_bytes']! - traffic['uniform_bytes']!).toBeGreaterThanOrEqual(teacherOut);
        // + scalars
        expect(traffic['uploaded_bytes']! - traffic['uniform_bytes']!).toBeLessThanOrEqual(teacherOut + batch + 4096);
        expect(traffic['read_back_bytes']!).toBeLessThanOrEqual(1024);
        expect(traffic['host_syncs']!).toBeLessThanOrEqual(2);
        expect(traffic['pipelines_created']).toBe(0);
        expect(traffic['dispatches']!).toBeGreaterThan(100);
      },
    );
  }

  it('trains two updates on webgpu with the teacher on the WebGPU provider, and checkpoints', async () => {
    const { work, configPath } = tinyRunConfig('webgpu-train', {
      max_steps: 2,
      checkpoint_every: 2,
      backend: 'webgpu',
      teacher_ep: 'webgpu',
      teacher_threads: 1,
      seed: 3,
    });
    const runDir = join(work, 'run');
    const summary = await train({ config: loadConfig(configPath), runDir, resume: false });
    expect(summary.backend).toBe('webgpu');
    expect(summary.steps).toBe(2);
    expect(Number.isFinite(summary.final_loss)).toBe(true);
    const metrics = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { loss: number; grad_norm: number });
    expect(metrics.length).toBe(2);
    for (const m of metrics) expect(m.loss > 0 && Number.isFinite(m.grad_norm)).toBe(true);
    expect(existsSync(join(latestCheckpoint(runDir)!, 'model.safetensors'))).toBe(true);
  });
});

describe('choosing the adapter (gpu_adapters, --gpu-adapter)', () => {
  it("rank r takes entry r mod the list's length; an empty list leaves the choice to Dawn", () => {
    expect(adapterForRank([], 3)).toBeUndefined();
    expect([0, 1, 2, 3].map((r) => adapterForRank(['H100 #a', 'H100 #b'], r))).toEqual([
      'H100 #a',
      'H100 #b',
      'H100 #a',
      'H100 #b',
    ]);
  });

  it('a filter that matches nothing is an error listing the adapters Dawn found', () => {
    // Dawn's rejection text, as its node binding words it (seen with the software adapter here).
    const dawn =
      "no suitable backends found\nAvailable adapters:\n * backend: 'vulkan', name: 'NVIDIA H100 80GB HBM3'\n * " +
      "backend: 'vulkan', name: 'llvmpipe (LLVM 15.0.6, 256 bits)'\n";
    const e = noMatchingAdapterError('A100', dawn, '--gpu-adapter');
    expect(e.message).toBe(
      'WebGPU: no adapter\'s name contains "A100" (--gpu-adapter); adapters found: "NVIDIA H100 80GB HBM3", ' +
        '"llvmpipe (LLVM 15.0.6, 256 bits)"',
    );
    expect(e.hint).toMatch(/set --gpu-adapter to a part of one of these names/);
  });

  it.skipIf(unavailable !== undefined)(
    "on this machine: a part of the software adapter's name picks it; another name fails cleanly, naming it",
    () => {
      const args = [
        'bench',
        '--teacher',
        TINY,
        '--backend',
        'webgpu',
        '--teacher-ep',
        'cpu',
        '--batch',
        '2',
        '--seq',
        '8',
        '--steps',
        '1',
      ];
      const ok = runCli([...args, '--gpu-adapter', 'llvmpipe']);
      expect(ok.status, ok.stderr).toBe(0);
      expect((JSON.parse(ok.stdout.trim().split('\n').at(-1)!) as { device: string }).device).toMatch(/llvmpipe/);
      expectCleanError(
        runCli([...args, '--gpu-adapter', 'no such GPU']),
        /no adapter's name contains "no such GPU" \(--gpu-adapter\); adapters found: "llvmpipe/,
      );
    },
  );
});

describe.skipIf(unavailable !== undefined)('no adapter', () => {
  it('is an error naming the Vulkan pieces to install', () => {
    const hidden = { VK_DRIVER_FILES: '/nonexistent/icd.json', VK_ICD_FILENAMES: '/nonexistent/icd.json' };
    const r = runCli(
      ['bench', '--teacher', TINY, '--backend', 'webgpu', '--batch', '1', '--seq', '8', '--steps', '1'],
      { env: hidden, timeoutMs: 60_000 },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/error: WebGPU: Dawn found no adapter/);
    expect(r.stderr).toMatch(/hint: .*libvulkan1.*mesa-vulkan-drivers/);
  });
});

describe.skipIf(unavailable !== undefined)('teacher on the WebGPU execution provider', () => {
  it('gives logits and hidden states within 1e-4 of the CPU provider', async () => {
    const request = { inputIds: maskedIds, attentionMask: attention, batchSize: B, seqLen: T };
    const onCpu = await Teacher.load(TINY, { hiddenStates: 'last', executionProvider: 'cpu' });
    const a = await onCpu.forward(request);
    await onCpu.release();
    const onGpu = await Teacher.load(TINY, { hiddenStates: 'last', executionProvider: 'webgpu' });
    expect(onGpu.executionProvider).toBe('webgpu');
    // onnxruntime's own record of where the nodes ran: most of the graph on WebGPU (shape ops may stay on the CPU).
    const placed = onGpu.nodesByProvider!;
    expect(placed['WebGpuExecutionProvider'] ?? 0).toBeGreaterThan(placed['CPUExecutionProvider'] ?? 0);
    const b = await onGpu.forward(request);
    await onGpu.release();
    expect(maxAbsDiff(b.logits, a.logits)).toBeLessThan(1e-4);
    expect(maxAbsDiff(b.hiddenStates[0]!, a.hiddenStates[0]!)).toBeLessThan(1e-4);
    expect(maxAbsDiff(a.logits, teacherLogits)).toBeLessThan(1e-4);
  });

  /**
   * One run of `model` on the WebGPU provider: its outputs, and the provider of each node from onnxruntime's profile.
   */
  async function runOnWebGpu(
    model: Uint8Array,
    feeds: Record<string, ort.Tensor>,
  ): Promise<{ out: Record<string, ort.Tensor>; placement: Map<string, string> }> {
    const profileDir = mkdtempSync(join(tmpdir(), 'distill-ort-profile-'));
    const session = await ort.InferenceSession.create(model, {
      executionProviders: [{ name: 'webgpu' }, 'cpu'],
      enableProfiling: true,
      profileFilePrefix: join(profileDir, 'p'),
    });
    const out = await session.run(feeds);
    const placement = profiledPlacement(session, profileDir);
    await session.release();
    return { out, placement };
  }

  it(
    'runs top-k soft targets in two stages on the GPU, ' + 'every node of them there, exactly as the one-stage TopK',
    async () => {
      // The provider's TopK sorts rows above 2048 values in global memory (WEBGPU_TOPK_GROUP); the two-stage form
      // must give the same values and ids, bit for bit (both use this provider's softmax), and add no CPU node.
      const [n, v] = [8, 6144];
      const logits = new ort.Tensor('float32', tiedLogits(n, v, 11), [1, n, v]);
      for (const k of [8, 200]) {
        const run = async (
          group: number,
        ): Promise<{ probs: Float32Array; ids: BigInt64Array; placement: Map<string, string> }> => {
          const { out, placement } = await runOnWebGpu(softTargetModel(n, v, k, group, 17, true), { logits });
          return {
            probs: out['distill_soft_targets']!.data as Float32Array,
            ids: out['distill_soft_topk_ids']!.data as BigInt64Array,
            placement,
          };
        };
        const one = await run(Infinity);
        const two = await run(1000);
        expect(two.probs).toEqual(one.probs);
        expect(two.ids).toEqual(one.ids);
        const topkNodes = [...two.placement].filter(([name]) => name.startsWith('distill_topk'));
        expect(topkNodes.length).toBe(10); // Pad, 3 Reshape, 2 TopK, Gather, Add, GatherElements, Cast
        expect(topkNodes.filter(([, provider]) => provider !== 'WebGpuExecutionProvider')).toEqual([]);
      }
    },
  );

  it(
    'computes full soft targets and Σ p log p on the GPU (no LogSoftmax, ' +
      'which would run on the CPU), finite where p underflows',
    async () => {
      const [n, v] = [4, 6144];
      const x = underflowingLogits(n, v, 5);
      const { out, placement } = await runOnWebGpu(softTargetModel(n, v, 0, Infinity, 17, true), {
        logits: new ort.Tensor('float32', x, [1, n, v]),
      });
      expect(
        [...placement].filter(
          ([name, provider]) => name.startsWith('distill_') && provider !== 'WebGpuExecutionProvider',
        ),
      ).toEqual([]);
      const graph = out['distill_soft_neg_entropy']!.data as Float32Array;
      const host = teacherSoftTargets(
        x,
        Int32Array.from({ length: n }, (_, i) => i),
        v,
        2,
        false,
      );
      for (let r = 0; r < n; r++)
        expect(Math.abs(graph[r]! - host.negEntropy[r]!)).toBeLessThanOrEqual(negEntropyBound(host.probs, r * v, v));
    },
  );
});
