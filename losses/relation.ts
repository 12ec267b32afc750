// What the attention and value-relation losses share: relation scores (MiniLM-v2: a [B·T, H] projection split
// into R heads of H/R, each head's x·yᵀ/√(H/R), plus the attention mask's bias on the keys) and the KL between
// two sets of row distributions over the keys, averaged over the heads and the real query positions:
//   KL = 1/(A·N) Σ_{b,a,t: mask[b,t]=1} Σ_j p_t[b,a,t,j] (log p_t[b,a,t,j] − log p_s[b,a,t,j])
// with 0·log 0 = 0 (the padding keys, where the teacher's probability is exactly 0).

import * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../src/core/errors.js';
import { expectRank, expectSameShape } from './check.js';

/** Σ p log p of each row, with 0 log 0 = 0: [..., T] → [...]. */
function negEntropy(p: tf.Tensor): tf.Tensor {
  return tf.sum(tf.where(tf.greater(p, 0), tf.mul(p, tf.log(tf.maximum(p, 1e-30))), tf.zerosLike(p)), -1);
}

/**
 * t_probs: the teacher's distributions [B, A, T, T]; s_log_probs: the student's log-probabilities of the same
 * shape; query_mask: float [B, T] (1 = a real query position). Returns the mean KL(teacher ‖ student) per head and
 * real query position (a scalar).
 */
export function relationKl(
  loss: string,
  tProbs: tf.Tensor4D,
  sLogProbs: tf.Tensor4D,
  queryMask: tf.Tensor2D,
): tf.Scalar {
  expectRank(loss, 't_probs', tProbs, 4);
  expectSameShape(loss, ['s_log_probs', sLogProbs], ['t_probs', tProbs]);
  const [B, A, T] = tProbs.shape;
  if (queryMask.shape[0] !== B || queryMask.shape[1] !== T)
    throw new ShapeError(`${loss}: query_mask is [${queryMask.shape}], expected [${B}, ${T}]`);
  const klRows = tf.sub(negEntropy(tProbs), tf.sum(tf.mul(tProbs, sLogProbs), -1)); // [B, A, T]
  const weighted = tf.mul(klRows, tf.reshape(queryMask, [B, 1, T])); // [B, A, T]
  return tf.div(tf.sum(weighted), tf.mul(tf.sum(queryMask), A)) as tf.Scalar;
}

/**
 * x, y: [B·T, H] (row b·T + t); R heads of H/R: x_r·y_rᵀ/√(H/R) + mask_bias [B, 1, 1, T] → [B, R, T, T].
 */
export function relationScores(
  loss: string,
  x: tf.Tensor2D,
  y: tf.Tensor2D,
  batchSize: number,
  seqLen: number,
  heads: number,
  maskBias: tf.Tensor4D,
): tf.Tensor4D {
  expectSameShape(loss, ['x', x], ['y', y]);
  const [rows, H] = x.shape;
  const [B, T, R] = [batchSize, seqLen, heads];
  if (rows !== B * T) throw new ShapeError(`${loss}: ${rows} rows, expected ${B}·${T}`);
  if (H % R !== 0)
    throw new ShapeError(
      `${loss}: width ${H} is not a multiple of relation_heads ${R}`,
      "set relation_heads to a divisor of both the student's and the teacher's hidden size",
    );
  const d = H / R;
  const split = (t: tf.Tensor2D): tf.Tensor3D =>
    tf.reshape(tf.transpose(tf.reshape(t, [B, T, R, d]), [0, 2, 1, 3]), [B * R, T, d]); // [B*R, T, d]
  const scores = tf.matMul(split(tf.mul(x, 1 / Math.sqrt(d)) as tf.Tensor2D), split(y), false, true); // [B*R, T, T]
  return tf.add(tf.reshape(scores, [B, R, T, T]), maskBias) as tf.Tensor4D;
}

/**
 * The additive mask on the keys: 0 for real tokens, −1e9 for padding, as the student's attention uses: [B, 1, 1, T].
 */
export function keyMaskBias(queryMask: tf.Tensor2D): tf.Tensor4D {
  const [B, T] = queryMask.shape;
  return tf.reshape(tf.mul(tf.sub(1, queryMask), -1e9), [B, 1, 1, T]) as tf.Tensor4D;
}
