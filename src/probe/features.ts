// Frozen features for the probes: the last hidden layer, [CLS] or mean-pooled, from the teacher's ONNX graph
// or the student in tfjs.

import * as tf from '@tensorflow/tfjs';
import { Teacher } from '../../teacher/teacher.js';
import { loadStudent } from '../../student/io.js';
import { lastHiddenOfRows, rowBlocks } from '../../student/model.js';
import { selectBackend } from '../../student/backend.js';
import type { BackendName } from '../../student/backend-names.js';
import { WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { modelParameters } from '../core/parameters.js';

export type Pooling = 'cls' | 'mean';

export interface FeatureEncoder {
  label: string;
  parameters: number;
  maxPositions: number;
  tokenizer: WordPieceTokenizer;
  /** Last-layer hidden states of a padded batch, [B, T, H], on the host. */
  hidden(ids: Int32Array, mask: Int32Array, b: number, t: number): Promise<Float32Array>;
  hiddenSize: number;
  close(): Promise<void>;
}

export async function teacherEncoder(dir: string, threads: number): Promise<FeatureEncoder> {
  const teacher = await Teacher.load(dir, { hiddenStates: 'last', threads, optionName: '--teacher' });
  const parameters = modelParameters(dir);
  return {
    label: 'teacher',
    parameters,
    maxPositions: teacher.config.maxPositions,
    tokenizer: teacher.tokenizer,
    hiddenSize: teacher.config.hiddenSize,
    hidden: async (ids, mask, b, t) =>
      (await teacher.forward({ inputIds: ids, attentionMask: mask, batchSize: b, seqLen: t })).hiddenStates[0]!,
    close: () => teacher.release(),
  };
}

/** A student folder in tfjs; `rowsTimesT2` bounds the rows encoded at once (rowBlocks'; for a test). */
export async function studentEncoder(
  dir: string,
  backend?: BackendName,
  rowsTimesT2?: number,
): Promise<FeatureEncoder> {
  await selectBackend(backend);
  const student = loadStudent(dir);
  const tokenizer = WordPieceTokenizer.fromDir(dir);
  return {
    label: 'student',
    parameters: student.parameterCount(),
    maxPositions: student.config.max_position_embeddings,
    tokenizer,
    hiddenSize: student.config.dim,
    hidden: async (ids, mask, b, t) => {
      // [b, t, H], encoded a few rows at a time when the sequences are long (rowBlocks)
      const values = new Float32Array(b * t * student.config.dim);
      for (const block of rowBlocks(b, t, rowsTimesT2)) {
        const last = tf.tidy(() => lastHiddenOfRows(student, ids, mask, t, block)); // [rows, t, H]
        values.set((await last.data()) as Float32Array, block.first * t * student.config.dim); // async: as webgpu reads
        last.dispose();
      }
      return values;
    },
    close: () => Promise.resolve(student.dispose()),
  };
}

/** Token sequences right-padded to the longest: ids [B·T] (padding `padId`), mask [B·T] (1 at real tokens), T. */
export function padBatch(rows: readonly number[][], padId: number): { ids: Int32Array; mask: Int32Array; T: number } {
  const T = Math.max(...rows.map((r) => r.length));
  const ids = new Int32Array(rows.length * T).fill(padId);
  const mask = new Int32Array(rows.length * T);
  rows.forEach((r, i) => {
    ids.set(r, i * T);
    mask.fill(1, i * T, i * T + r.length);
  });
  return { ids, mask, T };
}

/** [CLS] a [SEP] (b [SEP]), the longer text cut first until it fits. */
export function encodeExample(tok: WordPieceTokenizer, texts: string[], maxPositions: number): number[] {
  const pieces = texts.map((t) => tok.tokenizeToIds(t));
  const budget = maxPositions - 1 - pieces.length;
  while (pieces.reduce((n, p) => n + p.length, 0) > budget) {
    const longest = pieces.reduce((best, p, i) => (p.length > pieces[best]!.length ? i : best), 0);
    pieces[longest]!.pop();
  }
  return [tok.clsId, ...pieces.flatMap((p) => [...p, tok.sepId])];
}

export interface FeatureResult {
  features: Float32Array[];
  tokensPerS: number;
}

export async function extractFeatures(
  enc: FeatureEncoder,
  examples: string[][],
  pooling: Pooling,
  onProgress?: (done: number, total: number) => void,
  batchSize = 32,
): Promise<FeatureResult> {
  const encoded = examples.map((texts) => encodeExample(enc.tokenizer, texts, enc.maxPositions));
  const order = encoded.map((_, i) => i).sort((a, b) => encoded[a]!.length - encoded[b]!.length);
  const H = enc.hiddenSize;
  const features = new Array<Float32Array>(examples.length);
  let tokens = 0;
  let ms = 0;
  for (let start = 0; start < order.length; start += batchSize) {
    const idx = order.slice(start, start + batchSize);
    const { ids, mask, T } = padBatch(
      idx.map((i) => encoded[i]!),
      enc.tokenizer.padId,
    );
    for (const i of idx) tokens += encoded[i]!.length;
    const t0 = performance.now();
    const hidden = await enc.hidden(ids, mask, idx.length, T); // [b, T, H]
    ms += performance.now() - t0;
    idx.forEach((i, r) => {
      const f = new Float32Array(H);
      const len = encoded[i]!.length;
      if (pooling === 'cls') f.set(hidden.subarray(r * T * H, r * T * H + H));
      else {
        for (let t = 0; t < len; t++) for (let h = 0; h < H; h++) f[h]! += hidden[(r * T + t) * H + h]!;
        for (let h = 0; h < H; h++) f[h]! /= len;
      }
      features[i] = f;
    });
    onProgress?.(Math.min(order.length, start + batchSize), order.length);
  }
  return { features, tokensPerS: tokens / (ms / 1000) };
}

/**
 * `[CLS] pieces [SEP]` of a sentence's words, and each word's first piece position (undefined for a word past the
 * model's positions, or one with no pieces).
 */
export function encodeWords(
  tok: WordPieceTokenizer,
  words: string[],
  maxPositions: number,
): { ids: number[]; first: (number | undefined)[] } {
  const ids = [tok.clsId];
  const first: (number | undefined)[] = [];
  for (const w of words) {
    const pieces = tok.tokenizeToIds(w);
    const fits = ids.length + pieces.length < maxPositions; // room left for [SEP]
    first.push(fits && pieces.length > 0 ? ids.length : undefined);
    if (fits) ids.push(...pieces);
  }
  ids.push(tok.sepId);
  return { ids, first };
}

/**
 * Per word, the last hidden state at its first word piece (`[CLS] pieces [SEP]`, one sentence a sequence); a word
 * past the model's positions gets none (undefined: the probe predicts the majority tag for it).
 */
export async function extractWordFeatures(
  enc: FeatureEncoder,
  sentences: string[][],
  onProgress?: (done: number, total: number) => void,
  batchSize = 32,
): Promise<{ features: (Float32Array | undefined)[][]; tokensPerS: number }> {
  const encoded = sentences.map((words) => encodeWords(enc.tokenizer, words, enc.maxPositions));
  const rows = await extractRows(
    enc,
    encoded.map((e) => e.ids),
    encoded.map((e) => e.first.filter((t): t is number => t !== undefined)),
    onProgress,
    batchSize,
  );
  // Back to one entry per word: the rows, in order, of the words that have a first piece.
  const features = encoded.map((e, i) => {
    let k = 0;
    return e.first.map((t) => (t === undefined ? undefined : rows.features[i]![k++]!));
  });
  return { features, tokensPerS: rows.tokensPerS };
}

/**
 * The last hidden states of token sequences at chosen positions (a QA window's [CLS] and context): per sequence,
 * one vector per position of `positions[i]`.
 */
export async function extractRows(
  enc: FeatureEncoder,
  sequences: number[][],
  positions: number[][],
  onProgress?: (done: number, total: number) => void,
  batchSize = 16,
): Promise<{ features: Float32Array[][]; tokensPerS: number }> {
  const H = enc.hiddenSize;
  const features = new Array<Float32Array[]>(sequences.length);
  let tokens = 0;
  let ms = 0;
  for (let start = 0; start < sequences.length; start += batchSize) {
    const batch = sequences.slice(start, start + batchSize);
    const { ids, mask, T } = padBatch(batch, enc.tokenizer.padId);
    for (const s of batch) tokens += s.length;
    const t0 = performance.now();
    const hidden = await enc.hidden(ids, mask, batch.length, T); // [b, T, H]
    ms += performance.now() - t0;
    batch.forEach((_, r) => {
      features[start + r] = positions[start + r]!.map((t) => hidden.slice((r * T + t) * H, (r * T + t + 1) * H));
    });
    onProgress?.(Math.min(sequences.length, start + batchSize), sequences.length);
  }
  return { features, tokensPerS: tokens / (ms / 1000) };
}
