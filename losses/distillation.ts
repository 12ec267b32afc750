// Distillation loss (the reference's loss_ce): KL(softmax(t/τ) ‖ softmax(s/τ)) summed over the vocabulary,
// averaged over the N selected rows, times τ² (PyTorch KLDivLoss(reduction="batchmean") on log-softmax
// student and softmax teacher, as distiller.py computes it).

import * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../src/core/errors.js';
import { expectRank, expectSameShape } from './check.js';

/** s_logits, t_logits: [N, V] (the selected rows). Returns a scalar. */
export function distillationLoss(sLogits: tf.Tensor2D, tLogits: tf.Tensor2D, temperature: number): tf.Scalar {
  expectRank('loss_ce', 's_logits', sLogits, 2);
  expectSameShape('loss_ce', ['s_logits', sLogits], ['t_logits', tLogits]);
  if (!(temperature > 0)) throw new ShapeError(`loss_ce: temperature must be positive, got ${temperature}`);
  const n = sLogits.shape[0];
  if (n === 0) throw new ShapeError('loss_ce: no rows selected');
  return tf.tidy(() => {
    const sLogP = tf.logSoftmax(tf.div(sLogits, temperature)); // [N, V]
    const tLogP = tf.logSoftmax(tf.div(tLogits, temperature)); // [N, V]
    const kl = tf.sum(tf.mul(tf.exp(tLogP), tf.sub(tLogP, sLogP))); // Σ_rows Σ_v p_t (log p_t − log p_s)
    return tf.mul(tf.div(kl, n), temperature * temperature) as tf.Scalar;
  });
}

/**
 * The same loss from the teacher's soft targets instead of its logits: p = softmax(t/τ) [N, V] and
 * Σ_v p log p per row [N] (what the teacher's graph computes, teacher/worker.ts), so the full logits never
 * have to leave the teacher: KL = Σ p log p − Σ p log softmax(s/τ).
 */
export function distillationLossFromSoft(
  sLogits: tf.Tensor2D,
  probs: tf.Tensor2D,
  negEntropy: tf.Tensor1D,
  temperature: number,
): tf.Scalar {
  expectRank('loss_ce', 's_logits', sLogits, 2);
  expectSameShape('loss_ce', ['s_logits', sLogits], ['teacher soft targets', probs]);
  if (negEntropy.shape[0] !== sLogits.shape[0])
    throw new ShapeError(`loss_ce: ${negEntropy.shape[0]} teacher entropies for ${sLogits.shape[0]} rows`);
  if (!(temperature > 0)) throw new ShapeError(`loss_ce: temperature must be positive, got ${temperature}`);
  const n = sLogits.shape[0];
  if (n === 0) throw new ShapeError('loss_ce: no rows selected');
  return tf.tidy(() => {
    const sLogP = tf.logSoftmax(tf.div(sLogits, temperature)); // [N, V]
    // Per row first, then over the rows: the two terms nearly cancel, and summing each over every row in
    // float32 before subtracting loses ~1e-4 of the KL.
    const crossPerRow = tf.sum(tf.mul(probs, sLogP), -1); // [N]
    const kl = tf.sum(tf.sub(negEntropy, crossPerRow));
    return tf.mul(tf.div(kl, n), temperature * temperature) as tf.Scalar;
  });
}
