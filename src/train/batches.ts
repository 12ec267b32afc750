// The micro-batches of a run, one ahead: the reader's next global batch, DistilBERT's masking drawn over all of it
// (from the seed and the data position), this rank's rows, and the teacher's outputs for them already on their way
// (from the teacher cache when it holds the batch). While the student trains on one, the teacher works on the next.

import type { TrainConfig } from '../config.js';
import type { Cursor, CorpusReader, GlobalBatch } from '../../corpus/reader.js';
import { sliceRows } from '../../corpus/reader.js';
import { maskBatch } from '../../corpus/masking.js';
import { Rng } from '../../corpus/rng.js';
import type { WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { lossRows, type LossRows } from '../../losses/rows.js';
import type { IntermediatePlan } from '../../losses/layer-map.js';
import type { TeacherCache } from '../../teacher/cache.js';
import type { RemoteTeacher, RemoteTeacherOutput } from '../../teacher/remote.js';
import type { DistillMicroBatch } from './step.js';

const MASK_STREAM = 0x6d61736b;

/** One micro-batch: the global batch it comes from, this rank's masked rows, and the teacher's outputs to come. */
export interface MicroBatch {
  batch: GlobalBatch;
  /** This rank's rows, masked: [rows, T]. */
  inputIds: Int32Array;
  attentionMask: Int32Array;
  labels: Int32Array;
  rows: number;
  /** Undefined when this rank's share of the global batch is empty (a last batch smaller than the world). */
  lossRows: LossRows | undefined;
  /** Row counts of the whole global batch: every mean divides by these, so N ranks × b equal 1 rank × N·b. */
  counts: { ce: number; mlm: number; cos: number };
  teacher: Promise<RemoteTeacherOutput | undefined>;
}

/**
 * What the teacher is asked for rows of a batch:
 * the rows of the KL's soft targets, and the logits when the MSE reads them.
 */
export function teacherRequest(
  config: TrainConfig,
  inputIds: Int32Array,
  attentionMask: Int32Array,
  rows: number,
  seqLen: number,
  rowsOfLoss: LossRows,
) {
  return {
    inputIds,
    attentionMask,
    batchSize: rows,
    seqLen,
    softRows: config.restrict_ce_to_mask ? rowsOfLoss.maskedRows : rowsOfLoss.realRows,
    keepLogits: config.alpha_mse !== 0,
    fullLogits: false,
  };
}

/** The objective's input from a micro-batch's rows and the teacher's outputs for them. */
export function objectiveInput(
  b: {
    inputIds: Int32Array;
    attentionMask: Int32Array;
    rows: number;
    seqLen: number;
    lossRows: LossRows;
    counts?: MicroBatch['counts'];
  },
  t: RemoteTeacherOutput,
  plan: IntermediatePlan | undefined,
): DistillMicroBatch {
  return {
    inputIds: b.inputIds,
    attentionMask: b.attentionMask,
    batchSize: b.rows,
    seqLen: b.seqLen,
    rows: b.lossRows,
    ...(b.counts ? { counts: b.counts } : {}),
    teacher: {
      lastHidden: t.lastHidden,
      soft: t.soft,
      ...(plan ? { intermediate: { plan, tensors: t.intermediate } } : {}),
    },
  };
}

export class MicroBatches {
  private next: MicroBatch | undefined;
  /** Milliseconds the student waited for the teacher. */
  waitMs = 0;

  constructor(
    private readonly reader: CorpusReader,
    private readonly config: TrainConfig,
    private readonly tok: WordPieceTokenizer,
    private readonly weights: Float64Array,
    private readonly teacher: RemoteTeacher,
    private readonly cache: TeacherCache | undefined,
  ) {}

  /** Start the teacher on the first micro-batch (when the run has updates to do). */
  start(): void {
    this.next = this.prepare();
  }

  /** Where the next micro-batch comes from (a checkpoint's cursor). */
  get cursor(): Cursor {
    return this.next ? this.next.batch.position : this.reader.cursor;
  }

  /**
   * The next micro-batch and the teacher's outputs for it, once they are ready; the teacher starts on the one after,
   * unless `last`. Undefined outputs: nothing of this global batch falls to this rank.
   */
  async take(last: boolean): Promise<{ micro: MicroBatch; teacher: RemoteTeacherOutput | undefined }> {
    const micro = this.next!;
    const waitStarted = performance.now();
    const teacher = await micro.teacher;
    this.waitMs += performance.now() - waitStarted;
    this.next = last ? undefined : this.prepare(); // the teacher starts on the next batch now
    return { micro, teacher };
  }

  /** Wait for the teacher's pending batch (its worker is closed by the caller). */
  async settle(): Promise<void> {
    if (this.next) await this.next.teacher.catch(() => undefined);
  }

  private prepare(): MicroBatch {
    const { config, tok } = this;
    const batch = this.reader.next();
    const p = batch.position;
    const masked = maskBatch(
      batch.inputIds,
      batch.attentionMask,
      this.weights,
      tok.maskId,
      tok.vocabSize,
      config,
      Rng.derive(config.seed, p.epoch, p.unit, p.batch, MASK_STREAM),
    );
    const rows = batch.rowEnd - batch.rowStart;
    const inputIds = sliceRows(masked.maskedInputIds, batch.seqLen, batch.rowStart, batch.rowEnd);
    const attentionMask = sliceRows(batch.attentionMask, batch.seqLen, batch.rowStart, batch.rowEnd);
    const labels = sliceRows(masked.mlmLabels, batch.seqLen, batch.rowStart, batch.rowEnd);
    const rowsOfLoss = rows > 0 ? lossRows(attentionMask, labels, rows, batch.seqLen, tok.vocabSize) : undefined;
    let real = 0;
    let maskedCount = 0;
    for (let i = 0; i < batch.attentionMask.length; i++) {
      real += batch.attentionMask[i]!;
      if (masked.mlmLabels[i] !== -100) maskedCount++;
    }
    const counts = { ce: config.restrict_ce_to_mask ? maskedCount : real, mlm: maskedCount, cos: real };
    const request = rowsOfLoss && teacherRequest(config, inputIds, attentionMask, rows, batch.seqLen, rowsOfLoss);
    // From the teacher cache when the run has one and it holds this batch (teacher/cache.ts), else the teacher.
    const teacher = !request
      ? Promise.resolve(undefined)
      : this.cache
        ? this.cache.forward(request, () => this.teacher.forward(request))
        : this.teacher.forward(request);
    return { batch, inputIds, attentionMask, labels, rows, lossRows: rowsOfLoss, counts, teacher };
  }
}
