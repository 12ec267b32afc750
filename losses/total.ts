// The weighted sum of the distillation losses, for one student forward against one teacher forward on the
// same masked batch:  loss = α_ce·loss_ce + α_mlm·loss_mlm + α_cos·loss_cos + α_mse·loss_mse
//                          + α_hidden·loss_hidden + α_attention·loss_att + α_value_relation·loss_vr
// (the last three match layers inside both networks: losses/layer-map.ts says which).
// The student computes logits only for the rows a loss reads (real tokens, or masked ones with
// restrict_ce_to_mask), never for padding. The logit losses run as one kernel where the backend registered it
// (the op student/ops/logit-losses.ts; its kernels on wasm and cpu: student/kernels/); elsewhere (or with `fused:
// false`) in the tfjs ops of distillation.ts / distillation-topk.ts, mlm.ts and mse.ts.

import * as tf from '@tensorflow/tfjs';
import {
  LOSS_ORDER,
  LOSS_WEIGHTS,
  lossesFromPacked,
  zeroWeights,
  type LossName,
  type Losses,
  type LossWeightValues,
} from './record.js';
import { ShapeError } from '../src/core/errors.js';
import { RECIPE } from '../src/core/recipe.js';
import { selectRows } from '../src/core/math.js';
import { tiedProjector, type DistilBertStudent, type ForwardOptions, type LayerInternals } from '../student/model.js';
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
import type { IntermediatePlan } from './layer-map.js';

/** Every loss's weight (losses/record.ts LOSS_WEIGHTS: alpha_ce, alpha_mlm, ...) and how the logit losses read. */
export interface LossWeights extends LossWeightValues {
  /** Softmax temperature τ of the distillation loss (2.0). */
  temperature: number;
  /** KL only over masked positions instead of every real token (false). */
  restrict_ce_to_mask: boolean;
}

/** The recipe's loss weights (src/core/recipe.ts): α_ce 5, α_mlm 2, α_cos 1; every loss beyond the recipe off. */
export const RECIPE_LOSS_WEIGHTS: LossWeights = {
  ...zeroWeights(),
  temperature: RECIPE.temperature,
  alpha_ce: RECIPE.alpha_ce,
  alpha_mlm: RECIPE.alpha_mlm,
  alpha_cos: RECIPE.alpha_cos,
  alpha_mse: RECIPE.alpha_mse,
  restrict_ce_to_mask: RECIPE.restrict_ce_to_mask,
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
  checkTargets(student, rows, teacher, weights);
  const { batchSize: B, seqLen: T } = rows;
  const H = student.config.dim;
  const Ht = student.config.projection_dim ?? H; // the teacher's width: the student's, or what its projection maps to
  const plan = teacher.intermediate?.plan;
  const internals = plan !== undefined && (plan.weights.alpha_attention > 0 || plan.weights.alpha_value_relation > 0);
  const { hiddenStates: hidden, layers } = internals
    ? student.encodeWithInternals(inputIds, attentionMask, forward)
    : { hiddenStates: student.encode(inputIds, attentionMask, forward), layers: [] };
  const last = tf.reshape(hidden[hidden.length - 1]!, [B * T, H]) as tf.Tensor2D; // [B*T, H]
  // The logits are computed only for the rows a logit loss reads: every real token, or the masked ones.
  const headRows = weights.restrict_ce_to_mask ? rows.maskedRows : rows.realRows;
  const transformed = student.vocabTransform(tf.gather(last, tf.tensor1d(headRows, 'int32')) as tf.Tensor2D); // [N, H]

  // The last hidden states at the real tokens (through the projection when the student is narrower).
  const realIndex = tf.tensor1d(rows.realRows, 'int32');
  const sHidden = student.projectHidden(tf.gather(last, realIndex) as tf.Tensor2D); // [R, Ht]
  const tHidden = tf.tensor2d(selectRows(teacher.lastHidden, rows.realRows, Ht), [rows.realRows.length, Ht]); // [R, Ht]
  // The per-token means are scaled to the global count of real tokens in data-parallel runs.
  const perRealToken = (l: tf.Scalar): tf.Scalar =>
    options.cosCount !== undefined ? (tf.mul(l, rows.realRows.length / options.cosCount) as tf.Scalar) : l;
  const lossCos = perRealToken(cosineLoss(sHidden, tHidden));
  const between = plan
    ? intermediateLosses(student, { hidden, layers, realIndex, perRealToken }, plan, teacher, rows, attentionMask)
    : {};
  const head = logitLosses(student, transformed, headRows, rows, teacher, weights, options);

  // Every loss by name (losses/record.ts LOSS_WEIGHTS says each one's weight): a new loss adds its line here.
  const terms: Record<LossName, tf.Scalar | undefined> = {
    ce: head.ce,
    mlm: head.mlm,
    cos: lossCos,
    mse: head.mse,
    hidden: between.hidden,
    att: between.att,
    vr: between.vr,
  };
  const byName = { total: weightedSum(terms, weights, head.fused), ...terms };
  const packed = (): tf.Tensor1D => tf.stack(LOSS_ORDER.map((k) => byName[k] ?? tf.scalar(0))) as tf.Tensor1D;
  return {
    loss: byName.total,
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
 * Σ α·loss over every loss, in LOSS_WEIGHTS' order; the fused kernel's weighted sum of the logit losses stands
 * first in place of theirs. A loss that was not computed (its weight 0, or no intermediate plan) adds α·0.
 */
function weightedSum(
  terms: Record<LossName, tf.Scalar | undefined>,
  weights: LossWeights,
  fused: { weighted: tf.Scalar; covers: readonly LossName[] } | undefined,
): tf.Scalar {
  const names = (Object.keys(LOSS_WEIGHTS) as LossName[]).filter((n) => !fused?.covers.includes(n));
  const weighted = names.map((n) => tf.mul(terms[n] ?? tf.scalar(0), weights[LOSS_WEIGHTS[n]]));
  return tf.addN(fused ? [fused.weighted, ...weighted] : weighted) as tf.Scalar;
}

/** The teacher's targets must fit the batch and the student, and carry what the weights need. */
function checkTargets(student: DistilBertStudent, rows: LossRows, teacher: TeacherTargets, weights: LossWeights): void {
  const { batchSize: B, seqLen: T } = rows;
  const V = student.config.vocab_size;
  if (teacher.logits && teacher.logits.length !== B * T * V)
    throw new ShapeError(
      `teacher logits hold ${teacher.logits.length} values, expected [${B}, ` +
        `${T}, ${V}]: do the teacher and the student share a vocabulary?`,
    );
  if (!teacher.logits && !teacher.soft) throw new ShapeError('teacher targets: neither logits nor soft targets given');
  const Ht = student.config.projection_dim ?? student.config.dim;
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
  if (
    !teacher.intermediate &&
    (weights.alpha_hidden > 0 || weights.alpha_attention > 0 || weights.alpha_value_relation > 0)
  ) {
    throw new ShapeError(
      'alpha_hidden, alpha_attention or alpha_value_relation is set, but the teacher targets carry no ' +
        'intermediate-layer tensors (losses/layer-map.ts intermediatePlan)',
    );
  }
  if (teacher.soft?.topkIds !== undefined && weights.alpha_mse !== 0)
    throw new ShapeError(
      "loss_mse needs the teacher's full logits: top-k soft targets " +
        'carry only k per token (set alpha_mse 0 or soft_targets_topk 0)',
    );
}

/** What the intermediate-layer losses read of the student's forward. */
interface StudentInside {
  /** Every hidden state [B, T, H]: the embeddings, then each layer's output. */
  hidden: tf.Tensor[];
  /** Each layer's attention internals (present when the attention or value-relation loss is on). */
  layers: LayerInternals[];
  /** The real tokens' rows of [B·T]. */
  realIndex: tf.Tensor1D;
  perRealToken: (l: tf.Scalar) => tf.Scalar;
}

/** The intermediate-layer losses (losses/layer-map.ts: which layers, which teacher tensors); each one its weight on. */
function intermediateLosses(
  student: DistilBertStudent,
  s: StudentInside,
  plan: IntermediatePlan,
  teacher: TeacherTargets,
  rows: LossRows,
  attentionMask: tf.Tensor2D,
): { hidden?: tf.Scalar; att?: tf.Scalar; vr?: tf.Scalar } {
  const { batchSize: B, seqLen: T } = rows;
  const H = student.config.dim;
  const Ht = student.config.projection_dim ?? H;
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
  const out: { hidden?: tf.Scalar; att?: tf.Scalar; vr?: tf.Scalar } = {};
  const queryMask = tf.cast(attentionMask, 'float32') as tf.Tensor2D; // [B, T]
  if (plan.weights.alpha_hidden > 0) {
    const sh = plan.hiddenPairs.map(([si]) =>
      student.projectHidden(tf.gather(tf.reshape(s.hidden[si]!, [B * T, H]), s.realIndex) as tf.Tensor2D),
    ); // [R, Ht] each
    const th = plan.hiddenPairs.map(([, ti]) =>
      tf.tensor2d(selectRows(get(`hidden.${ti}`, B * T * Ht), rows.realRows, Ht), [rows.realRows.length, Ht]),
    );
    out.hidden = s.perRealToken(hiddenMseLoss(sh, th));
  }
  if (plan.weights.alpha_attention > 0) {
    const bias = keyMaskBias(queryMask);
    const R = plan.relationHeads;
    const sScores: tf.Tensor4D[] = [];
    const tProbs: tf.Tensor4D[] = [];
    plan.layerMap.forEach((tl, i) => {
      const layer = s.layers[i]!;
      if (plan.attentionPerHead) {
        const scores = layer.scores(); // [B, A, T, T]
        const A = scores.shape[1];
        sScores.push(scores);
        tProbs.push(tf.tensor4d(get(`attention.${tl}`, B * A * T * T), [B, A, T, T]));
      } else {
        sScores.push(relationScores('loss_att', layer.query, layer.key, B, T, R, bias)); // [B, R, T, T]
        const tq = tf.tensor2d(get(`query.${tl}`, B * T * Ht), [B * T, Ht]);
        const tk = tf.tensor2d(get(`key.${tl}`, B * T * Ht), [B * T, Ht]);
        tProbs.push(tf.softmax(relationScores('loss_att', tq, tk, B, T, R, bias), -1) as tf.Tensor4D);
      }
    });
    out.att = s.perRealToken(attentionLoss(sScores, tProbs, queryMask));
  }
  if (plan.weights.alpha_value_relation > 0) {
    const i = plan.layerMap.length - 1;
    const tv = tf.tensor2d(get(`value.${plan.layerMap[i]}`, B * T * Ht), [B * T, Ht]);
    out.vr = s.perRealToken(valueRelationLoss(s.layers[i]!.value, tv, queryMask, plan.relationHeads));
  }
  return out;
}

/** The logit losses, and (fused) the kernel's weighted sum of them. */
interface LogitLosses {
  ce: tf.Scalar;
  mlm: tf.Scalar;
  mse: tf.Scalar;
  fused?: { weighted: tf.Scalar; covers: readonly LossName[] };
}

/**
 * The three logit losses on the head rows: as one kernel where the backend registered it (projector, losses and
 * their gradient: student/ops/logit-losses.ts), else in tfjs ops, one loss per file.
 */
function logitLosses(
  student: DistilBertStudent,
  transformed: tf.Tensor2D,
  headRows: Int32Array,
  rows: LossRows,
  teacher: TeacherTargets,
  weights: LossWeights,
  options: DistillLossOptions,
): LogitLosses {
  const V = student.config.vocab_size;
  const mlmLocal = weights.restrict_ce_to_mask
    ? Int32Array.from(rows.maskedRows, (_, i) => i)
    : positionsWithin(rows.maskedRows, rows.realRows);
  const { embeddings, bias } = student.projector();
  if (options.fused !== false && hasLogitLossKernel()) {
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
    return { fused: { weighted: at(0), covers: ['ce', 'mlm', 'mse'] }, ce: at(1), mlm: at(2), mse: at(3) };
  }
  const soft = teacher.logits ? undefined : teacher.soft!;
  const N = headRows.length;
  const k = soft ? checkSoftTargets(soft, N, V, weights.temperature) : V; // soft targets per row: k (top-k) or V
  const sLogits = tiedProjector(transformed, embeddings, bias); // [N, V]
  const tLogits = teacher.logits
    ? tf.tensor2d(selectRows(teacher.logits, headRows, V), [N, V]) // [N, V]
    : soft!.logits
      ? tf.tensor2d(soft!.logits, [N, V])
      : undefined;
  let ce: tf.Scalar;
  if (!soft) ce = distillationLoss(sLogits, tLogits!, weights.temperature);
  else {
    const probs = tf.tensor2d(soft.probs, [N, k]); // [N, k]
    const negEntropy = tf.tensor1d(Float32Array.from(soft.negEntropy)); // [N]
    ce = soft.topkIds
      ? distillationLossTopK(
          sLogits,
          probs,
          tf.tensor2d(soft.topkIds, [N, k], 'int32'),
          negEntropy,
          weights.temperature,
        )
      : distillationLossFromSoft(sLogits, probs, negEntropy, weights.temperature);
  }
  if (options.ceCount !== undefined) ce = tf.mul(ce, N / options.ceCount) as tf.Scalar;
  let mse: tf.Scalar = tf.scalar(0);
  if (weights.alpha_mse !== 0) {
    if (!tLogits) throw new ShapeError('loss_mse needs the teacher logits (keepLogits)');
    mse = logitMseLoss(sLogits, tLogits);
    if (options.ceCount !== undefined) mse = tf.mul(mse, N / options.ceCount) as tf.Scalar;
  }
  let mlm: tf.Scalar = tf.scalar(0);
  if (rows.maskedRows.length > 0) {
    mlm = mlmLoss(tf.gather(sLogits, tf.tensor1d(mlmLocal, 'int32')) as tf.Tensor2D, rows.maskedLabels);
    if (options.mlmCount !== undefined)
      mlm = tf.mul(mlm, rows.maskedRows.length / Math.max(options.mlmCount, 1)) as tf.Scalar;
  }
  return { ce, mlm, mse };
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
