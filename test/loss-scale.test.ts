// The dynamic loss scale of precision fp16-mixed (src/train/loss-scale.ts) and the update step's use of it
// (src/train/step.ts): an update whose gradients are not finite is skipped (weights, AdamW moments and step
// unchanged) and the scale halves; finite updates in a row double it; a static scale, or scale 1, stops.
// The update-step tests run on the cpu backend: the skip depends only on the gradient norm being non-finite,
// made here by float32's own overflow (a gradient g with g² > 3.4e38); test/updates-webgpu-f16.test.ts has the
// same with f16 products on webgpu, and a whole run with a stop and resume.
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { LossScale, MAX_LOSS_SCALE } from '../src/train/loss-scale.js';
import { HalfPrecisionOverflow, UpdateStep } from '../src/train/step.js';
import { AdamW } from '../src/train/adamw.js';
import { selectBackend } from '../student/backend.js';
import { DistillError } from '../src/core/errors.js';

describe('LossScale', () => {
  it('halves on an overflow, doubles after growthInterval finite updates in a row, and keeps its state', () => {
    const s = new LossScale(1024, 3);
    expect(s.overflow()).toBe(true);
    expect(s.value).toBe(512);
    expect([s.finite(), s.finite()]).toEqual([false, false]);
    expect(s.overflow()).toBe(true); // an overflow restarts the count
    expect(s.value).toBe(256);
    expect([s.finite(), s.finite(), s.finite()]).toEqual([false, false, true]);
    expect(s.value).toBe(512);
    expect(s.finite()).toBe(false);
    expect(s.state()).toEqual({ scale: 512, finite_updates: 1 });
    // A checkpoint's state continues exactly: two more finite updates double it.
    const resumed = new LossScale(1024, 3, s.state());
    expect([resumed.finite(), resumed.finite()]).toEqual([false, true]);
    expect(resumed.value).toBe(1024);
  });

  it('stops at its bounds: never above 2^24, and an overflow at 1 cannot skip', () => {
    const top = new LossScale(MAX_LOSS_SCALE, 1);
    expect(top.finite()).toBe(false);
    expect(top.value).toBe(MAX_LOSS_SCALE);
    const one = new LossScale(2, 5);
    expect(one.overflow()).toBe(true);
    expect(one.overflow()).toBe(false);
    expect(one.value).toBe(1);
  });

  it('growth interval 0 is static: it never changes, and an overflow cannot skip', () => {
    const s = new LossScale(256, 0);
    for (let i = 0; i < 5; i++) s.finite();
    expect(s.value).toBe(256);
    expect(s.overflow()).toBe(false);
    expect(s.value).toBe(256);
  });

  it('refuses a scale that is not a power of 2 in [1, 2^24]', () => {
    expect(() => new LossScale(1000, 10)).toThrow(/not a power of 2/);
    expect(() => new LossScale(0.5, 10)).toThrow(/not a power of 2/);
    expect(() => new LossScale(2 ** 25, 10)).toThrow(/not a power of 2/);
    expect(() => new LossScale(8, 1.5)).toThrow(/growth interval/);
  });
});

describe('the update step with a loss scale (cpu)', () => {
  beforeAll(async () => {
    await selectBackend('cpu');
  });

  // loss = F·w: the gradient of the scaled loss is scale·F, its square (scale·F)². With F = 1e19 it is finite for
  // scale 1 (1e38 < 3.4e38, float32's largest) and not for scale 2 (4e38) or above.
  const F = 1e19;
  const objective = (w: tf.Variable) => () => {
    const loss = tf.mul(tf.sum(w), F) as tf.Scalar;
    return { loss, report: tf.reshape(loss, [1]) as tf.Tensor1D };
  };

  it('skips overflowed updates with nothing applied, halving the scale, then applies and grows', async () => {
    const w = tf.variable(tf.tensor1d([0.5]), true, 'loss-scale-w');
    const optimizer = new AdamW([w], [false], { betas: [0.9, 0.98], eps: 1e-6, weightDecay: 0 });
    const scale = new LossScale(8, 2);
    const step = new UpdateStep([w], optimizer, { gradAccum: 1, maxGradNorm: 0, lossScale: scale });
    const tensors = tf.memory().numTensors;
    const seen: { skipped: boolean; scale: number | undefined; w: number; m: number; adamStep: number }[] = [];
    for (let u = 0; u < 6; u++) {
      await step.accumulate(objective(w));
      const applied = await step.apply(1e-2);
      expect(Number.isFinite(applied.norm)).toBe(!applied.skipped);
      seen.push({
        skipped: applied.skipped,
        scale: applied.lossScale,
        w: w.dataSync()[0]!,
        m: optimizer.expAvg[0]!.dataSync()[0]!,
        adamStep: optimizer.step,
      });
    }
    // 8, 4, 2 overflow; 1 fits twice and the scale doubles to 2, which overflows again (back to 1), then 1 fits.
    expect(seen.map((s) => s.skipped)).toEqual([true, true, true, false, false, true]);
    expect(seen.map((s) => s.scale)).toEqual([4, 2, 1, 1, 2, 1]);
    expect(seen.slice(0, 3).map((s) => [s.w, s.m, s.adamStep])).toEqual([
      [0.5, 0, 0],
      [0.5, 0, 0],
      [0.5, 0, 0],
    ]);
    // The applied updates saw the unscaled gradient F: AdamW's first moment (1 − β1)·F, then β1·that + (1 − β1)·F.
    expect(seen[3]!.m / (0.1 * F)).toBeCloseTo(1, 6); // not 2⁻ᵏ·that: the scale used (1) was divided out
    expect(seen[4]!.m / (0.9 * 0.1 * F + 0.1 * F)).toBeCloseTo(1, 6);
    expect(seen[3]!.adamStep).toBe(1);
    expect(seen[4]!.adamStep).toBe(2);
    expect(seen[5]!.adamStep).toBe(2); // the skipped update left AdamW's step as it was
    expect(seen[5]!.w).toBe(seen[4]!.w);
    // Adam's first step moves w by lr (m̂/√v̂ = 1): 0.5 − 0.01.
    expect(seen[3]!.w).toBeCloseTo(0.49, 6);
    expect(tf.memory().numTensors).toBe(tensors);
    optimizer.dispose();
    w.dispose();
  });

  it('a static scale stops with the fix; a dynamic one at 1 stops with "use fp32"', async () => {
    const w = tf.variable(tf.tensor1d([0.5]), true, 'loss-scale-w2');
    const optimizer = new AdamW([w], [false], { betas: [0.9, 0.98], eps: 1e-6, weightDecay: 0 });
    const fixed = new UpdateStep([w], optimizer, { gradAccum: 1, maxGradNorm: 0, lossScale: new LossScale(64, 0) });
    await fixed.accumulate(objective(w));
    const e1 = await fixed.apply(1e-2).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(HalfPrecisionOverflow);
    expect((e1 as DistillError).hint).toMatch(/--set loss_scale=16.*loss_scale_growth_interval/);
    const atOne = new UpdateStep([w], optimizer, { gradAccum: 1, maxGradNorm: 0, lossScale: new LossScale(1, 10) });
    await atOne.accumulate(() => {
      const loss = tf.mul(tf.sum(w), 1e20) as tf.Scalar; // (1e20)² overflows float32 even unscaled
      return { loss, report: tf.reshape(loss, [1]) as tf.Tensor1D };
    });
    const e2 = await atOne.apply(1e-2).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(HalfPrecisionOverflow);
    expect((e2 as DistillError).hint).toMatch(/use precision "fp32"/);
    expect(w.dataSync()[0]).toBe(0.5);
    expect(optimizer.step).toBe(0);
    optimizer.dispose();
    w.dispose();
  });
});
