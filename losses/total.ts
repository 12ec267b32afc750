// The weighted sum of the distillation losses, for one student forward against one teacher forward on the
// same masked batch:  loss = α_ce·loss_ce + α_mlm·loss_mlm + α_cos·loss_cos + α_mse·loss_mse
//                          + α_hidden·loss_hidden + α_attention·loss_att + α_value_relation·loss_vr
// (the last three match layers inside both networks: losses/layer-map.ts says which).
// The student computes logits only for the rows a loss reads (real tokens, or masked ones with
// restrict_ce_to_mask), never for padding. The logit losses run as one kernel where the backend registered it
// (the op student/ops/logit-losses.ts; its kernels on wasm and cpu: student/kernels/); elsewhere (or with `fused:
// false`) in the tfjs ops of distillation.ts / distillation-topk.ts, mlm.ts and mse.ts.

import * as tf from '@tensorflow/tfjs';
import { LOSS_ORDER, lossesFromPacked, type Losses } from './record.js';
import { ShapeError } from '../src/core/errors.js';
import { RECIPE } from '../src/core/recipe.js';
import { selectRows } from '../src/core/math.js';
import { tiedProjector, type DistilBertStudent, type ForwardOptions } from '../student/model.js';
import { cosineLoss } from './cosine.js';
import { distillationLoss, distillationLossFromSoft } from './distillation.js';
import { distillationLossTopK } from './distillation-topk.js';
import { mlmLoss } from './mlm.js';
import { logitMseLoss } from './mse.js';
import { positionsWithin, type LossRows } from './rows.js';
import { fusedHeadLosses, hasLogitLossKernel } from '../student/ops/logit-losses.js';
import { IGNORE_INDEX } from '../src/core/labels.js';
import { teacherSoftTargets, type TeacherSoftTargets } from '../src/core/soft-targets.js';
import { attentionLoss } from './attention.js';
import { hiddenMseLoss } from './hidden-mse.js';
import { valueRelationLoss } from './value-relation.js';
import { relationScores, keyMaskBias } from './relation.js';
import type { IntermediatePlan, IntermediateWeights } from './layer-map.js';

export interface LossWeights extends IntermediateWeights {
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

/** The recipe's loss weights (src/core/recipe.ts). */
export const RECIPE_LOSS_WEIGHTS: LossWeights = {
  temperature: RECIPE.temperature,
  alpha_ce: RECIPE.alpha_ce,
  alpha_mlm: RECIPE.alpha_mlm,
  alpha_cos: RECIPE.alpha_cos,
  alpha_mse: RECIPE.alpha_mse,
  restrict_ce_to_mask: RECIPE.restrict_ce_to_mask,
  alpha_hidden: 0,
  alpha_attention: 0,
  alpha_value_relation: 0, // beyond the recipe: off
};

/** What the teacher gives for one batch, on the host. */
export interface TeacherTargets {
  /** [B·T, V]: needed when `soft` is absent, and by the unfused path. */
  logits?: Float32Array;
  /** Last hidden layer [B·T, H]. */
  lastHidden: Float32Array;
  /** softmax(t/τ) of the KL rows, prepared ahead (teacherSoftTargets); computed here when absent. */
  soft?: TeacherSoftTargets;
  /** The intermediate-layer losses' plan and the teacher's tensors they read, by the keys of losses/layer-map.ts. */
  intermediate?: { plan: IntermediatePlan; tensors: Record<string, Float32Array> };
}

export interface DistillLossResult {
  /** The weighted total, differentiable with respect to the student's variables. */
  loss: tf.Scalar;
  /** The values (reads them from the device; call before the tensors are disposed). */
  values(): Losses;
  /**
   * Every loss as one tensor, in LOSS_ORDER (losses/record.ts), to keep out of the step's tf.tidy and read with
   * `await data()` (backends that cannot read synchronously: webgpu); lossesFromPacked names them.
   */
  packed(): tf.Tensor1D;
}

export interface DistillLossOptions {
  /**
   * false: the logit losses in tfjs ops even where the backend has the DistillLogitLosses kernel (the kernel
   * runs by default where registered: wasm, cpu; on a GPU backend the tfjs ops keep the logits on the device).
   */
  fused?: boolean;
  /** Divisors of the means: global counts in data-parallel runs (default: this batch's). */
  ceCount?: number;
  mlmCount?: number;
  cosCount?: number;
}

/**
 * Student forward on `inputIds`/`attentionMask` (int32 [B, T] tensors) and the weighted losses against the
 * teacher's targets. Call inside tf.tidy / variableGrads.
 */
export function distillLosses(
  student: DistilBertStudent,
  inputIds: tf.Tensor2D,
  attentionMask: tf.Tensor2D,
  rows: LossRows,
  teacher: TeacherTargets,
  weights: LossWeights,
  forward: ForwardOptions,
  options: DistillLossOptions = {},
): DistillLossResult {
  const { batchSize: B, seqLen: T } = rows;
  const H = student.config.dim;
  const V = student.config.vocab_size;
  if (teacher.logits && teacher.logits.length !== B * T * V)
    throw new ShapeError(
      `teacher logits hold ${teacher.logits.length} values, expected [${B}, ` +
        `${T}, ${V}]: do the teacher and the student share a vocabulary?`,
    );
  if (!teacher.logits && !teacher.soft) throw new ShapeError('teacher targets: neither logits nor soft targets given');
  const Ht = student.config.projection_dim ?? H; // the teacher's width: the student's, or what its projection maps to
  if (teacher.lastHidden.length !== B * T * Ht) {
    throw new ShapeError(
      `teacher hidden states hold ${teacher.lastHidden.length} values, expected [${B}, ${T}, ${Ht}]: ` +
        `${
          student.config.projection_dim === undefined
            ? 'do the teacher and the student share a hidden size?'
            : `the student's projection maps to ${Ht}`
        }`,
    );
  }

  const plan = teacher.intermediate?.plan;
  if (!plan && (weights.alpha_hidden > 0 || weights.alpha_attention > 0 || weights.alpha_value_relation > 0)) {
    throw new ShapeError(
      'alpha_hidden, alpha_attention or alpha_value_relation is set, but the teacher targets carry no ' +
        'intermediate-layer tensors (losses/layer-map.ts intermediatePlan)',
    );
  }
  const internals = plan !== undefined && (plan.weights.alpha_attention > 0 || plan.weights.alpha_value_relation > 0);
  const { hiddenStates: hidden, layers } = internals
    ? student.encodeWithInternals(inputIds, attentionMask, forward)
    : { hiddenStates: student.encode(inputIds, attentionMask, forward), layers: [] };
  const last = tf.reshape(hidden[hidden.length - 1]!, [B * T, H]) as tf.Tensor2D; // [B*T, H]
  // The logits are computed only for the rows a logit loss reads: every real token, or the masked ones.
  const headRows = weights.restrict_ce_to_mask ? rows.maskedRows : rows.realRows;
  const transformed = student.vocabTransform(tf.gather(last, tf.tensor1d(headRows, 'int32')) as tf.Tensor2D); // [N, H]
  const mlmLocal = weights.restrict_ce_to_mask
    ? Int32Array.from(rows.maskedRows, (_, i) => i)
    : positionsWithin(rows.maskedRows, rows.realRows);

  // Cosine loss on the last hidden states at the real tokens (through the projection when the student is narrower).
  const realIndex = tf.tensor1d(rows.realRows, 'int32');
  const sHidden = student.projectHidden(tf.gather(last, realIndex) as tf.Tensor2D); // [R, Ht]
  const tHidden = tf.tensor2d(selectRows(teacher.lastHidden, rows.realRows, Ht), [rows.realRows.length, Ht]); // [R, Ht]
  // The per-token means are scaled to the global count of real tokens in data-parallel runs.
  const perRealToken = (l: tf.Scalar): tf.Scalar =>
    options.cosCount !== undefined ? (tf.mul(l, rows.realRows.length / options.cosCount) as tf.Scalar) : l;
  const lossCos = perRealToken(cosineLoss(sHidden, tHidden));

  // The intermediate-layer losses (losses/layer-map.ts: which layers, which teacher tensors).
  let lossHidden: tf.Scalar = tf.scalar(0);
  let lossAtt: tf.Scalar = tf.scalar(0);
  let lossVr: tf.Scalar = tf.scalar(0);
  if (plan) {
    const tensors = teacher.intermediate!.tensors;
    const get = (key: string, size: number): Float32Array => {
      const t = tensors[key];
      if (!t)
        throw new ShapeError(
          `teacher targets: no "${key}" among the teacher's tensors (${Object.keys(tensors).join(', ') || 'none'})`,
        );
      if (t.length !== size) throw new ShapeError(`teacher "${key}" holds ${t.length} values, expected ${size}`);
      return t;
    };
    const queryMask = tf.cast(attentionMask, 'float32') as tf.Tensor2D; // [B, T]
    if (plan.weights.alpha_hidden > 0) {
      const s = plan.hiddenPairs.map(([si]) =>
        student.projectHidden(tf.gather(tf.reshape(hidden[si]!, [B * T, H]), realIndex) as tf.Tensor2D),
      ); // [R, Ht] each
      const t = plan.hiddenPairs.map(([, ti]) =>
        tf.tensor2d(selectRows(get(`hidden.${ti}`, B * T * Ht), rows.realRows, Ht), [rows.realRows.length, Ht]),
      );
      lossHidden = perRealToken(hiddenMseLoss(s, t));
    }
    if (plan.weights.alpha_attention > 0) {
      const bias = keyMaskBias(queryMask);
      const R = plan.relationHeads;
      const sScores: tf.Tensor4D[] = [];
      const tProbs: tf.Tensor4D[] = [];
      plan.layerMap.forEach((tl, i) => {
        const s = layers[i]!;
        if (plan.attentionPerHead) {
          const scores = s.scores(); // [B, A, T, T]
          const A = scores.shape[1];
          sScores.push(scores);
          tProbs.push(tf.tensor4d(get(`attention.${tl}`, B * A * T * T), [B, A, T, T]));
        } else {
          sScores.push(relationScores('loss_att', s.query, s.key, B, T, R, bias)); // [B, R, T, T]
          const tq = tf.tensor2d(get(`query.${tl}`, B * T * Ht), [B * T, Ht]);
          const tk = tf.tensor2d(get(`key.${tl}`, B * T * Ht), [B * T, Ht]);
          tProbs.push(tf.softmax(relationScores('loss_att', tq, tk, B, T, R, bias), -1) as tf.Tensor4D);
        }
      });
      lossAtt = perRealToken(attentionLoss(sScores, tProbs, queryMask));
    }
    if (plan.weights.alpha_value_relation > 0) {
      const i = plan.layerMap.length - 1;
      const tv = tf.tensor2d(get(`value.${plan.layerMap[i]}`, B * T * Ht), [B * T, Ht]);
      lossVr = perRealToken(valueRelationLoss(layers[i]!.value, tv, queryMask, plan.relationHeads));
    }
  }
  const intermediateTerms = [
    tf.mul(lossHidden, weights.alpha_hidden),
    tf.mul(lossAtt, weights.alpha_attention),
    tf.mul(lossVr, weights.alpha_value_relation),
  ];

  let loss: tf.Scalar;
  let parts: tf.Scalar[]; // [loss_ce, loss_mlm, loss_mse]
  const { embeddings, bias } = student.projector();
  const topk = teacher.soft?.topkIds !== undefined;
  if (topk && weights.alpha_mse !== 0)
    throw new ShapeError(
      "loss_mse needs the teacher's full logits: top-k soft targets " +
        'carry only k per token (set alpha_mse 0 or soft_targets_topk 0)',
    );
  if (options.fused !== false && hasLogitLossKernel()) {
    // One kernel: projector, the three logit losses and their gradient (student/kernels/logit-losses.ts), with
    // full or top-k soft targets.
    const soft =
      teacher.soft ?? teacherSoftTargets(teacher.logits!, headRows, V, weights.temperature, weights.alpha_mse !== 0);
    checkSoftTargets(soft, headRows.length, V, weights.temperature);
    const labels = new Int32Array(headRows.length).fill(IGNORE_INDEX); // [N]: the MLM label of each head row
    mlmLocal.forEach((r, i) => {
      labels[r] = rows.maskedLabels[i]!;
    });
    const head = fusedHeadLosses(transformed, embeddings, bias, soft, labels, {
      temperature: weights.temperature,
      alpha_ce: weights.alpha_ce,
      alpha_mlm: weights.alpha_mlm,
      alpha_mse: weights.alpha_mse,
      ceCount: options.ceCount ?? headRows.length,
      mlmCount: options.mlmCount ?? rows.maskedRows.length,
      negEntropy: Array.from(soft.negEntropy),
    }); // [4]: weighted, ce, mlm, mse
    const at = (i: number): tf.Scalar => tf.reshape(tf.slice(head, [i], [1]), []) as tf.Scalar;
    loss = tf.addN([at(0), tf.mul(lossCos, weights.alpha_cos), ...intermediateTerms]) as tf.Scalar;
    parts = [at(1), at(2), at(3)];
  } else {
    // The same in tfjs ops, one loss per file: from the teacher's logits, or from its soft targets.
    const soft = teacher.logits ? undefined : teacher.soft!;
    const N = headRows.length;
    const k = soft ? checkSoftTargets(soft, N, V, weights.temperature) : V; // soft targets per row: k (top-k) or V
    const sLogits = tiedProjector(transformed, embeddings, bias); // [N, V]
    const tLogits = teacher.logits
      ? tf.tensor2d(selectRows(teacher.logits, headRows, V), [headRows.length, V]) // [N, V]
      : soft!.logits
        ? tf.tensor2d(soft!.logits, [headRows.length, V])
        : undefined;
    let lossCe: tf.Scalar;
    if (!soft) lossCe = distillationLoss(sLogits, tLogits!, weights.temperature);
    else {
      const probs = tf.tensor2d(soft.probs, [N, k]); // [N, k]
      const negEntropy = tf.tensor1d(Float32Array.from(soft.negEntropy)); // [N]
      lossCe = soft.topkIds
        ? distillationLossTopK(
            sLogits,
            probs,
            tf.tensor2d(soft.topkIds, [N, k], 'int32'),
            negEntropy,
            weights.temperature,
          )
        : distillationLossFromSoft(sLogits, probs, negEntropy, weights.temperature);
    }
    if (options.ceCount !== undefined) lossCe = tf.mul(lossCe, headRows.length / options.ceCount) as tf.Scalar;
    let lossMse: tf.Scalar = tf.scalar(0);
    if (weights.alpha_mse !== 0) {
      if (!tLogits) throw new ShapeError('loss_mse needs the teacher logits (keepLogits)');
      lossMse = logitMseLoss(sLogits, tLogits);
      if (options.ceCount !== undefined) lossMse = tf.mul(lossMse, headRows.length / options.ceCount) as tf.Scalar;
    }
    let lossMlm: tf.Scalar = tf.scalar(0);
    if (rows.maskedRows.length > 0) {
      lossMlm = mlmLoss(tf.gather(sLogits, tf.tensor1d(mlmLocal, 'int32')) as tf.Tensor2D, rows.maskedLabels);
      if (options.mlmCount !== undefined)
        lossMlm = tf.mul(lossMlm, rows.maskedRows.length / Math.max(options.mlmCount, 1)) as tf.Scalar;
    }
    loss = tf.addN([
      tf.mul(lossCe, weights.alpha_ce),
      tf.mul(lossMlm, weights.alpha_mlm),
      tf.mul(lossCos, weights.alpha_cos),
      tf.mul(lossMse, weights.alpha_mse),
      ...intermediateTerms,
    ]) as tf.Scalar;
    parts = [lossCe, lossMlm, lossMse];
  }
  const byName = {
    total: loss,
    ce: parts[0]!,
    mlm: parts[1]!,
    cos: lossCos,
    mse: parts[2]!,
    hidden: lossHidden,
    att: lossAtt,
    vr: lossVr,
  };
  const packed = (): tf.Tensor1D => tf.stack(LOSS_ORDER.map((k) => byName[k])) as tf.Tensor1D;
  return {
    loss,
    packed,
    values: () => {
      const t = packed();
      const v = lossesFromPacked(t.dataSync());
      t.dispose();
      return v;
    },
  };
}

/**
 * The teacher's soft targets must cover the head rows and be made at the loss's temperature (one temperature).
 * Returns the number of targets per row: V, or k for top-k soft targets.
 */
function checkSoftTargets(soft: TeacherSoftTargets, rows: number, V: number, temperature: number): number {
  if (soft.negEntropy.length !== rows)
    throw new ShapeError(`teacher soft targets cover ${soft.negEntropy.length} rows, the loss reads ${rows}`);
  if (soft.temperature !== temperature)
    throw new ShapeError(`teacher soft targets are at temperature ${soft.temperature}, the loss is at ${temperature}`);
  if (!soft.topkIds) {
    if (soft.probs.length !== rows * V)
      throw new ShapeError(`teacher soft targets hold ${soft.probs.length} values, expected [${rows}, ${V}]`);
    return V;
  }
  if (soft.topkIds.length !== soft.probs.length || soft.probs.length % Math.max(rows, 1) !== 0) {
    throw new ShapeError(
      `teacher top-k soft targets: ${soft.probs.length} values and ${soft.topkIds.length} ids for ${rows} rows`,
    );
  }
  return soft.probs.length / Math.max(rows, 1);
}
