// The models an evaluation runs, behind one interface: a student in tfjs (a live training run's, or a checkpoint
// folder's), any ONNX model folder in onnxruntime (an exported student, the teacher itself), and the training
// run's teacher worker. Each gives, for one validation batch, the logits at its masked positions [M, V] and the
// last hidden states at its real tokens [R, H].

import * as tf from '@tensorflow/tfjs';
import { selectRows } from '../core/math.js';
import { loadStudent } from '../../student/io.js';
import {
  lastHiddenOfRows,
  rowBlocks,
  tiedProjector,
  type DistilBertStudent,
  type RowBlock,
} from '../../student/model.js';
import { Teacher } from '../../teacher/teacher.js';
import type { RemoteTeacher } from '../../teacher/remote.js';
import { isTfjsStudentFolder } from '../core/model-dir.js';
import type { EvalBatch } from './data.js';
import type { EvalOutputs } from './metrics.js';

export interface EvalModel {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  /** What runs, for the report: "tfjs student" or "onnxruntime". */
  readonly runtime: string;
  outputs(batch: EvalBatch): Promise<EvalOutputs>;
  release(): Promise<void>;
}

/**
 * A tfjs student; `release` disposes it only when `owned` (a live training run keeps its student). Long sequences
 * are encoded a few rows at a time (student/model.ts rowBlocks; `rowsTimesT2` is its bound, for a test).
 */
export function studentEvalModel(student: DistilBertStudent, owned = false, rowsTimesT2?: number): EvalModel {
  return {
    // A student narrower than its teacher gives its hidden states through its learned projection (the cosine's).
    vocabSize: student.config.vocab_size,
    hiddenSize: student.config.projection_dim ?? student.config.dim,
    runtime: 'tfjs student',
    outputs: async (b) => {
      const parts: { logits: Float32Array; hidden: Float32Array }[] = [];
      for (const block of rowBlocks(b.batchSize, b.seqLen, rowsTimesT2))
        parts.push(await studentRows(student, b, block));
      if (parts.length === 1) return parts[0]!;
      return { logits: concat(parts.map((p) => p.logits)), hidden: concat(parts.map((p) => p.hidden)) };
    },
    release: () => {
      if (owned) student.dispose();
      return Promise.resolve();
    },
  };
}

/** The student's outputs for one block of a batch's rows: logits at their masked rows, hidden states at real ones. */
async function studentRows(
  student: DistilBertStudent,
  b: EvalBatch,
  block: RowBlock,
): Promise<{ logits: Float32Array; hidden: Float32Array }> {
  const { first, rows } = block;
  const T = b.seqLen;
  // The batch's row indices (b·T + t, ascending) that fall in these rows, relative to their first.
  const within = (all: Int32Array): Int32Array =>
    all.filter((i) => i >= first * T && i < (first + rows) * T).map((i) => i - first * T);
  const [logits, hidden] = tf.tidy(() => {
    const states = lastHiddenOfRows(student, b.inputIds, b.attentionMask, T, block);
    const last = tf.reshape(states, [rows * T, student.config.dim]) as tf.Tensor2D; // [rows*T, H]
    const { embeddings, bias } = student.projector();
    // [M, H]
    const atMasked = student.vocabTransform(tf.gather(last, tf.tensor1d(within(b.maskedRows), 'int32')) as tf.Tensor2D);
    return [
      tiedProjector(atMasked, embeddings, bias),
      student.projectHidden(tf.gather(last, tf.tensor1d(within(b.realRows), 'int32')) as tf.Tensor2D),
    ]; // [M, V], [R, Ht]
  });
  const out = {
    logits: Float32Array.from((await logits.data()) as Float32Array),
    hidden: Float32Array.from((await hidden.data()) as Float32Array),
  };
  tf.dispose([logits, hidden]);
  return out;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export async function onnxEvalModel(dir: string, threads: number, optionName: string): Promise<EvalModel> {
  const model = await Teacher.load(dir, { hiddenStates: 'last', threads, optionName });
  const V = model.config.vocabSize;
  const H = model.config.hiddenSize;
  return {
    vocabSize: V,
    hiddenSize: H,
    runtime: 'onnxruntime',
    outputs: async (b) => {
      const out = await model.forward(b, { logits: true });
      return {
        logits: selectRows(out.logits, b.maskedRows, V),
        hidden: selectRows(out.hiddenStates[out.hiddenStates.length - 1]!, b.realRows, H),
      };
    },
    release: () => model.release(),
  };
}

/** A model folder: a student without ONNX runs in tfjs (the backend must be selected), anything else in onnxruntime. */
export async function loadEvalModel(dir: string, threads: number, optionName: string): Promise<EvalModel> {
  return isTfjsStudentFolder(dir) ? studentEvalModel(loadStudent(dir), true) : onnxEvalModel(dir, threads, optionName);
}

/** The training run's teacher worker (its logits fetched for these batches only). */
export function remoteTeacherEvalModel(teacher: RemoteTeacher): EvalModel {
  const V = teacher.vocabSize;
  const H = teacher.hiddenSize;
  return {
    vocabSize: V,
    hiddenSize: H,
    runtime: 'onnxruntime (teacher worker)',
    outputs: async (b) => {
      const out = await teacher.forward({
        inputIds: b.inputIds,
        attentionMask: b.attentionMask,
        batchSize: b.batchSize,
        seqLen: b.seqLen,
        softRows: new Int32Array(0),
        keepLogits: false,
        fullLogits: true,
      });
      return { logits: selectRows(out.logits!, b.maskedRows, V), hidden: selectRows(out.lastHidden, b.realRows, H) };
    },
    release: () => Promise.resolve(),
  };
}

/** What a run keeps of the teacher's outputs on its fixed validation batches (256 MiB). */
export const TEACHER_EVAL_CACHE_BYTES = 256 * 2 ** 20;

/**
 * The frozen teacher's outputs on fixed batches do not change between evaluations: keep them, batch by batch,
 * while they fit in `budgetBytes` (the masked rows' logits and the real tokens' hidden states), and run the
 * teacher again only for the batches beyond. The quick start's 128 sequences take ~60 MB; the base config's
 * 2,048 × 128 tokens would take ~4.6 GB, so most of its batches are recomputed.
 */
export function cachedEvalModel(model: EvalModel, budgetBytes = TEACHER_EVAL_CACHE_BYTES): EvalModel {
  const kept = new Map<EvalBatch, EvalOutputs>();
  let used = 0;
  return {
    vocabSize: model.vocabSize,
    hiddenSize: model.hiddenSize,
    runtime: model.runtime,
    outputs: async (b) => {
      const hit = kept.get(b);
      if (hit) return hit;
      const out = await model.outputs(b);
      const bytes = out.logits.byteLength + out.hidden.byteLength;
      if (used + bytes <= budgetBytes) {
        kept.set(b, out);
        used += bytes;
      }
      return out;
    },
    release: () => {
      kept.clear();
      return model.release();
    },
  };
}
