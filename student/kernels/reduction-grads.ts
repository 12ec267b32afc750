// The gradients of Sum and Mean without a host-made tensor. tfjs's own (tfjs-core's sumGradConfig and
// meanGradConfig) broadcast dy to x's shape by multiplying with `ones(x.shape)`, and `ones` fills a typed array
// on the host: on a GPU backend every backward pass then uploads one array of x's size per reduction (the KL's
// per-row sums over [N, V] logits: 475 MB a step at bert-base shape, batch 32 × 128). Here dy is broadcast by
// the backend itself (BroadcastTo → Tile, a device kernel). The values are the same: multiplying by 1 is exact,
// so every backend's numbers are unchanged bit for bit.

import * as tf from '@tensorflow/tfjs';

let registered = false;

/** dy [reduced shape] broadcast back over the reduced axes of x [x.shape]. */
function broadcastOverAxes(dy: tf.Tensor, x: tf.Tensor, axis: number | number[]): tf.Tensor {
  const axes = tf.util.parseAxisParam(axis, x.shape);
  const expanded = x.shape.slice();
  for (const a of axes) expanded[a] = 1;
  return tf.broadcastTo(tf.reshape(dy, expanded), x.shape);
}

/** Replace tfjs's Sum and Mean gradients (once per process; for every backend). */
export function registerDeviceReductionGrads(): void {
  if (registered) return;
  registered = true;
  tf.registerGradient({
    kernelName: tf.Sum,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved as tf.Tensor[];
      const { axis } = attrs as unknown as tf.SumAttrs;
      return { x: () => broadcastOverAxes(dy as tf.Tensor, x!, axis) };
    },
  });
  tf.registerGradient({
    kernelName: tf.Mean,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved as tf.Tensor[];
      const { axis } = attrs as unknown as tf.MeanAttrs;
      const axes = tf.util.parseAxisParam(axis, x!.shape);
      const reduceSize = axes.reduce((n, a) => n * x!.shape[a]!, 1);
      return { x: () => tf.div(broadcastOverAxes(dy as tf.Tensor, x!, axis), reduceSize) };
    },
  });
}
