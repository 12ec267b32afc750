// One evaluation: the model (and the teacher, when given) over the validation batches, the sums of
// src/eval/metrics.ts, and their means. Under MPI each rank takes every size-th batch from its rank on, and the
// sums are added with one all-reduce.

import type { Communicator } from '../parallel/communicator.js';
import { MismatchError } from '../core/errors.js';
import type { EvalBatch } from './data.js';
import { addBatch, emptySums, metricsOf, packSums, unpackSums, type EvalMetrics } from './metrics.js';
import type { EvalModel } from './models.js';

export interface EvaluateOptions {
  comm?: Communicator;
  /** Called after each batch this rank evaluates (done, of this rank's total). */
  onBatch?: (done: number, total: number) => void;
  /** Asked after each batch when alone (under MPI every rank must finish): true stops with EvaluationStopped. */
  stopRequested?: () => boolean;
}

/** An evaluation stopped before its end (a signal): no metrics. */
export class EvaluationStopped extends Error {}

export async function evaluate(
  model: EvalModel,
  teacher: EvalModel | undefined,
  batches: EvalBatch[],
  options: EvaluateOptions = {},
): Promise<EvalMetrics> {
  if (teacher && teacher.vocabSize !== model.vocabSize) {
    throw new MismatchError(
      `the model (vocab ${model.vocabSize}) and the teacher (vocab ${teacher.vocabSize}) do not share a vocabulary`,
      'evaluate a student against the teacher it was distilled from',
    );
  }
  // A student narrower than its teacher (exported without its
  // training-time projection): no hidden cosine (val_cos null).
  const cosine = teacher !== undefined && teacher.hiddenSize === model.hiddenSize;
  const rank = options.comm?.rank ?? 0;
  const size = options.comm?.size ?? 1;
  const mine = batches.filter((_, i) => i % size === rank);
  const sums = emptySums();
  for (const [i, b] of mine.entries()) {
    const [s, t] = await Promise.all([model.outputs(b), teacher?.outputs(b)]);
    addBatch(sums, s, t, b.labels, model.vocabSize, model.hiddenSize, b.batchSize, cosine);
    options.onBatch?.(i + 1, mine.length);
    if (size === 1 && options.stopRequested?.())
      throw new EvaluationStopped(`stopped after ${i + 1} of ${mine.length} batches`);
  }
  let total = sums;
  if (size > 1) {
    const packed = packSums(sums);
    await options.comm!.allreduceSum(packed);
    total = unpackSums(packed);
  }
  return metricsOf(total, teacher !== undefined, cosine);
}
