// The gradients of Sum and Mean without a host-made tensor on GPU backends. tfjs's own (tfjs-core's
// sumGradConfig and meanGradConfig) broadcast dy to x's shape by multiplying with `ones(x.shape)`, and `ones`
// fills a typed array on the host: on a GPU backend every backward pass then uploads one array of x's size per
// reduction (the KL's per-row sums over [N, V] logits: 475 MB a step at bert-base shape, batch 32 × 128). On
// the backends registered here (webgpu) dy is broadcast by the backend itself (BroadcastTo → Tile, a device
// kernel); elsewhere the gradient is tfjs's own form, which is faster on the CPU backends (tfjs-wasm's Tile took
// the tiny student's step from 6,800 to 4,000 tokens/s: measured A/B with distill bench). The values are the
// same either way: multiplying by 1 is exact, so every backend's numbers are unchanged bit for bit.

import * as tf from '@tensorflow/tfjs';

/** Backends whose tensors live on a device: there dy is broadcast by a kernel, not multiplied by host-made ones. */
const DEVICE_BACKENDS = new Set(['webgpu']);

/** dy [reduced shape] broadcast back over the reduced axes of x [x.shape]. */
function broadcastOverAxes(dy: tf.Tensor, x: tf.Tensor, axis: number | number[]): tf.Tensor {
  const axes = tf.util.parseAxisParam(axis, x.shape);
  const expanded = x.shape.slice();
  for (const a of axes) expanded[a] = 1;
  const reshaped = tf.reshape(dy, expanded);
  return DEVICE_BACKENDS.has(tf.getBackend())
    ? tf.broadcastTo(reshaped, x.shape)
    : tf.mul(reshaped, tf.ones(x.shape, 'float32')); // the latter: tfjs's own
}

/**
 * The gradients of Sum and Mean that replace tfjs's once a device backend (webgpu) starts (student/kernels/lists.ts):
 * dy broadcast over the reduced axes; Mean's divided by the number of values each mean took.
 */
export const DEVICE_REDUCTION_GRADS: tf.GradConfig[] = (
  [
    [tf.Sum, false],
    [tf.Mean, true],
  ] as const
).map(([kernelName, mean]) => ({
  kernelName,
  inputsToSave: ['x'],
  gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
    const [x] = saved as [tf.Tensor];
    const { axis } = attrs as unknown as tf.SumAttrs; // MeanAttrs has the same `axis`
    const broadcast = (): tf.Tensor => broadcastOverAxes(dy as tf.Tensor, x, axis);
    if (!mean) return { x: broadcast };
    const reduceSize = tf.util.parseAxisParam(axis, x.shape).reduce((n, a) => n * x.shape[a]!, 1);
    return { x: () => tf.div(broadcast(), reduceSize) };
  },
}));
