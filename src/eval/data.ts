// The validation set: a fixed list of masked batches, built once per run (or per `distill eval`) and the same at
// every evaluation, so that the metrics of two evaluations differ only by the model. Sequences come from a
// prepared corpus (a separate one, or the record batches a split holds back: corpus/reader.ts heldOutUnits), in
// the reader's seeded order; the masking is the run's (15%, 80/10/10 by default) drawn from a fixed stream of
// the seed, one sub-stream per batch.

import { CorpusReader, type ReaderOptions } from '../../corpus/reader.js';
import { maskBatch, tokenWeights, type MaskingConfig } from '../../corpus/masking.js';
import { readTokenCounts } from '../../corpus/prepare.js';
import { Rng } from '../../corpus/rng.js';
import { InputError } from '../core/errors.js';
import { IGNORE_INDEX } from '../core/labels.js';
import { EVAL_BATCH_SIZE, EVAL_BUCKET_WIDTH } from './batching.js';

export interface EvalBatch {
  /** [B, T] masked input ids. */
  inputIds: Int32Array;
  /** [B, T] 1 for real tokens. */
  attentionMask: Int32Array;
  batchSize: number;
  seqLen: number;
  /** b·T + t of each masked position, ascending; `labels` holds the true token of each. */
  maskedRows: Int32Array;
  labels: Int32Array;
  /** b·T + t of each real token, ascending. */
  realRows: Int32Array;
}

export interface ValidationSource {
  /** Prepared corpus folder. */
  corpus: string;
  /** Read only the held-out record batches of this split (absent: the whole corpus). */
  heldOut?: { fraction: number; optionName?: string };
  /** Seed of the split, the order and the masking. */
  seed: number;
  /** Sequences to evaluate on (fewer when the source holds fewer). */
  sequences: number;
  /** Default EVAL_BATCH_SIZE, EVAL_BUCKET_WIDTH (the batches and their masks depend on both). */
  batchSize?: number;
  bucketWidth?: number;
}

export interface TokenizerIds {
  padId: number;
  maskId: number;
  vocabSize: number;
  specialIds: Iterable<number>;
}

const VALID_MASK_STREAM = 0x76616c6d;

/** Build the validation batches: at most `sequences` sequences, masked once. */
export function validationBatches(src: ValidationSource, tok: TokenizerIds, masking: MaskingConfig): EvalBatch[] {
  const options: ReaderOptions = {
    batchSize: src.batchSize ?? EVAL_BATCH_SIZE,
    rank: 0,
    world: 1,
    seed: src.seed,
    bucketWidth: src.bucketWidth ?? EVAL_BUCKET_WIDTH,
    padId: tok.padId,
    ...(src.heldOut
      ? { heldOut: { fraction: src.heldOut.fraction, part: 'valid' as const, optionName: src.heldOut.optionName } }
      : {}),
  };
  const reader = new CorpusReader(src.corpus, options);
  const weights = tokenWeights(readTokenCounts(src.corpus), tok.specialIds, masking.mlm_smoothing);
  const wanted = Math.min(src.sequences, reader.sequences);
  const batches: EvalBatch[] = [];
  let taken = 0;
  while (taken < wanted) {
    const b = reader.next();
    const rows = Math.min(b.rows, wanted - taken);
    const ids = b.inputIds.subarray(0, rows * b.seqLen);
    const mask = b.attentionMask.subarray(0, rows * b.seqLen);
    const masked = maskBatch(
      ids,
      mask,
      weights,
      tok.maskId,
      tok.vocabSize,
      masking,
      Rng.derive(src.seed, VALID_MASK_STREAM, batches.length),
    );
    const maskedRows: number[] = [];
    const labels: number[] = [];
    const realRows: number[] = [];
    for (let i = 0; i < rows * b.seqLen; i++) {
      if (mask[i] === 1) realRows.push(i);
      if (masked.mlmLabels[i] !== IGNORE_INDEX) {
        maskedRows.push(i);
        labels.push(masked.mlmLabels[i]!);
      }
    }
    batches.push({
      inputIds: masked.maskedInputIds,
      attentionMask: Int32Array.from(mask),
      batchSize: rows,
      seqLen: b.seqLen,
      maskedRows: Int32Array.from(maskedRows),
      labels: Int32Array.from(labels),
      realRows: Int32Array.from(realRows),
    });
    taken += rows;
  }
  if (batches.length === 0)
    throw new InputError(`${src.corpus}: no sequences to evaluate on`, 'prepare a corpus with text in it');
  return batches;
}
