// Hidden-state MSE (TinyBERT): for each mapped pair (the embeddings, then student layer i ↔ teacher layer
// layer_map[i]), the mean over the real tokens and the teacher's width of (W·s + b − t)², where W, b is the
// student's learned projection (identity when the widths match); the mean over the pairs.

import * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../src/core/errors.js';
import { expectRank, expectSameShape } from './check.js';

/**
 * s_hidden: per pair, the projected student states at the real tokens [R, Ht]; t_hidden: the teacher's, the same shape.
 */
export function hiddenMseLoss(sHidden: tf.Tensor2D[], tHidden: tf.Tensor2D[]): tf.Scalar {
  if (sHidden.length === 0 || sHidden.length !== tHidden.length)
    throw new ShapeError(`loss_hidden: ${sHidden.length} student and ${tHidden.length} teacher states`);
  sHidden.forEach((s, i) => {
    expectRank('loss_hidden', `s_hidden[${i}]`, s, 2);
    expectSameShape('loss_hidden', [`s_hidden[${i}]`, s], [`t_hidden[${i}]`, tHidden[i]!]);
    if (s.shape[0] === 0) throw new ShapeError('loss_hidden: no rows selected');
  });
  return tf.tidy(
    () =>
      tf.div(
        tf.addN(sHidden.map((s, i) => tf.mean(tf.squaredDifference(s, tHidden[i]!)))),
        sHidden.length,
      ) as tf.Scalar,
  );
}
