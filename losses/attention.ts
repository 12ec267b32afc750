// Attention transfer (TinyBERT, MiniLM; "How to Distill your BERT" found it the best single objective): the KL
// between the teacher's and the student's self-attention distributions of each mapped layer pair, averaged over
// the pairs (losses/relation.ts: per head and real query position). With equal head counts the distributions are
// the heads' own (the teacher's Softmax outputs against the student's log-softmax of its scores); otherwise both
// sides' query-key relations over `relation_heads` heads (MiniLM-v2), made by the caller with relationScores.

import * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../src/core/errors.js';
import { relationKl } from './relation.js';

/**
 * s_scores: per pair, the student's pre-softmax scores [B, A, T, T] (mask bias included); t_probs: the teacher's
 * distributions of the same shape; query_mask: float [B, T]. Returns the mean over the pairs (a scalar).
 */
export function attentionLoss(sScores: tf.Tensor4D[], tProbs: tf.Tensor4D[], queryMask: tf.Tensor2D): tf.Scalar {
  if (sScores.length === 0 || sScores.length !== tProbs.length)
    throw new ShapeError(`loss_att: ${sScores.length} student and ${tProbs.length} teacher layers`);
  return tf.tidy(
    () =>
      tf.div(
        tf.addN(
          sScores.map((s, i) => relationKl('loss_att', tProbs[i]!, tf.logSoftmax(s, -1) as tf.Tensor4D, queryMask)),
        ),
        sScores.length,
      ) as tf.Scalar,
  );
}
