// Cosine embedding loss on hidden states (the reference's loss_cos): mean over the selected rows of
// 1 − cos(s_h, t_h), computed as PyTorch's cosine_embedding_loss with target 1:
// cos = Σ s·t / sqrt((Σ s² + 1e-12)(Σ t² + 1e-12)).

import * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../src/core/errors.js';
import { expectRank, expectSameShape } from './check.js';

const EPSILON = 1e-12;

/** s_hidden, t_hidden: [R, H] (the last hidden layer at the real tokens). Returns a scalar. */
export function cosineLoss(sHidden: tf.Tensor2D, tHidden: tf.Tensor2D): tf.Scalar {
  expectRank('loss_cos', 's_hidden', sHidden, 2);
  expectSameShape('loss_cos', ['s_hidden', sHidden], ['t_hidden', tHidden]);
  if (sHidden.shape[0] === 0) throw new ShapeError('loss_cos: no rows selected');
  return tf.tidy(() => {
    const dot = tf.sum(tf.mul(sHidden, tHidden), 1); // [R]
    const sNorm2 = tf.add(tf.sum(tf.square(sHidden), 1), EPSILON);
    const tNorm2 = tf.add(tf.sum(tf.square(tHidden), 1), EPSILON);
    const cos = tf.div(dot, tf.sqrt(tf.mul(sNorm2, tNorm2)));
    return tf.mean(tf.sub(1, cos)) as tf.Scalar;
  });
}
