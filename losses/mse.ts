// Optional logit MSE (the reference's loss_mse): Σ (s − t)² over the selected rows and the vocabulary,
// divided by the number of rows (MSELoss(reduction="sum") / N).

import * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../src/core/errors.js';
import { expectRank, expectSameShape } from './check.js';

/** s_logits, t_logits: [N, V]. Returns a scalar. */
export function logitMseLoss(sLogits: tf.Tensor2D, tLogits: tf.Tensor2D): tf.Scalar {
  expectRank('loss_mse', 's_logits', sLogits, 2);
  expectSameShape('loss_mse', ['s_logits', sLogits], ['t_logits', tLogits]);
  if (sLogits.shape[0] === 0) throw new ShapeError('loss_mse: no rows selected');
  return tf.tidy(() => tf.div(tf.sum(tf.squaredDifference(sLogits, tLogits)), sLogits.shape[0]) as tf.Scalar);
}
