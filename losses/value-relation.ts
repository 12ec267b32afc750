// MiniLM's value relation: on the last mapped layer pair, each side's values split into `relation_heads` heads
// and softmax(v_r·v_rᵀ/√d_r) over the keys; the KL of the teacher's relations against the student's, per head and
// real query position (losses/relation.ts). The widths may differ: only the head count must be common.

import * as tf from '@tensorflow/tfjs';
import { relationKl, relationScores, keyMaskBias } from './relation.js';

/**
 * s_value: the student's value projection [B·T, Hs]; t_value: the teacher's [B·T, Ht]; query_mask: float [B, T];
 * heads: the relation heads (a divisor of Hs and Ht). Returns a scalar.
 */
export function valueRelationLoss(
  sValue: tf.Tensor2D,
  tValue: tf.Tensor2D,
  queryMask: tf.Tensor2D,
  heads: number,
): tf.Scalar {
  return tf.tidy(() => {
    const [B, T] = queryMask.shape;
    const bias = keyMaskBias(queryMask);
    // [B, R, T, T]
    const tRelation = tf.softmax(relationScores('loss_vr', tValue, tValue, B, T, heads, bias), -1) as tf.Tensor4D;
    // [B, R, T, T]
    const sLogRelation = tf.logSoftmax(relationScores('loss_vr', sValue, sValue, B, T, heads, bias), -1) as tf.Tensor4D;
    return relationKl('loss_vr', tRelation, sLogRelation, queryMask);
  });
}
