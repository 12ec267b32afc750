// AdamW (src/train/adamw.ts) against the formulas of torch.optim.AdamW computed here in float64, on the wasm
// backend's DistillAdamW kernel (one in-place SIMD pass) and on the tfjs-op path (cpu), including decoupled
// weight decay, bias correction and the parameters excluded from decay.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { AdamW } from '../src/train/adamw.js';
import { selectBackend } from '../student/backend.js';
import { wasmSimd } from '../student/kernels/simd.js';
import { ADAMW_KERNEL, adamwUpdate } from '../student/ops/adamw.js';
import { maxAbsDiff } from './helpers.js';

function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

/** torch.optim.AdamW, float64. */
function reference(
  p0: Float32Array,
  grads: Float32Array[],
  lrs: number[],
  decay: boolean,
  o: { b1: number; b2: number; eps: number; wd: number },
  moments?: { m: Float64Array; v: Float64Array },
): Float64Array {
  const p = Float64Array.from(p0);
  const m = moments?.m ?? new Float64Array(p.length);
  const v = moments?.v ?? new Float64Array(p.length);
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
    const opt = new AdamW(params, [true, false], { betas: [o.b1, o.b2], eps: o.eps, weightDecay: o.wd });
    const before = tf.memory().numTensors;
    const ids = params.map((q) => q.dataId);
    grads.forEach((g, k) => {
      const gs = [tf.tensor1d(g), tf.tensor1d(g)];
      opt.apply(gs, lrs[k]!);
      tf.dispose(gs);
    });
    expect(tf.memory().numTensors).toBe(before);
    // On wasm the kernel wrote in place: the variables kept their memory; on cpu the ops made new tensors.
    expect(params.map((q, i) => q.dataId === ids[i])).toEqual([backend === 'wasm', backend === 'wasm']);
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

  for (const backend of ['wasm', 'cpu'] as const) {
    it(
      `${backend}: the gradient's factor (gradScale: a clipping coefficient times 1/loss_scale) is applied in the ` +
        `update: moments and weights as torch's on g·gradScale`,
      async () => {
        // Adam's step is nearly blind to a gradient's scale (m/√v), its moments are not: they are what would show a
        // factor dropped (here m would be 1/0.046 ≈ 22 times too large).
        await selectBackend(backend);
        const gradScale = Math.fround(0.37) * 2 ** -3;
        const t = tf.tensor1d(p0);
        const param = tf.variable(t);
        t.dispose();
        const opt = new AdamW([param], [true], { betas: [o.b1, o.b2], eps: o.eps, weightDecay: o.wd });
        grads.forEach((g, k) => {
          const gt = tf.tensor1d(g);
          opt.apply([gt], lrs[k]!, gradScale);
          gt.dispose();
        });
        const moments = { m: new Float64Array(n), v: new Float64Array(n) };
        const want = reference(
          p0,
          grads.map((g) => g.map((x) => x * gradScale)),
          lrs,
          true,
          o,
          moments,
        );
        expect(maxAbsDiff(param.dataSync(), want)).toBeLessThan(1e-6);
        // m ~ 0.5·0.046 and v ~ (0.5·0.046)²: float32 rounding of each, far below these bounds.
        expect(maxAbsDiff(opt.expAvg[0]!.dataSync(), moments.m)).toBeLessThan(1e-8);
        expect(maxAbsDiff(opt.expAvgSq[0]!.dataSync(), moments.v)).toBeLessThan(1e-10);
        expect(
          maxAbsDiff(
            opt.expAvg[0]!.dataSync(),
            moments.m.map((x) => x / gradScale),
          ),
        ).toBeGreaterThan(1e-3);
        opt.dispose();
        param.dispose();
      },
    );
  }

  it('the in-place SIMD pass and the tfjs-op path agree to the last bits', async () => {
    const [wasmDecayed, wasmPlain] = await run('wasm');
    const [cpuDecayed, cpuPlain] = await run('cpu');
    expect(maxAbsDiff(wasmDecayed!, cpuDecayed!)).toBeLessThan(1e-7);
    expect(maxAbsDiff(wasmPlain!, cpuPlain!)).toBeLessThan(1e-7);
  });

  it(
    'wasm: on tensors that share their memory the kernel ' + 'works on copies and leaves its inputs as they were',
    async () => {
      await selectBackend('wasm');
      expect(tf.getKernel(ADAMW_KERNEL, 'wasm')).toBeDefined();
      const c = {
        b1: o.b1,
        b2: o.b2,
        biasCorrection2Sqrt: Math.sqrt(1 - o.b2),
        eps: o.eps,
        stepSize: 1e-3 / (1 - o.b1),
        decayFactor: 1 - 1e-3 * o.wd,
      };
      const [p, g, m, v] = [p0, grads[0]!, grads[1]!, grads[2]!.map(Math.abs)].map((x) => tf.tensor1d(x)) as [
        tf.Tensor1D,
        tf.Tensor1D,
        tf.Tensor1D,
        tf.Tensor1D,
      ];
      const shared = tf.clone(p); // a second holder of p's memory: p may not be written in place
      const kernel = adamwUpdate(p, g, m, v, c).map((t) => Float32Array.from(t.dataSync()));
      expect(Float32Array.from(p.dataSync())).toEqual(p0); // unchanged
      await selectBackend('cpu');
      const [pc, gc, mc, vc] = [p0, grads[0]!, grads[1]!, grads[2]!.map(Math.abs)].map((x) => tf.tensor1d(x)) as [
        tf.Tensor1D,
        tf.Tensor1D,
        tf.Tensor1D,
        tf.Tensor1D,
      ];
      const ops = adamwUpdate(pc, gc, mc, vc, c).map((t) => t.dataSync());
      kernel.forEach((k, i) => expect(maxAbsDiff(k, ops[i]!)).toBeLessThan(1e-7));
      expect(maxAbsDiff(kernel[0]!, p0)).toBeGreaterThan(1e-4); // the update moved p
      shared.dispose();
    },
  );
});
