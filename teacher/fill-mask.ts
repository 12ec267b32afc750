// Fill-mask with an ONNX masked-LM (the teacher, or an exported student): for each [MASK] in each text,
// the top-k tokens with their softmax probabilities, as transformers' fill-mask pipeline ranks them.

import { InputError } from '../src/core/errors.js';
import type { TeacherBatch } from './teacher.js';
import type { WordPieceTokenizer } from '../corpus/tokenizer.js';

/** What fill-mask needs of a model: the teacher (ONNX), an exported student, or a student run in tfjs. */
export interface MaskedLanguageModel {
  tokenizer: WordPieceTokenizer;
  config: { maxPositions: number; vocabSize: number };
  /** Logits [B, T, V], row-major. */
  forward(batch: TeacherBatch): Promise<{ logits: Float32Array }>;
}

export interface MaskPrediction {
  token: string;
  token_id: number;
  score: number;
}

export interface FillMaskInput {
  text: string;
  /**
   * Where the text came from, for error messages ("--text", "inputs.json: input 3", "big.jsonl:17"; default "input").
   */
  origin?: string;
}

/** One ranked list per mask, in the order the masks appear in the text. */
export type FillMaskResult = MaskPrediction[][];

export interface EncodedInput {
  ids: number[];
  maskPositions: number[];
}

export function encodeFillMaskInput(model: MaskedLanguageModel, input: FillMaskInput): EncodedInput {
  const tok = model.tokenizer;
  const ids = tok.encode(tok.normalizeMaskMarkers(input.text));
  const maskPositions = ids.flatMap((id, i) => (id === tok.maskId ? [i] : []));
  if (maskPositions.length === 0) {
    throw new InputError(
      `${input.origin ?? 'input'}: no mask token in "${truncate(input.text)}"`,
      `write ${tok.special.mask} (or [mask]) where the model should fill in a word`,
    );
  }
  if (ids.length > model.config.maxPositions) {
    throw new InputError(
      `${input.origin ?? 'input'}: ${ids.length} tokens (with [CLS] and [SEP]) is longer than the model's ` +
        `${model.config.maxPositions} positions`,
      'shorten the text around the mask',
    );
  }
  return { ids, maskPositions };
}

function truncate(s: string, n = 80): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

/** Top-k of softmax(logits) over one row, highest first (ties: lower id first). */
export function topKSoftmax(row: Float32Array, k: number): { id: number; score: number }[] {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i]! - max);
  const best: { id: number; logit: number }[] = [];
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (best.length === k && v <= best[k - 1]!.logit) continue;
    let j = best.length === k ? k - 1 : best.length;
    while (j > 0 && best[j - 1]!.logit < v) j--;
    best.splice(j, 0, { id: i, logit: v });
    if (best.length > k) best.pop();
  }
  return best.map((b) => ({ id: b.id, score: Math.exp(b.logit - max) / sum }));
}

/** Run a batch of inputs (right-padded to the longest) and rank the tokens at every mask. */
export async function fillMask(
  model: MaskedLanguageModel,
  inputs: FillMaskInput[],
  topK: number,
): Promise<FillMaskResult[]> {
  if (!Number.isInteger(topK) || topK < 1 || topK > model.config.vocabSize) {
    throw new InputError(
      `top-k ${topK} must be a whole number from 1 to the vocabulary size ${model.config.vocabSize}`,
    );
  }
  const encoded = inputs.map((input) => encodeFillMaskInput(model, input));
  if (encoded.length === 0) return [];
  const B = encoded.length;
  const T = Math.max(...encoded.map((e) => e.ids.length));
  const inputIds = new Int32Array(B * T).fill(model.tokenizer.padId);
  const attentionMask = new Int32Array(B * T);
  encoded.forEach((e, b) => {
    inputIds.set(e.ids, b * T);
    attentionMask.fill(1, b * T, b * T + e.ids.length);
  });
  const { logits } = await model.forward({ inputIds, attentionMask, batchSize: B, seqLen: T }); // [B, T, V]
  const V = model.config.vocabSize;
  return encoded.map((e, b) =>
    e.maskPositions.map((t) => {
      const row = logits.subarray((b * T + t) * V, (b * T + t + 1) * V);
      return topKSoftmax(row, topK).map(({ id, score }) => ({
        token: model.tokenizer.decodeToken(id),
        token_id: id,
        score,
      }));
    }),
  );
}

/**
 * The model card's output: per input an object "0".."K-1" → token (an array of them when the input has several masks).
 */
export function cardFormat(result: FillMaskResult): Record<string, string> | Record<string, string>[] {
  const perMask = result.map((preds) => Object.fromEntries(preds.map((p, i) => [String(i), p.token])));
  return perMask.length === 1 ? perMask[0]! : perMask;
}

/** `--scores` output: per input the ranked {token, token_id, score} list (an array of lists with several masks). */
export function scoresFormat(result: FillMaskResult): MaskPrediction[] | MaskPrediction[][] {
  return result.length === 1 ? result[0]! : result;
}
