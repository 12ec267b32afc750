// THE update step: the one place where gradients are made and applied. The training loop
// (src/train/loop.ts), `distill bench`, `distill eval-batch` and fine-tuning (src/probe/finetune.ts) all run it.
//
//   for each of grad_accum micro-batches:
//     accumulate(objective)   forward + backward of objective().loss / grad_accum; gradients summed in place
//   then
//     apply(lr)               sum the gradients across ranks (one all-reduce) → clip at the global norm →
//                             AdamW with this update's learning rate
//
// The distillation objective of one micro-batch is distillObjective(): the student forward and the weighted
// losses against the teacher's outputs (losses/total.ts). Every tensor made here is freed before the next
// micro-batch: the number of live tensors stays flat over updates (test/updates.ts checks it on every path).

import * as tf from '@tensorflow/tfjs';
import { DistillError, ShapeError } from '../core/errors.js';
import { guardGpu, throwIfGpuError } from '../../student/backend.js';
import type { DistilBertStudent, ForwardOptions } from '../../student/model.js';
import type { LossRows } from '../../losses/rows.js';
import { distillLosses, type LossWeights, type TeacherTargets } from '../../losses/total.js';
import { type AdamW, globalNormClip, sumOfSquares } from './adamw.js';
import { SOLO, type Communicator } from '../parallel/communicator.js';
import type { LossScale } from './loss-scale.js';

/** What one micro-batch's objective gives: the loss to minimise and the values to report, as one 1-D tensor. */
export interface Objective {
  loss: tf.Scalar;
  /** Read asynchronously after the backward pass (webgpu cannot read synchronously). */
  report: tf.Tensor1D;
}

export interface UpdateStepOptions {
  /** Micro-batches per update: each loss is divided by it, so the update follows their mean. */
  gradAccum: number;
  /** Clip at this global L2 norm; 0 turns clipping off. */
  maxGradNorm: number;
  /** The ranks whose gradients are summed before clipping (default: this process alone). */
  comm?: Communicator;
  /**
   * Precision "fp16-mixed" (student/kernels/matmul-webgpu.ts): the loss is multiplied by its value (a power of 2)
   * before the backward pass, so that small gradients keep f16's precision in the products, and the gradient
   * norm, the clipping and AdamW take 1/value as a factor (exact). A non-finite gradient norm (an f16 overflow)
   * skips the update and halves a dynamic scale, or stops with the hint to lower a static one (loss-scale.ts).
   * Absent: fp32, no scaling.
   */
  lossScale?: LossScale;
}

/** What apply() did. */
export interface AppliedUpdate {
  /** The global gradient norm before clipping (not finite when the update was skipped). */
  norm: number;
  /** The gradients overflowed f16 and nothing was applied; the loss scale halved (`lossScale` is the new one). */
  skipped: boolean;
  /** The loss scale the next update uses (precision fp16-mixed). */
  lossScale?: number;
}

export class UpdateStep {
  readonly params: tf.Variable[];
  private readonly optimizer: AdamW | undefined;
  private readonly options: UpdateStepOptions;
  /** Σ of the micro-batches' gradients so far, in the order of `params`. */
  private acc: tf.Tensor[] | undefined;
  /** Milliseconds spent in the gradients' all-reduce so far (waiting for the slower ranks included). */
  allreduceMs = 0;

  /** `optimizer` may be undefined for a step that only measures (eval-batch): apply() then refuses. */
  constructor(params: tf.Variable[], optimizer: AdamW | undefined, options: UpdateStepOptions) {
    if (!(options.gradAccum >= 1)) throw new ShapeError(`grad_accum must be at least 1, got ${options.gradAccum}`);
    this.params = params;
    this.optimizer = optimizer;
    this.options = options;
  }

  /** Forward + backward of one micro-batch; its gradients are added to the update's. Returns the reported values. */
  async accumulate(objective: () => Objective): Promise<Float32Array> {
    let report: tf.Tensor1D | undefined;
    const scale = (this.options.lossScale?.value ?? 1) / this.options.gradAccum;
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => {
        const o = objective();
        report = tf.keep(o.report);
        return scale === 1 ? o.loss : tf.mul(o.loss, scale);
      }, this.params);
      // A parameter no loss of this objective reads (the projection
      // with alpha_cos and alpha_hidden 0) gets a zero gradient.
      const ordered = this.params.map((v) => grads[v.name] ?? tf.zerosLike(v));
      const summed = this.acc ? ordered.map((g, i) => tf.add(this.acc![i]!, g)) : ordered;
      for (const g of summed) tf.keep(g);
      if (this.acc) tf.dispose(this.acc);
      this.acc = summed;
    });
    const values = (await guardGpu(report!.data())) as Float32Array;
    report!.dispose();
    throwIfGpuError();
    return values;
  }

  /** The global L2 norm of the gradients accumulated so far (this rank's), without applying them. */
  async gradNorm(): Promise<number> {
    const squared = tf.tidy(() => sumOfSquares(this.gradients()));
    const value = (await guardGpu(squared.data()))[0]!;
    squared.dispose();
    return Math.sqrt(value) / (this.options.lossScale?.value ?? 1);
  }

  /**
   * Sum the gradients across ranks, clip them, and let AdamW update the parameters with learning rate `lr`.
   * Returns the global gradient norm before clipping. A rank that had no rows contributes zeros. Every rank
   * sees the same summed norm, so with fp16-mixed they all skip an overflowed update, or all apply it.
   */
  async apply(lr: number): Promise<AppliedUpdate> {
    if (!this.optimizer) throw new Error('UpdateStep.apply: this step has no optimizer');
    const comm = this.options.comm ?? SOLO;
    const grads = this.gradients();
    this.acc = undefined;
    if (comm.size > 1) {
      const started = performance.now();
      await allreduceSum(comm, grads);
      this.allreduceMs += performance.now() - started;
    }
    // With a loss scale the gradients stay scaled, and clipping does not rewrite them either: the norm takes
    // 1/loss_scale as a factor (exact for a power of 2), and AdamW takes the clipping coefficient times 1/loss_scale
    // as one factor on g, so neither costs a pass of its own over every parameter.
    const lossScale = this.options.lossScale;
    const gradScale = 1 / (lossScale?.value ?? 1);
    const { norm, coef } = await globalNormClip(grads, this.options.maxGradNorm, gradScale);
    if (lossScale && !Number.isFinite(norm)) {
      tf.dispose(grads);
      const overflowedAt = lossScale.value;
      if (!lossScale.overflow()) throw new HalfPrecisionOverflow(overflowedAt, lossScale.dynamic);
      return { norm, skipped: true, lossScale: lossScale.value };
    }
    this.optimizer.apply(grads, lr, coef * gradScale);
    tf.dispose(grads);
    lossScale?.finite();
    return { norm, skipped: false, ...(lossScale ? { lossScale: lossScale.value } : {}) };
  }

  /** Drop the accumulated gradients (a diverged update, or a step that only measured). */
  discard(): void {
    if (this.acc) tf.dispose(this.acc);
    this.acc = undefined;
  }

  private gradients(): tf.Tensor[] {
    this.acc ??= this.params.map((v) => tf.zerosLike(v));
    return this.acc;
  }
}

/** precision "fp16-mixed": the gradients overflowed f16 and the scale cannot go lower (nothing was applied). */
export class HalfPrecisionOverflow extends DistillError {
  constructor(
    readonly lossScale: number,
    dynamic = false,
  ) {
    super(
      `precision "fp16-mixed": the gradients are not finite with loss_scale ${lossScale} (an operand of a product ` +
        `beyond f16's range, 65504); the update was not applied`,
      lossScale > 1 && !dynamic
        ? `continue from the last checkpoint with a lower loss_scale: distill train --out RUN --resume --set ` +
            `loss_scale=${lossScale / 4}, ` +
            'or let it adapt (--set loss_scale_growth_interval=2000); or use precision "fp32"'
        : 'the activations themselves overflow f16: use precision "fp32"',
    );
  }
}

/**
 * Sum the ranks' gradients in place of the list (each already divided by the global counts): one all-reduce
 * of all of them packed in one host buffer, not one call per tensor.
 */
async function allreduceSum(comm: Communicator, grads: tf.Tensor[]): Promise<void> {
  const sizes = grads.map((g) => g.size);
  const flat = new Float32Array(sizes.reduce((a, b) => a + b, 0));
  let offset = 0;
  for (const g of grads) {
    flat.set(await g.data(), offset);
    offset += g.size;
  }
  await comm.allreduceSum(flat);
  offset = 0;
  grads.forEach((g, i) => {
    const summed = tf.tensor(flat.subarray(offset, offset + sizes[i]!), g.shape);
    tf.dispose(g);
    grads[i] = summed;
    offset += sizes[i]!;
  });
}

/** One micro-batch of distillation: the masked rows of this rank and the teacher's outputs on them. */
export interface DistillMicroBatch {
  /** [B, T] masked token ids, row-major. */
  inputIds: Int32Array;
  /** [B, T] 1 for real tokens. */
  attentionMask: Int32Array;
  batchSize: number;
  seqLen: number;
  /** Which rows each loss reads (losses/rows.ts). */
  rows: LossRows;
  teacher: TeacherTargets;
  /** Divisors of the means: the whole global batch's counts in data-parallel runs (default: this batch's). */
  counts?: { ce: number; mlm: number; cos: number };
}

/**
 * The distillation objective of one micro-batch:
 * reports every loss in LOSS_ORDER (losses/record.ts lossesFromPacked names them).
 */
export function distillObjective(
  student: DistilBertStudent,
  batch: DistillMicroBatch,
  weights: LossWeights,
  forward: ForwardOptions,
  fused?: boolean,
): () => Objective {
  return () => {
    const ids = tf.tensor2d(batch.inputIds, [batch.batchSize, batch.seqLen], 'int32'); // [B, T]
    const mask = tf.tensor2d(batch.attentionMask, [batch.batchSize, batch.seqLen], 'int32'); // [B, T]
    const l = distillLosses(student, ids, mask, batch.rows, batch.teacher, weights, forward, {
      ...(fused === undefined ? {} : { fused }),
      ...(batch.counts ? { ceCount: batch.counts.ce, mlmCount: batch.counts.mlm, cosCount: batch.counts.cos } : {}),
    });
    return { loss: l.loss, report: l.packed() };
  };
}
