// LayerNorm over the last axis as an op: one kernel (DistillLayerNorm) with a forward and a backward part, which also
// gives the gradients of γ and β; its kernels are in student/kernels/layer-norm.ts. Where a backend has none
// (tensorflow), the tfjs ops (layerNormOps).

import * as tf from '@tensorflow/tfjs';

export const LAYER_NORM_KERNEL = 'DistillLayerNorm';

/** The tfjs-op form (every backend without the kernel). */
export function layerNormOps(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), gamma), beta);
}

/** LayerNorm over the last axis: our kernel where registered (webgpu, wasm, cpu), else the tfjs ops. */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  if (!tf.getKernel(LAYER_NORM_KERNEL, tf.getBackend()) || x.dtype !== 'float32')
    return layerNormOps(x, gamma, beta, eps);
  const H = x.shape[x.shape.length - 1]!;
  const rows = x.size / H;
  const f = tf.customGrad(((x2: tf.Tensor2D, g: tf.Tensor1D, b: tf.Tensor1D, save: (ts: tf.Tensor[]) => void) => {
    const [y, stats] = tf
      .engine()
      .runKernel(LAYER_NORM_KERNEL, { x: x2, gamma: g, beta: b }, { eps, part: 'forward' }) as unknown as [
      tf.Tensor2D,
      tf.Tensor2D,
    ];
    save([x2, g, stats]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
        const [sx, sg, sstats] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor2D];
        return tf
          .engine()
          .runKernel(
            LAYER_NORM_KERNEL,
            { x: sx, gamma: sg, beta: sstats, dy },
            { eps, part: 'backward' },
          ) as unknown as tf.Tensor[];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return tf.reshape(f(tf.reshape(x, [rows, H]), gamma, beta), x.shape);
}
