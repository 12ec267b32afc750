// Distillation loss (the reference's loss_ce): KL(softmax(t/τ) ‖ softmax(s/τ)) summed over the vocabulary,
// averaged over the N selected rows, times τ² (PyTorch KLDivLoss(reduction="batchmean") on log-softmax
// student and softmax teacher, as distiller.py computes it).

import * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../src/errors.js';
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
