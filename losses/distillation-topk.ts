// Distillation loss on top-k soft targets (`soft_targets_topk: k`): the teacher keeps, per row, only its k
// largest probabilities p_K = softmax(t/τ)_K and their ids K; the rest of the vocabulary is one bucket, the
// tail, of mass p_tail = 1 − Σ_K p. The student's distribution is bucketed the same way: q_K, and
// q_tail = Σ_{v∉K} q_v. The loss is the KL between the two bucketed distributions, τ², averaged over the rows:
//
//   KL_k = Σ_K p_i log(p_i / q_i) + p_tail log(p_tail / q_tail)
//
// Why one bucket rather than renormalising p_K: the bucketed KL is a true KL (both sides sum to 1), never
// above the full KL (merging outcomes cannot increase a divergence), equal to it when the tail is empty,
// and its gradient with respect to the student's scaled logits z = s/τ is
//   ∂KL_k/∂z_v = q_v − p_v            (v ∈ K)
//   ∂KL_k/∂z_v = q_v − p_tail·q_v/q_tail   (v ∉ K)
// i.e. the full KL's gradient with the teacher's tail spread in the student's own proportions: the tail's mass
// still pulls, and nothing is asked of how the student orders its tail. Renormalising instead would push every
// tail token towards 0, a target the teacher does not give.
// log q_tail is computed as a log-sum-exp over the tail (the top-k entries masked out), not as log(1 − Σ_K q):
// when the student puts nearly all its mass on K, 1 − Σ_K q loses all its digits in float32.

import * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../src/core/errors.js';
import { expectRank } from './check.js';

/** Below any log-softmax a float32 row can hold: masks the top-k entries out of the tail's log-sum-exp. */
const MASKED_OUT = -1e30;

/**
 * s_logits [N, V]; probs [N, k] the teacher's k largest soft targets; ids [N, k] (int32) their token ids;
 * negEntropy [N] Σ p̃ log p̃ of the teacher's bucketed distribution
 * (soft-targets.ts bucketNegEntropy). Returns a scalar.
 */
export function distillationLossTopK(
  sLogits: tf.Tensor2D,
  probs: tf.Tensor2D,
  ids: tf.Tensor2D,
  negEntropy: tf.Tensor1D,
  temperature: number,
): tf.Scalar {
  expectRank('loss_ce', 's_logits', sLogits, 2);
  const [n, v] = sLogits.shape;
  const k = probs.shape[1];
  if (probs.shape[0] !== n || ids.shape[0] !== n || ids.shape[1] !== k) {
    throw new ShapeError(
      `loss_ce: top-k soft targets [${probs.shape.join(', ')}] and ids [${ids.shape.join(', ')}] for ${n} student rows`,
    );
  }
  if (ids.dtype !== 'int32') throw new ShapeError(`loss_ce: top-k ids must be int32, got ${ids.dtype}`);
  if (!(k >= 1 && k < v))
    throw new ShapeError(`loss_ce: top-k of ${k} for a vocabulary of ${v}: expected 1 ≤ k < ${v}`);
  if (negEntropy.shape[0] !== n)
    throw new ShapeError(`loss_ce: ${negEntropy.shape[0]} teacher entropies for ${n} rows`);
  if (!(temperature > 0)) throw new ShapeError(`loss_ce: temperature must be positive, got ${temperature}`);
  if (n === 0) throw new ShapeError('loss_ce: no rows selected');
  return tf.tidy(() => {
    const sLogP = tf.logSoftmax(tf.div(sLogits, temperature)); // [N, V]
    // Flat positions row·V + id of the top-k entries: [N·k]
    const flat = tf.add(
      tf.reshape(ids, [n * k]),
      tf.mul(tf.floorDiv(tf.range(0, n * k, 1, 'int32'), tf.scalar(k, 'int32')), tf.scalar(v, 'int32')),
    ) as tf.Tensor1D;
    const sLogPTop = tf.reshape(tf.gather(tf.reshape(sLogP, [n * v]), flat), [n, k]); // [N, k]
    // [N·V]: MASKED_OUT on K, 0 elsewhere
    const mask = tf.scatterND(tf.reshape(flat, [n * k, 1]), tf.fill([n * k], MASKED_OUT), [n * v]);
    const logTail = tf.logSumExp(tf.add(sLogP, tf.reshape(mask, [n, v])), -1); // [N]: log q_tail
    const pTail = tf.relu(tf.sub(1, tf.sum(probs, -1))); // [N]
    // Per row first, then over the rows (as distillation.ts: the terms nearly cancel).
    const crossPerRow = tf.add(tf.sum(tf.mul(probs, sLogPTop), -1), tf.mul(pTail, logTail)); // [N]
    const kl = tf.sum(tf.sub(negEntropy, crossPerRow));
    return tf.mul(tf.div(kl, n), temperature * temperature) as tf.Scalar;
  });
}
