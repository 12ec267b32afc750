// Every AdamW of the project against torch.optim.AdamW (test/fixtures/adamw/, made by make_adamw_reference.py): 20
// updates on fixed gradients (weight decay 0.1 on the recipe's decayed group, betas (0.9, 0.98), eps 1e-6, warm-up then
// linear decay, clipping on some updates, a loss scale), every element of p, m and v checked against PyTorch's float64
// result within a bound derived from float32 arithmetic (below). Each updates-*.test.ts runs it on its own path.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { join } from 'node:path';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { AdamW, linearWarmupDecay } from '../src/train/adamw.js';
import { studentParamSpecs } from '../student/model.js';
import type { StudentConfig } from '../student/config.js';
import { prefetch } from '../student/backend.js';
import { REPO } from './helpers.js';
import reference from './fixtures/adamw/adamw.json' with { type: 'json' };

const FILE = join(REPO, 'test', 'fixtures', 'adamw', 'adamw.safetensors');
/** float32's unit roundoff: one rounding changes a value by at most this relative amount. */
const U = 2 ** -24;

/**
 * The ways an AdamW runs: on the optimizer's variables as train runs it (in place where a kernel is registered: wasm
 * SIMD, webgpu; the tfjs-op form on cpu and wasm without SIMD), on fresh copies (a kernel never rewrites memory that
 * something else reads), as three GPU programs (webgpu, in place turned off).
 */
export type AdamWForm = 'variables' | 'on copies' | 'three programs';

interface Trajectory {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
}
type Bounds = Trajectory;

const names = reference.params.map((p) => p.name);

/** The gradients of update u as given (times the loss scale), float32 values. */
function gradient(file: SafetensorsFile, u: number, name: string): Float32Array {
  return file.getFloat32(`grad.${u}.${name}`);
}

/**
 * AdamW in float64 over the fixture, as torch.optim.AdamW computes it (checked against PyTorch's result below), and
 * alongside it, per element, a bound on how far a float32 computation of the same steps can be from it. The bound
 * follows each quantity's error through one update, counting each float32 operation as one rounding of at most U
 * relative (first order; the constants count the operations, generously):
 *   ĝ = g·gs (gs = clip coefficient / loss scale, itself rounded to float32):            2U·|ĝ|
 *   m' = β1·m + (1−β1)·ĝ:   e_m' = β1·e_m + (1−β1)·2U|ĝ| + 4U·(β1|m| + (1−β1)|ĝ|)
 *   v' = β2·v + (1−β2)·ĝ²:  e_v' = β2·e_v + (1−β2)·4U·ĝ² + 5U·(β2·v + (1−β2)·ĝ²)
 *   d = √v'/√(1−β2ᵗ) + ε:   e_d = e_v'/(2√v'·√(1−β2ᵗ)) + 4U·d
 *   s = lr/(1−β1ᵗ)·m'/d:    e_s = lr/(1−β1ᵗ)·(e_m'/d + |m'|·e_d/d²) + 4U·|s|
 *   p' = p·(1 − lr·wd) − s: e_p' = e_p + e_s + 4U·(|p| + |s|)
 * The bound checked is twice this: the fused forms (one SIMD pass, one GPU program) may order or fuse operations
 * otherwise, and second-order terms are left out above; both stay far below the first-order sum's margin.
 */
function float64Run(file: SafetensorsFile, index: number, decay: boolean): { exact: Trajectory; bound: Bounds } {
  const name = names[index]!;
  const p = Float64Array.from(file.getFloat32(`initial.${name}`));
  const n = p.length;
  const m = new Float64Array(n);
  const v = new Float64Array(n);
  const ep = new Float64Array(n);
  const em = new Float64Array(n);
  const ev = new Float64Array(n);
  const [b1, b2] = reference.betas as [number, number];
  for (let u = 0; u < reference.updates; u++) {
    const t = u + 1;
    const rec = reference.records[u]!;
    const lr = rec.lr;
    const gs = rec.coef / reference.loss_scale;
    const g = gradient(file, u, name);
    const bc1 = 1 - b1 ** t;
    const bc2Sqrt = Math.sqrt(1 - b2 ** t);
    const df = decay ? 1 - lr * reference.weight_decay : 1;
    for (let i = 0; i < n; i++) {
      const gh = g[i]! * gs;
      const aG = Math.abs(gh);
      em[i] = b1 * em[i]! + (1 - b1) * 2 * U * aG + 4 * U * (b1 * Math.abs(m[i]!) + (1 - b1) * aG);
      ev[i] = b2 * ev[i]! + (1 - b2) * 4 * U * gh * gh + 5 * U * (b2 * v[i]! + (1 - b2) * gh * gh);
      m[i] = b1 * m[i]! + (1 - b1) * gh;
      v[i] = b2 * v[i]! + (1 - b2) * gh * gh;
      const sqrtV = Math.sqrt(v[i]!);
      const d = sqrtV / bc2Sqrt + reference.eps;
      const ed = (sqrtV > 0 ? ev[i]! / (2 * sqrtV * bc2Sqrt) : Math.sqrt(ev[i]!) / bc2Sqrt) + 4 * U * d;
      const s = (lr / bc1) * (m[i]! / d);
      const es = (lr / bc1) * (em[i]! / d + (Math.abs(m[i]!) * ed) / (d * d)) + 4 * U * Math.abs(s);
      ep[i] = ep[i]! + es + 4 * U * (Math.abs(p[i]!) + Math.abs(s));
      p[i] = p[i]! * df - s;
    }
  }
  return { exact: { p, m, v }, bound: { p: ep, m: em, v: ev } };
}

/** The float64 runs of every parameter, each checked against PyTorch's float64 result (the same algorithm). */
export function adamwReference(): { exact: Trajectory[]; bound: Bounds[]; file: SafetensorsFile } {
  const file = SafetensorsFile.read(FILE);
  const runs = reference.params.map((p, i) => float64Run(file, i, p.decay));
  runs.forEach((r, i) => {
    for (const k of ['p', 'm', 'v'] as const) {
      const torch = file.get(`final.${k}.${names[i]}`).data as Float64Array;
      torch.forEach((x, j) =>
        expect(Math.abs(x - r.exact[k][j]!), `${k} ${names[i]}[${j}]`).toBeLessThanOrEqual(1e-12 * (1 + Math.abs(x))),
      );
    }
  });
  return { exact: runs.map((r) => r.exact), bound: runs.map((r) => r.bound), file };
}

/** The project's AdamW over the fixture on the current backend, in `form`: the final p, m and v (float32). */
async function projectRun(
  file: SafetensorsFile,
  form: AdamWForm,
  setInPlace?: (on: boolean) => void,
): Promise<{ p: Float32Array[]; m: Float32Array[]; v: Float32Array[] }> {
  const params = reference.params.map((p) =>
    tf.tidy(() => tf.variable(tf.tensor(file.getFloat32(`initial.${p.name}`), p.shape))),
  );
  const optimizer = new AdamW(
    params,
    reference.params.map((p) => p.decay),
    { betas: reference.betas as [number, number], eps: reference.eps, weightDecay: reference.weight_decay },
  );
  if (form === 'three programs') setInPlace!(false);
  try {
    for (let u = 0; u < reference.updates; u++) {
      const grads = reference.params.map((p) => tf.tensor(gradient(file, u, p.name), p.shape));
      // On copies: a second reference to each parameter's memory, so that no kernel may rewrite it in place.
      const holds = form === 'on copies' ? [...params, ...optimizer.moments()].map((x) => tf.clone(x)) : [];
      const lr = reference.lr * linearWarmupDecay(u, reference.warmup_updates, reference.updates);
      expect(lr).toBeCloseTo(reference.records[u]!.lr, 15);
      optimizer.apply(grads, lr, reference.records[u]!.coef / reference.loss_scale);
      tf.dispose([...grads, ...holds]);
    }
    await prefetch([...params, ...optimizer.moments()]);
    const read = (xs: tf.Tensor[]): Float32Array[] => xs.map((x) => Float32Array.from(x.dataSync() as Float32Array));
    return { p: read(params), m: read(optimizer.expAvg), v: read(optimizer.expAvgSq) };
  } finally {
    if (form === 'three programs') setInPlace!(true);
    optimizer.dispose();
    tf.dispose(params);
  }
}

/**
 * Each element of the project's p, m and v after the 20 updates within twice the derived bound of PyTorch's; the
 * bound is also shown to be small against what the updates did (not
 * vacuous). Returns the largest error over the bound, for the log.
 */
export async function expectAdamWMatchesTorch(form: AdamWForm, setInPlace?: (on: boolean) => void): Promise<number> {
  const ref = adamwReference();
  const got = await projectRun(ref.file, form, setInPlace);
  let worst = 0;
  let moved = 0;
  let allowed = 0;
  reference.params.forEach((param, i) => {
    const initial = ref.file.getFloat32(`initial.${param.name}`);
    for (const k of ['p', 'm', 'v'] as const) {
      const exact = ref.exact[i]![k];
      const bound = ref.bound[i]![k];
      got[k][i]!.forEach((x, j) => {
        const err = Math.abs(x - exact[j]!);
        const limit = 2 * bound[j]!;
        if (!(err <= limit)) {
          expect.fail(
            `${form}: ${k} of ${param.name}[${j}] is ${x}, PyTorch's ${exact[j]} (error ${err.toExponential(3)}, ` +
              `bound ${limit.toExponential(3)})`,
          );
        }
        worst = Math.max(worst, limit > 0 ? err / limit : 0);
        if (k === 'p') {
          moved += (exact[j]! - initial[j]!) ** 2;
          allowed += limit ** 2;
        }
      });
    }
  });
  // Not vacuous: the bound's RMS is a small part of the updates' own RMS movement of the weights.
  expect(Math.sqrt(allowed / moved)).toBeLessThan(1e-3);
  return worst;
}

/** The names, shapes and decay groups of the fixture are those of a student of its config (the recipe's rule). */
export function expectFixtureIsAStudent(): void {
  const c = reference.config;
  const specs = studentParamSpecs({
    ...c,
    dropout: 0,
    attention_dropout: 0,
    activation: 'gelu',
    pad_token_id: 0,
    initializer_range: 0.02,
  } as StudentConfig);
  expect(specs.map((s) => ({ name: s.name, shape: s.hfShape, decay: !s.noDecay }))).toEqual(reference.params);
}

/** The AdamW reference on one path, in each of its forms. */
export function describeAdamWReference(path: string, forms: AdamWForm[], setInPlace?: (on: boolean) => void): void {
  describe(`AdamW against torch.optim.AdamW (20 updates, every element of p, m, v): ${path}`, () => {
    it("the fixture is a student's parameters with the recipe's decay groups", () => expectFixtureIsAStudent());
    for (const form of forms) {
      it(form, async () => {
        const before = tf.memory().numTensors;
        const worst = await expectAdamWMatchesTorch(form, setInPlace);
        console.log(JSON.stringify({ path, adamw: form, worst_error_over_bound: worst }));
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  });
}
