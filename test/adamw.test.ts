// AdamW (src/train/adamw.ts) against the formulas of torch.optim.AdamW computed here in float64, on the wasm
// backend's in-place SIMD pass and on the tfjs-op path (cpu), including decoupled weight decay, bias
// correction and the parameters excluded from decay.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { backendAdamW } from '../src/train/step.js';
import { selectBackend } from '../student/kernels/backend.js';
import { wasmSimd } from '../student/kernels/simd.js';
import { maxAbsDiff } from './helpers.js';

function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

/** torch.optim.AdamW, float64. */
function reference(p0: Float32Array, grads: Float32Array[], lrs: number[], decay: boolean, o: { b1: number; b2: number; eps: number; wd: number }): Float64Array {
  const p = Float64Array.from(p0);
  const m = new Float64Array(p.length);
  const v = new Float64Array(p.length);
  grads.forEach((g, k) => {
    const t = k + 1;
    const lr = lrs[k]!;
    for (let i = 0; i < p.length; i++) {
      if (decay) p[i]! *= 1 - lr * o.wd;
      m[i] = o.b1 * m[i]! + (1 - o.b1) * g[i]!;
      v[i] = o.b2 * v[i]! + (1 - o.b2) * g[i]! * g[i]!;
      const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - o.b2 ** t) + o.eps;
      p[i]! -= (lr / (1 - o.b1 ** t)) * (m[i]! / denom);
    }
  });
  return p;
}

describe('AdamW', () => {
  const n = 1001; // not a multiple of 4: the SIMD tail runs too
  const o = { b1: 0.9, b2: 0.98, eps: 1e-6, wd: 0.01 };
  const p0 = random(n, 1);
  const grads = [random(n, 2), random(n, 3), random(n, 4)];
  const lrs = [1e-3, 5e-4, 2e-4];
  const run = async (backend: 'wasm' | 'cpu'): Promise<Float32Array[]> => {
    await selectBackend(backend);
    // Variables that hold their memory alone, as the student's do: on wasm every update takes the SIMD pass.
    const variableOf = (values: Float32Array): tf.Variable => {
      const t = tf.tensor1d(values);
      const v = tf.variable(t);
      t.dispose();
      return v;
    };
    const params = [variableOf(p0), variableOf(p0)];
    const opt = backendAdamW(params, [true, false], { betas: [o.b1, o.b2], eps: o.eps, weightDecay: o.wd });
    const before = tf.memory().numTensors;
    grads.forEach((g, k) => {
      const gs = [tf.tensor1d(g), tf.tensor1d(g)];
      opt.apply(gs, lrs[k]!);
      tf.dispose(gs);
    });
    expect(tf.memory().numTensors).toBe(before);
    const out = params.map((q) => Float32Array.from(q.dataSync() as Float32Array));
    const moments = opt.moments().map((q) => q.dataSync()[7]!);
    expect(moments.every((x) => x !== 0)).toBe(true);
    opt.dispose();
    tf.dispose(params);
    return out;
  };

  for (const backend of ['wasm', 'cpu'] as const) {
    it(`${backend}: matches torch.optim.AdamW's formulas within 1e-6, with and without weight decay`, async () => {
      const [decayed, plain] = await run(backend);
      if (backend === 'wasm') expect(wasmSimd()).not.toBeNull();
      expect(maxAbsDiff(decayed!, reference(p0, grads, lrs, true, o))).toBeLessThan(1e-6);
      expect(maxAbsDiff(plain!, reference(p0, grads, lrs, false, o))).toBeLessThan(1e-6);
      expect(maxAbsDiff(decayed!, plain!)).toBeGreaterThan(1e-7); // the decay did something
    });
  }

  it('the in-place SIMD pass and the tfjs-op path agree to the last bits', async () => {
    const [wasmDecayed, wasmPlain] = await run('wasm');
    const [cpuDecayed, cpuPlain] = await run('cpu');
    expect(maxAbsDiff(wasmDecayed!, cpuDecayed!)).toBeLessThan(1e-7);
    expect(maxAbsDiff(wasmPlain!, cpuPlain!)).toBeLessThan(1e-7);
  });
});
