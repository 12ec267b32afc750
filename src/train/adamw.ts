// AdamW as PyTorch's torch.optim.AdamW computes it (decoupled weight decay, bias correction), with the
// learning-rate schedule of transformers' get_linear_schedule_with_warmup. Moments are tf.Variables held
// beside the parameters; their values can be read and restored exactly for checkpoints.

import * as tf from '@tensorflow/tfjs';
import { guardGpu } from '../../student/backend.js';
import { adamwUpdate, type AdamWCoefficients } from '../../student/ops/adamw.js';
import { sumSquaresPartials } from '../../student/ops/sum-squares.js';

export interface AdamWOptions {
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

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

  /**
   * One update with learning rate `lr` from `grads` (same order as the params), each multiplied by `gradScale`
   * first: the clipping coefficient (globalNormClip) times 1/loss_scale with precision fp16-mixed. A power-of-2
   * part changes no rounding, so g·(c·2⁻ᵏ) is exactly (g·c)·2⁻ᵏ: clipped, then unscaled.
   */
  apply(grads: tf.Tensor[], lr: number, gradScale = 1): void {
    const [b1, b2] = this.options.betas;
    this.step++;
    const t = this.step;
    const stepSize = lr / (1 - b1 ** t);
    const biasCorrection2Sqrt = Math.sqrt(1 - b2 ** t);
    const decayFactor = 1 - lr * this.options.weightDecay;
    this.params.forEach((p, i) => {
      const decay = this.decay[i] && this.options.weightDecay !== 0;
      const c: AdamWCoefficients = {
        b1,
        b2,
        biasCorrection2Sqrt,
        eps: this.options.eps,
        stepSize,
        decayFactor: decay ? decayFactor : 1,
      };
      // One tidy per parameter: the temporaries of one parameter are freed before the next one's are made, so
      // the peak is a few copies of the largest parameter, not of the whole model.
      tf.tidy(() => {
        const m = this.expAvg[i]!;
        const v = this.expAvgSq[i]!;
        const [pNew, mNew, vNew] = adamwUpdate(p, grads[i]!, m, v, c, gradScale);
        m.assign(mNew);
        v.assign(vNew);
        p.assign(pNew);
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
  // On webgpu one dispatch per four tensors gives [64] partial sums each (student/kernels/sum-squares.ts).
  const partials = sumSquaresPartials(tensors);
  // Each square freed as soon as it is summed (its own tidy): all of them at once would be another copy of every
  // gradient at the update's peak (265 MB for a bert-base student; the wasm backend has 4 GiB for everything).
  let parts: tf.Tensor[] = partials ?? tensors.map((g) => tf.tidy(() => tf.sum(tf.square(g))));
  if (parts.length === 0) return tf.scalar(0);
  while (parts.length > 1) {
    const next: tf.Tensor[] = [];
    for (let i = 0; i < parts.length; i += 4)
      next.push(parts.length - i === 1 ? parts[i]! : tf.addN(parts.slice(i, i + 4)));
    parts = next;
  }
  return (partials ? tf.sum(parts[0]!) : parts[0]) as tf.Scalar;
}

/**
 * Clipping by the global L2 norm (torch.nn.utils.clip_grad_norm_), as a factor: returns the norm before clipping
 * and the coefficient the gradients are to be multiplied by (1 when under `maxNorm`), which AdamW.apply takes
 * with the loss scale's 1/S as one factor instead of a pass over every gradient. The norm is read asynchronously
 * (one scalar), so it works on backends that cannot read synchronously. `gradScale`: the gradients are `grads` ×
 * gradScale (a power of 2, 1/loss_scale): the norm is theirs (exactly: a power-of-2 scale commutes with the sums,
 * the square root and their roundings).
 */
export async function globalNormClip(
  grads: tf.Tensor[],
  maxNorm: number,
  gradScale = 1,
): Promise<{ norm: number; coef: number }> {
  const squared = tf.tidy(() => sumOfSquares(grads));
  const norm = Math.sqrt((await guardGpu(squared.data()))[0]!) * gradScale;
  squared.dispose();
  if (maxNorm <= 0 || !Number.isFinite(norm)) return { norm, coef: 1 };
  // PyTorch multiplies by clamp(max_norm / (norm + 1e-6), max=1), a float32 number: so does every path here.
  return { norm, coef: Math.min(1, Math.fround(maxNorm / (norm + 1e-6))) };
}
