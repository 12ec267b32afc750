// The weighted sum of the distillation losses, for one student forward against one teacher forward on the
// same masked batch:  loss = α_ce·loss_ce + α_mlm·loss_mlm + α_cos·loss_cos + α_mse·loss_mse.
// The student computes logits only for the rows a loss reads (real tokens, or masked ones with
// restrict_ce_to_mask), never for padding.

import * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../src/errors.js';
import type { DistilBertStudent, ForwardOptions } from '../student/model.js';
import { cosineLoss } from './cosine.js';
import { distillationLoss } from './distillation.js';
import { mlmLoss } from './mlm.js';
import { logitMseLoss } from './mse.js';
import { positionsWithin, selectRows, type LossRows } from './rows.js';

export interface LossWeights {
  /** Softmax temperature τ of the distillation loss (2.0). */
  temperature: number;
  /** Weight of the distillation KL (5.0 in the DistilBERT release). */
  alpha_ce: number;
  /** Weight of the masked-LM cross-entropy (2.0). */
  alpha_mlm: number;
  /** Weight of the cosine loss on the last hidden states (1.0). */
  alpha_cos: number;
  /** Weight of the logit MSE (0: off). */
  alpha_mse: number;
  /** KL only over masked positions instead of every real token (false). */
  restrict_ce_to_mask: boolean;
}

export const RECIPE_LOSS_WEIGHTS: LossWeights = {
  temperature: 2.0, alpha_ce: 5.0, alpha_mlm: 2.0, alpha_cos: 1.0, alpha_mse: 0.0, restrict_ce_to_mask: false,
};

/** What the teacher gives for one batch, on the host. */
export interface TeacherTargets {
  /** [B·T, V] */
  logits: Float32Array;
  /** Last hidden layer [B·T, H]. */
  lastHidden: Float32Array;
}

export interface LossValues<T> {
  loss: T;
  loss_ce: T;
  loss_mlm: T;
  loss_cos: T;
  loss_mse: T;
}

/**
 * Student forward on `inputIds`/`attentionMask` (int32 [B, T] tensors) and the weighted losses against the
 * teacher's targets. Call inside tf.tidy / variableGrads: every tensor returned is a scalar.
 */
export function distillLosses(student: DistilBertStudent, inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, rows: LossRows,
  teacher: TeacherTargets, weights: LossWeights, forward: ForwardOptions): LossValues<tf.Scalar> {
  const { batchSize: B, seqLen: T } = rows;
  const H = student.config.dim;
  const V = student.config.vocab_size;
  if (teacher.logits.length !== B * T * V) throw new ShapeError(`teacher logits hold ${teacher.logits.length} values, expected [${B}, ${T}, ${V}]: do the teacher and the student share a vocabulary?`);
  if (teacher.lastHidden.length !== B * T * H) throw new ShapeError(`teacher hidden states hold ${teacher.lastHidden.length} values, expected [${B}, ${T}, ${H}]: do the teacher and the student share a hidden size?`);

  const hidden = student.encode(inputIds, attentionMask, forward);
  const last = tf.reshape(hidden[hidden.length - 1]!, [B * T, H]) as tf.Tensor2D; // [B*T, H]
  const headRows = weights.restrict_ce_to_mask ? rows.maskedRows : rows.realRows;
  const zero = tf.scalar(0);
  let lossCe = zero;
  let lossMse = zero;
  let lossMlm = zero;
  // loss_ce, loss_mlm and loss_cos are computed (and reported) whatever their weights; loss_mse only when weighted.
  if (headRows.length > 0) {
    const sLogits = student.mlmHead(tf.gather(last, tf.tensor1d(headRows, 'int32')) as tf.Tensor2D); // [N, V]
    const tLogits = tf.tensor2d(selectRows(teacher.logits, headRows, V), [headRows.length, V]); // [N, V]
    lossCe = distillationLoss(sLogits, tLogits, weights.temperature);
    if (weights.alpha_mse !== 0) lossMse = logitMseLoss(sLogits, tLogits);
    if (rows.maskedRows.length > 0) {
      const local = weights.restrict_ce_to_mask ? null : tf.tensor1d(positionsWithin(rows.maskedRows, rows.realRows), 'int32');
      const mlmLogits = local ? (tf.gather(sLogits, local) as tf.Tensor2D) : sLogits; // [M, V]
      lossMlm = mlmLoss(mlmLogits, rows.maskedLabels);
    }
  }
  const sHidden = tf.gather(last, tf.tensor1d(rows.realRows, 'int32')) as tf.Tensor2D; // [R, H]
  const tHidden = tf.tensor2d(selectRows(teacher.lastHidden, rows.realRows, H), [rows.realRows.length, H]); // [R, H]
  const lossCos = cosineLoss(sHidden, tHidden);
  const loss = tf.addN([
    tf.mul(lossCe, weights.alpha_ce), tf.mul(lossMlm, weights.alpha_mlm), tf.mul(lossCos, weights.alpha_cos), tf.mul(lossMse, weights.alpha_mse),
  ]) as tf.Scalar;
  return { loss, loss_ce: lossCe, loss_mlm: lossMlm, loss_cos: lossCos, loss_mse: lossMse };
}
