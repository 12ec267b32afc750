// Which rows (flattened batch positions b·T + t) each loss reads. Computed on the host from the batch's
// attention mask and MLM labels (-100 = ignore), so that the device works on selected rows only.

import { ShapeError } from '../src/core/errors.js';
import { IGNORE_INDEX } from '../src/core/labels.js';

export interface LossRows {
  batchSize: number;
  seqLen: number;
  /** Positions with attention mask 1 ([CLS] and [SEP] included): the cosine loss rows, and the KL rows by default. */
  realRows: Int32Array;
  /** Positions whose label is not -100: the MLM rows (and the KL rows with restrict_ce_to_mask). */
  maskedRows: Int32Array;
  /** The labels at maskedRows. */
  maskedLabels: Int32Array;
}

export function lossRows(
  attentionMask: Int32Array,
  mlmLabels: Int32Array,
  batchSize: number,
  seqLen: number,
  vocabSize: number,
): LossRows {
  const n = batchSize * seqLen;
  if (attentionMask.length !== n || mlmLabels.length !== n) {
    throw new ShapeError(
      `attention_mask has ${attentionMask.length} and mlm_labels ` +
        `${mlmLabels.length} values, expected [${batchSize}, ${seqLen}]`,
    );
  }
  const real: number[] = [];
  const masked: number[] = [];
  const labels: number[] = [];
  for (let i = 0; i < n; i++) {
    if (attentionMask[i] === 1) real.push(i);
    else if (attentionMask[i] !== 0)
      throw new ShapeError(
        `attention_mask[${Math.floor(i / seqLen)}][${i % seqLen}] is ${attentionMask[i]}, expected 0 or 1`,
      );
    const label = mlmLabels[i]!;
    if (label === IGNORE_INDEX) continue;
    if (label < 0 || label >= vocabSize)
      throw new ShapeError(
        `mlm_labels[${Math.floor(i / seqLen)}][${i % seqLen}] is ${label}: ` +
          `not -100 and not a token id below ${vocabSize}`,
      );
    if (attentionMask[i] !== 1)
      throw new ShapeError(`mlm_labels[${Math.floor(i / seqLen)}][${i % seqLen}] labels a padding position`);
    masked.push(i);
    labels.push(label);
  }
  if (real.length === 0) throw new ShapeError('the batch has no real tokens (attention_mask is all 0)');
  return {
    batchSize,
    seqLen,
    realRows: Int32Array.from(real),
    maskedRows: Int32Array.from(masked),
    maskedLabels: Int32Array.from(labels),
  };
}

/** For each of `subset` (a subsequence of `of`), its index in `of`. */
export function positionsWithin(subset: Int32Array, of: Int32Array): Int32Array {
  const index = new Map<number, number>();
  of.forEach((r, i) => index.set(r, i));
  return Int32Array.from(subset, (r) => {
    const i = index.get(r);
    if (i === undefined) throw new ShapeError(`row ${r} is not among the selected rows`);
    return i;
  });
}
