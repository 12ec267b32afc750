// The attention softmax with its mask as an op with its own gradient:
//   y = softmax(s + m)          s: the scores q·kᵀ/√d [B, A, T, T]; m: the mask's bias [B, T] (0 or −1e9 per key)
//   ∂s = y · (∂y − Σ_keys ∂y·y)   (per row; the bias gets no gradient: it is not learned)
// Its kernels (webgpu) are in student/kernels/attention-softmax.ts; elsewhere the tfjs ops (maskedSoftmaxOps).

import * as tf from '@tensorflow/tfjs';

export const MASKED_SOFTMAX_KERNEL = 'DistillMaskedSoftmax';
export const MASKED_SOFTMAX_GRAD_KERNEL = 'DistillMaskedSoftmaxGrad';

/** softmax(scores + the mask's bias) in tfjs ops: scores [B, A, T, T], maskBias [B, 1, 1, T]. */
export function maskedSoftmaxOps(scores: tf.Tensor4D, maskBias: tf.Tensor4D): tf.Tensor4D {
  return tf.softmax(tf.add(scores, maskBias), -1) as tf.Tensor4D;
}

/** softmax(scores + maskBias) over the keys: one WGSL program each way where registered (webgpu), else tfjs ops. */
export function maskedSoftmax(scores: tf.Tensor4D, maskBias: tf.Tensor4D): tf.Tensor4D {
  if (!tf.getKernel(MASKED_SOFTMAX_KERNEL, tf.getBackend()) || scores.dtype !== 'float32')
    return maskedSoftmaxOps(scores, maskBias);
  const [B, A, T, K] = scores.shape;
  if (maskBias.shape[0] !== B || maskBias.shape[3] !== K)
    throw new Error(`maskedSoftmax: mask [${maskBias.shape}] for scores [${scores.shape}]`);
  const bias = tf.reshape(maskBias, [B, K]); // [B, T]
  const f = tf.customGrad(((s: tf.Tensor2D, save: (ts: tf.Tensor[]) => void) => {
    // [B·A·T, T]
    const y = tf.engine().runKernel(MASKED_SOFTMAX_KERNEL, { x: s, bias }, { rowsPerBatch: A * T }) as tf.Tensor2D;
    save([y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) =>
        tf.engine().runKernel(MASKED_SOFTMAX_GRAD_KERNEL, { y: saved[0]!, dy }) as tf.Tensor2D,
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return tf.reshape(f(tf.reshape(scores, [B * A * T, K])), [B, A, T, K]);
}
