// GELU (erf form, BERT's "gelu") and gelu(x + bias) as ops: a kernel each way, and the gradient.
//   gelu(x)  = x · Φ(x),                 Φ(x) = ½ (1 + erf(x/√2))
//   gelu'(x) = Φ(x) + x · φ(x),          φ(x) = e^(−x²/2) / √(2π)
// The kernels of each backend are in student/kernels/gelu.ts;
// where a backend has none (tensorflow), the tfjs-op form runs.

import * as tf from '@tensorflow/tfjs';

export const GELU_KERNEL = 'DistillGelu';
export const GELU_GRAD_KERNEL = 'DistillGeluGrad';
export const BIAS_GELU_KERNEL = 'DistillBiasGelu';
export const BIAS_GELU_GRAD_KERNEL = 'DistillBiasGeluGrad';

/** GELU in tfjs ops (any backend). */
export function geluOps(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
}

const fusedGelu = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x]);
  return {
    value: tf.engine().runKernel(GELU_KERNEL, { x }) as tf.Tensor,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.engine().runKernel(GELU_GRAD_KERNEL, { x: saved[0]!, dy }) as tf.Tensor,
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]);

/**
 * gelu(x + bias) for x [N, F] and bias [F] (the FFN's first layer, the MLM head's transform): on webgpu one
 * program each way with the bias add fused in (the backward pass recomputes x + bias; ∂bias = Σ_rows ∂(x + bias));
 * elsewhere gelu(tf.add(x, bias)), unchanged.
 */
export function biasGelu(x: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor2D {
  if (x.dtype !== 'float32' || !tf.getKernel(BIAS_GELU_KERNEL, tf.getBackend()))
    return gelu(tf.add(x, bias)) as tf.Tensor2D;
  const f = tf.customGrad(((x2: tf.Tensor2D, b: tf.Tensor1D, save: tf.GradSaveFunc) => {
    save([x2, b]);
    return {
      value: tf.engine().runKernel(BIAS_GELU_KERNEL, { x: x2, bias: b }) as tf.Tensor2D,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        // [N, F]
        const dz = tf.engine().runKernel(BIAS_GELU_GRAD_KERNEL, { x: saved[0]!, dy, bias: saved[1]! }) as tf.Tensor2D;
        return [dz, tf.sum(dz, 0)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x, bias) as tf.Tensor2D;
}

/** GELU, erf form: one kernel each way where the backend has ours, else tfjs ops. */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (x.dtype === 'float32' && tf.getKernel(GELU_KERNEL, tf.getBackend())) return fusedGelu(x);
  return geluOps(x);
}
