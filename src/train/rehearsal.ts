// On wasm every tensor of the step lives in one memory of at most 4 GiB (student/kernels/wasm-heap.ts), and how much a
// step needs grows with its tokens: one rehearsal of the largest micro-batch the run can meet (batch_size sequences of
// the corpus's max_length, every token real; two with grad_accum > 1, whose summed gradients add to the peak), its
// gradients dropped, stops a run that cannot fit now, not at its first full batch hours later. Nothing of the run's
// state changes (the weights, the moments, the data cursor and every seed stay as they were).

import type { TrainConfig } from '../config.js';
import { readCorpusMeta } from '../../corpus/prepare.js';
import { maskBatch } from '../../corpus/masking.js';
import { Rng } from '../../corpus/rng.js';
import type { WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { lossRows } from '../../losses/rows.js';
import type { IntermediatePlan } from '../../losses/layer-map.js';
import type { RemoteTeacher } from '../../teacher/remote.js';
import type { DistilBertStudent } from '../../student/model.js';
import { wasmMemory } from '../../student/backend.js';
import { objectiveInput, teacherRequest } from './batches.js';
import { distillObjective, type UpdateStep } from './step.js';

const REHEARSAL_STREAM = 0x72656872;

export interface Rehearsal {
  config: TrainConfig;
  tok: WordPieceTokenizer;
  /** The masking weights of the corpus's tokens. */
  weights: Float64Array;
  teacher: RemoteTeacher;
  student: DistilBertStudent;
  update: UpdateStep;
  plan: IntermediatePlan | undefined;
  log: (line: string) => void;
}

export async function rehearseLargestBatch(r: Rehearsal): Promise<void> {
  const { config, tok } = r;
  const T = readCorpusMeta(config.corpus).max_length;
  const B = config.batch_size;
  const ordinary = Array.from({ length: tok.vocabSize }, (_, id) => id).filter((id) => !tok.specialIds.has(id));
  const ids = Int32Array.from({ length: B * T }, (_, i) =>
    i % T === 0 ? tok.clsId : i % T === T - 1 ? tok.sepId : ordinary[(i * 7919) % ordinary.length]!,
  );
  const attentionMask = new Int32Array(B * T).fill(1);
  const masked = maskBatch(
    ids,
    attentionMask,
    r.weights,
    tok.maskId,
    tok.vocabSize,
    config,
    Rng.derive(config.seed, REHEARSAL_STREAM),
  );
  const rowsOfLoss = lossRows(attentionMask, masked.mlmLabels, B, T, tok.vocabSize);
  const t = await r.teacher.forward(teacherRequest(config, masked.maskedInputIds, attentionMask, B, T, rowsOfLoss));
  const input = objectiveInput(
    { inputIds: masked.maskedInputIds, attentionMask, rows: B, seqLen: T, lossRows: rowsOfLoss },
    t,
    r.plan,
  );
  try {
    for (let micro = 0; micro < Math.min(2, config.grad_accum); micro++) {
      await r.update.accumulate(distillObjective(r.student, input, config, { training: true, dropoutSeed: micro }));
    }
    await r.update.gradNorm(); // the update's own temporaries (the gradient norm's); AdamW updates in place
  } finally {
    r.update.discard();
  }
  const { bytes: heap, limitBytes } = wasmMemory()!;
  r.log(
    `wasm memory: the largest micro-batch (${B} × ${T} tokens${config.grad_accum > 1 ? ', two accumulated' : ''}) ` +
      `fits; the memory has grown to ` +
      `${Math.round(heap / 2 ** 20)} MiB of ${limitBytes / 2 ** 20}`,
  );
  // Within a tenth of the end, the order of later allocations (another batch's length, the validation pass) can leave
  // no free block large enough: a bert-base student at 15 × 128
  // rehearsed at 4,092 MiB, then failed in its first update.
  if (heap > 0.9 * limitBytes) {
    r.log(
      "warning: that is within a tenth of the wasm memory's end; a later step may not fit (the error will say so): " +
        'a smaller batch_size with a larger grad_accum leaves room',
    );
  }
}
