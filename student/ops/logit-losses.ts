// The three logit losses of the distillation head as one op (fusedHeadLosses): the tied projector's product, then the
// kernel DistillLogitLosses (its maths and the kernels of each backend: student/kernels/logit-losses.ts), with the
// gradient through h, E and b. Where a backend has no kernel, losses/total.ts computes the losses in tfjs ops.

import * as tf from '@tensorflow/tfjs';

export const LOGIT_LOSSES_KERNEL = 'DistillLogitLosses';

/** The kernel's attributes. */
export interface LogitLossAttrs {
  /** τ, the temperature the teacher's probabilities were made at. */
  temperature: number;
  alpha_ce: number;
  alpha_mlm: number;
  alpha_mse: number;
  /** Divisors of the means: N_ce and N_mlm. */
  ceCount: number;
  mlmCount: number;
  /** Σ_v p log p of each row, [N] (float64: it cancels against Σ p log q). */
  negEntropy: number[];
}

/** Whether the active backend has the kernel (decided when it started). */
export function hasLogitLossKernel(): boolean {
  return tf.getKernel(LOGIT_LOSSES_KERNEL, tf.getBackend()) !== undefined;
}

/** The teacher's side of the logit losses for the selected rows, on the host. */
export interface LogitLossTargets {
  /** softmax(t/τ), [N, V]; with `topkIds`, its k largest values per row, [N, k]. */
  probs: Float32Array;
  /** Top-k soft targets: the token ids of `probs`, [N, k]. */
  topkIds?: Int32Array;
  /** The teacher's logits [N, V], needed when α_mse ≠ 0. */
  logits?: Float32Array;
}

/**
 * The op: the product h Eᵀ for the selected rows (h [N, H] from the vocab transform, E [V, H] the word
 * embeddings), then the kernel, which adds b [V] to form the logits s = h Eᵀ + b. Returns [4]: (α-weighted sum,
 * ce, mlm, mse); the gradient flows through the first value only (the other three are reported, not trained on).
 * Call only where hasLogitLossKernel().
 */
export function fusedHeadLosses(
  h: tf.Tensor2D,
  embeddings: tf.Tensor2D,
  bias: tf.Tensor1D,
  targets: LogitLossTargets,
  labels: Int32Array,
  attrs: LogitLossAttrs,
): tf.Tensor1D {
  const [n] = h.shape;
  const [v] = embeddings.shape;
  const k = targets.topkIds ? targets.probs.length / Math.max(n, 1) : v; // soft targets a row
  const op = tf.customGrad(((x: tf.Tensor2D, e: tf.Tensor2D, b: tf.Tensor1D, save: tf.GradSaveFunc) => {
    const projected = tf.matMul(x, e, false, true); // [N, V]; the kernel adds b
    const inputs: tf.NamedTensorMap = {
      projected,
      bias: b,
      probs: tf.tensor2d(targets.probs, [n, k]),
      labels: tf.tensor1d(labels, 'int32'),
      ...(targets.topkIds ? { topkIds: tf.tensor2d(targets.topkIds, [n, k], 'int32') } : {}),
      ...(attrs.alpha_mse !== 0 && targets.logits ? { teacherLogits: tf.tensor2d(targets.logits, [n, v]) } : {}),
    };
    const [losses, grad, biasGrad] = tf.engine().runKernel(LOGIT_LOSSES_KERNEL, inputs, { ...attrs }) as unknown as [
      tf.Tensor1D,
      tf.Tensor2D,
      tf.Tensor1D,
    ];
    save([x, e, grad, biasGrad]);
    return {
      value: losses,
      gradFunc: (dy: tf.Tensor1D, saved: tf.Tensor[]) => {
        const [xs, es, gs, gbs] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const d = tf.reshape(tf.slice(dy, [0], [1]), []); // ∂L/∂(weighted sum)
        // [N, H], [V, H], [V]
        return [tf.mul(tf.matMul(gs, es), d), tf.mul(tf.matMul(gs, xs, true, false), d), tf.mul(gbs, d)];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(h, embeddings, bias) as tf.Tensor1D;
}
