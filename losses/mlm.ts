// Masked-LM loss (the reference's loss_mlm): cross-entropy of the student's logits against the labels,
// mean over the labelled positions (the rows passed in are exactly those whose label is not -100).

import * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../src/core/errors.js';
import { expectRank } from './check.js';

/** s_logits: [M, V] at the labelled positions; labels: their M token ids. Returns a scalar (0 when M = 0). */
export function mlmLoss(sLogits: tf.Tensor2D, labels: Int32Array): tf.Scalar {
  expectRank('loss_mlm', 's_logits', sLogits, 2);
  const [m, v] = sLogits.shape;
  if (labels.length !== m) throw new ShapeError(`loss_mlm: ${labels.length} labels for ${m} rows of logits`);
  if (m === 0) return tf.scalar(0);
  for (const l of labels)
    if (l < 0 || l >= v) throw new ShapeError(`loss_mlm: label ${l} outside the vocabulary of ${v}`);
  return tf.tidy(() => {
    const logP = tf.logSoftmax(sLogits); // [M, V]
    const flatIndex = tf.tensor1d(
      Int32Array.from(labels, (l, i) => i * v + l),
      'int32',
    );
    const picked = tf.gather(tf.reshape(logP, [m * v]), flatIndex); // [M]: log p(label)
    return tf.neg(tf.mean(picked)) as tf.Scalar;
  });
}
