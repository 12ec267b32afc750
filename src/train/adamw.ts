// AdamW as PyTorch's torch.optim.AdamW computes it (decoupled weight decay, bias correction), with the
// learning-rate schedule of transformers' get_linear_schedule_with_warmup. Moments are tf.Variables held
// beside the parameters; their values can be read and restored exactly for checkpoints.

import * as tf from '@tensorflow/tfjs';
import { guardGpu } from '../../student/kernels/backend.js';
import type { AdamWCoefficients } from '../../student/kernels/simd.js';

export interface AdamWOptions {
  betas: [number, number];
  eps: number;
  weightDecay: number;
  /**
   * An update of one parameter in place, when the backend has one (student/kernels/simd.ts inPlaceAdamW: one
   * SIMD pass on wasm); it returns false where it cannot apply, and the tfjs-op form below runs.
   */
  inPlace?: InPlaceAdamW;
}

export type InPlaceAdamW = (p: tf.Variable, g: tf.Tensor, m: tf.Variable, v: tf.Variable, c: AdamWCoefficients) => boolean;

export class AdamW {
  readonly options: AdamWOptions;
  /** Updates applied so far (PyTorch's `step` in the optimizer state). */
  step = 0;
  private readonly params: tf.Variable[];
  private readonly decay: boolean[];
  readonly expAvg: tf.Variable[];
  readonly expAvgSq: tf.Variable[];

  /** `decay[i]`: whether params[i] takes weight decay. */
  constructor(params: tf.Variable[], decay: boolean[], options: AdamWOptions) {
    this.params = params;
    this.decay = decay;
    this.options = options;
    const zeros = (p: tf.Variable): tf.Variable => {
      const z = tf.zerosLike(p);
      const v = tf.variable(z, false);
      z.dispose(); // the variable holds the memory alone (so that it may be updated in place)
      return v;
    };
    this.expAvg = params.map(zeros);
    this.expAvgSq = params.map(zeros);
  }

  /** One update with learning rate `lr` from `grads` (same order as the params). */
  apply(grads: tf.Tensor[], lr: number): void {
    const [b1, b2] = this.options.betas;
    this.step++;
    const t = this.step;
    const stepSize = lr / (1 - b1 ** t);
    const biasCorrection2Sqrt = Math.sqrt(1 - b2 ** t);
    const decayFactor = 1 - lr * this.options.weightDecay;
    const inPlace = this.options.inPlace;
    this.params.forEach((p, i) => {
      const g = grads[i]!;
      const m = this.expAvg[i]!;
      const v = this.expAvgSq[i]!;
      const decay = this.decay[i] && this.options.weightDecay !== 0;
      if (inPlace?.(p, g, m, v, { b1, b2, biasCorrection2Sqrt, eps: this.options.eps, stepSize, decayFactor: decay ? decayFactor : 1 })) return;
      // One tidy per parameter: the temporaries of one parameter are freed before the next one's are made, so
      // the peak is a few copies of the largest parameter, not of the whole model.
      tf.tidy(() => {
        const mNew = tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1));
        const vNew = tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2));
        m.assign(mNew);
        v.assign(vNew);
        const decayed = decay ? tf.mul(p, decayFactor) : p;
        const denom = tf.add(tf.div(tf.sqrt(vNew), biasCorrection2Sqrt), this.options.eps);
        p.assign(tf.sub(decayed, tf.mul(tf.div(mNew, denom), stepSize)));
      });
    });
  }

  /** The first and second moments, one tensor per parameter each. */
  moments(): tf.Variable[] {
    return [...this.expAvg, ...this.expAvgSq];
  }

  dispose(): void {
    for (const v of [...this.expAvg, ...this.expAvgSq]) v.dispose();
  }
}

/** transformers' get_linear_schedule_with_warmup: the multiplier of the peak lr for the update after `done` updates. */
export function linearWarmupDecay(done: number, warmupUpdates: number, totalUpdates: number): number {
  if (done < warmupUpdates) return done / Math.max(1, warmupUpdates);
  return Math.max(0, (totalUpdates - done) / Math.max(1, totalUpdates - warmupUpdates));
}

/**
 * The run's learning-rate schedule, as its checkpoints record it: linear warm-up over `warmup` updates, then
 * linear decay to 0 at update `total`. A resumed run whose length changes (`--resume --set max_steps=N`) keeps
 * its warm-up and from then on follows the schedule of a run planned with N updates from the start: the
 * multiplier moves at once to that schedule's value (up when the run is extended) and decays to 0 at update N.
 */
export interface Schedule {
  warmup: number;
  total: number;
}

/** The multiplier of the peak lr for the update after `done` updates. */
export function scheduleFactor(done: number, s: Schedule): number {
  return linearWarmupDecay(done, s.warmup, s.total);
}

/**
 * Σ over the tensors of Σ x², as a scalar. Added four at a time: one AddN over every parameter would bind more
 * buffers than a WebGPU shader stage may (8 on some adapters).
 */
export function sumOfSquares(tensors: tf.Tensor[]): tf.Scalar {
  let parts: tf.Tensor[] = tensors.map((g) => tf.sum(tf.square(g)));
  if (parts.length === 0) return tf.scalar(0);
  while (parts.length > 1) {
    const next: tf.Tensor[] = [];
    for (let i = 0; i < parts.length; i += 4) next.push(parts.length - i === 1 ? parts[i]! : tf.addN(parts.slice(i, i + 4)));
    parts = next;
  }
  return parts[0] as tf.Scalar;
}

/**
 * Clip by the global L2 norm in place of the list (torch.nn.utils.clip_grad_norm_); returns the norm before
 * clipping. The norm is read asynchronously (one scalar), so it works on backends that cannot read synchronously.
 */
export async function clipByGlobalNorm(grads: tf.Tensor[], maxNorm: number): Promise<{ grads: tf.Tensor[]; norm: number }> {
  const squared = tf.tidy(() => sumOfSquares(grads));
  const norm = Math.sqrt((await guardGpu(squared.data()))[0]!);
  squared.dispose();
  if (maxNorm <= 0 || !Number.isFinite(norm)) return { grads, norm };
  const coef = maxNorm / (norm + 1e-6);
  if (coef >= 1) return { grads, norm };
  const clipped = grads.map((g) => tf.mul(g, coef));
  tf.dispose(grads);
  return { grads: clipped, norm };
}
