// Dropout as an op whose mask is a pure function of a seed and the element's index (the definition, and the kernels
// of each backend: student/kernels/dropout.ts). Its gradient is the same kernel on dy: the mask is recomputed, not
// kept. Where a backend has no kernel (tensorflow), tf.dropout.

import * as tf from '@tensorflow/tfjs';

export const DROPOUT_KERNEL = 'DistillDropout';

/**
 * Dropout of `x` at `rate` with the mask of `seed` (each call of a forward pass its own seed): the kernel where the
 * backend has it, its gradient the same mask on dy; else tf.dropout.
 */
export function dropout(x: tf.Tensor, rate: number, seed: number): tf.Tensor {
  if (x.dtype !== 'float32' || !tf.getKernel(DROPOUT_KERNEL, tf.getBackend()))
    return tf.dropout(x, rate, undefined, seed);
  const attrs = { rate, seed } as unknown as tf.NamedAttrMap;
  const f = tf.customGrad(((input: tf.Tensor) => ({
    value: tf.engine().runKernel(DROPOUT_KERNEL, { x: input }, attrs) as tf.Tensor,
    gradFunc: (dy: tf.Tensor) => tf.engine().runKernel(DROPOUT_KERNEL, { x: dy }, attrs) as tf.Tensor,
  })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x) as tf.Tensor;
}
