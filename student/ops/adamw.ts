// One parameter's AdamW update as an op (the optimizer around it: src/train/adamw.ts). The kernel DistillAdamW where a
// backend has it (wasm with SIMD: student/kernels/simd.ts; webgpu: student/kernels/adamw-webgpu.ts), in place on the
// optimizer's variables where they hold their memory alone; elsewhere the tfjs-op form (adamwOps). No gradient: it
// is applied, not differentiated.

import * as tf from '@tensorflow/tfjs';

export const ADAMW_KERNEL = 'DistillAdamW';

/** The coefficients of one AdamW update of one parameter (the same operations as the tfjs-op form). */
export interface AdamWCoefficients {
  b1: number;
  b2: number;
  /** √(1 − β2^t) */
  biasCorrection2Sqrt: number;
  eps: number;
  /** lr / (1 − β1^t) */
  stepSize: number;
  /** 1 − lr·weight_decay for a decayed parameter, else 1. */
  decayFactor: number;
}

/**
 * One parameter's AdamW update as an op: [p', m', v'] from p, g, m, v. Where the backend registered the kernel
 * DistillAdamW (student/kernels/simd.ts: one SIMD pass on wasm, in place; adamw-webgpu.ts: one dispatch on webgpu,
 * in place) it runs; elsewhere these tfjs ops.
 */
export function adamwUpdate(
  p: tf.Tensor,
  g: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  c: AdamWCoefficients,
  gradScale = 1,
): [tf.Tensor, tf.Tensor, tf.Tensor] {
  const kernel =
    p.dtype === 'float32' && g.dtype === 'float32' && tf.getKernel(ADAMW_KERNEL, tf.getBackend()) !== undefined;
  // `gradScale` (the clipping coefficient times 1/loss_scale) multiplies g first: the kernels in their one pass
  // (a float32 multiplication, as tf.mul's), the ops form by a multiplication of its own.
  if (kernel)
    return tf
      .engine()
      .runKernel(ADAMW_KERNEL, { param: p, grad: g, m, v }, { ...c, gradScale: Math.fround(gradScale) }) as unknown as [
      tf.Tensor,
      tf.Tensor,
      tf.Tensor,
    ];
  return adamwOps(p, gradScale === 1 ? g : tf.mul(g, gradScale), m, v, c);
}

/** The tfjs-op form of one AdamW update (what DistillAdamW computes where it is registered). */
export function adamwOps(
  p: tf.Tensor,
  g: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  c: AdamWCoefficients,
): [tf.Tensor, tf.Tensor, tf.Tensor] {
  const mNew = tf.add(tf.mul(m, c.b1), tf.mul(g, 1 - c.b1));
  const vNew = tf.add(tf.mul(v, c.b2), tf.mul(tf.square(g), 1 - c.b2));
  const decayed = c.decayFactor === 1 ? p : tf.mul(p, c.decayFactor);
  const denom = tf.add(tf.div(tf.sqrt(vNew), c.biasCorrection2Sqrt), c.eps);
  return [tf.sub(decayed, tf.mul(tf.div(mNew, denom), c.stepSize)), mNew, vNew];
}
