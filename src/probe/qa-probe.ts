// Extractive QA as a probe: each question and its context as pair inputs `[CLS] question [SEP] window [SEP]`, the
// context cut into windows (src/probe/qa.ts); start and end scores per position from a linear head, trained with
// a softmax over [CLS] and the window's context positions ([CLS] where the answer is not wholly inside, as the
// Hugging Face QA example labels such windows); the best span over an example's windows, at most
// MAX_ANSWER_PIECES long, scored with SQuAD's exact match and F1 (span-metrics.ts).

import type { WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { answerPieces, bestSpan, pieceContext, windows, type PiecedContext, type QaTask, type QaWindow } from './qa.js';
import { answerScores } from './span-metrics.js';
import type { Metrics } from './metrics.js';
import { standardise } from './linear.js';

/** The longest answer the probe predicts, in pieces (the Hugging Face example's max_answer_length). */
export const MAX_ANSWER_PIECES = 30;
/** Question pieces kept (the rest cut): the context keeps most of each window. */
const MAX_QUESTION_PIECES = 64;

/** One window of one example, as the encoder reads it. */
export interface QaInput {
  example: number;
  ids: number[];
  /** Where the window's context starts in `ids` (after [CLS] question [SEP]). */
  offset: number;
  window: QaWindow;
}

export interface EncodedQa {
  contexts: PiecedContext[];
  inputs: QaInput[];
}

/** Every example's windows: `[CLS] question [SEP] context window [SEP]`, windows overlapping by half. */
export function encodeQa(tok: WordPieceTokenizer, examples: QaTask['train'], maxPositions: number): EncodedQa {
  const contexts: PiecedContext[] = [];
  const inputs: QaInput[] = [];
  examples.forEach((ex, i) => {
    const q = tok.tokenizeToIds(ex.question).slice(0, MAX_QUESTION_PIECES);
    const c = pieceContext(ex.context, (w) => tok.tokenizeToIds(w));
    contexts.push(c);
    const length = maxPositions - q.length - 3;
    const gold = ex.answers[0]!;
    const answer = c.ids.length > 0 ? answerPieces(c, gold.start, gold.text.length) : undefined;
    for (const w of windows(Math.max(1, c.ids.length), length, Math.max(1, Math.floor(length / 2)), answer)) {
      const ids = [tok.clsId, ...q, tok.sepId, ...c.ids.slice(w.start, w.end), tok.sepId];
      inputs.push({ example: i, ids, offset: q.length + 2, window: w });
    }
  });
  return { contexts, inputs };
}

/** The rows a window's head scores: [CLS] (0), then its context positions. */
export function scoredPositions(x: QaInput): number[] {
  return [0, ...Array.from({ length: x.window.end - x.window.start }, (_, k) => x.offset + k)];
}

/** The gold start and end among scoredPositions: the answer's (1-based past [CLS]), or [CLS] (0, 0). */
export function goldRows(x: QaInput): [number, number] {
  return x.window.answer ? [x.window.answer[0] + 1, x.window.answer[1] + 1] : [0, 0];
}

/** Per example, the text of the best span over its windows, from each window's start/end scores over its rows. */
export function predictAnswers(
  qa: EncodedQa,
  examples: number,
  scores: { start: ArrayLike<number>; end: ArrayLike<number> }[],
): string[] {
  const best = Array.from({ length: examples }, () => ({ score: -Infinity, text: '' }));
  qa.inputs.forEach((x, k) => {
    // The context rows only: an answer is never [CLS] in SQuAD v1.1.
    const s = Array.from(scores[k]!.start).slice(1);
    const e = Array.from(scores[k]!.end).slice(1);
    const span = bestSpan(qa.contexts[x.example]!, x.window, s, e, MAX_ANSWER_PIECES);
    if (span.score > best[x.example]!.score) best[x.example] = { score: span.score, text: span.text };
  });
  return best.map((b) => b.text);
}

/** Exact match and F1 over the dev questions (each the best over its gold answers), as SQuAD's evaluation. */
export function qaMetrics(task: QaTask, predicted: string[]): Metrics {
  const s = task.dev.map((ex, i) =>
    answerScores(
      predicted[i]!,
      ex.answers.map((a) => a.text),
    ),
  );
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  return { exact_match: mean(s.map((x) => x.exact)), answer_f1: mean(s.map((x) => x.f1)) };
}

/**
 * Linear start and end heads on frozen features (one vector each; a bias would cancel in the softmax over
 * positions), fitted by Adam on the mean cross-entropy of the gold start and end over every training window, with
 * a small L2; features standardised on the training rows. Returns each dev window's scores.
 */
export function fitLinearHeads(
  train: { rows: Float32Array[]; gold: [number, number] }[],
  dev: Float32Array[][],
  iterations = 150,
  lambda = 1e-3,
): { start: Float64Array; end: Float64Array }[] {
  const d = train[0]!.rows[0]!.length;
  // Standardised on the training rows (linear.ts), then regrouped by window.
  const { train: allZ, others } = standardise(
    train.flatMap((w) => w.rows),
    dev,
  );
  let next = 0;
  const windowsZ = train.map((w) => ({ rows: w.rows.map(() => allZ[next++]!), gold: w.gold }));
  const heads = [new Float64Array(d), new Float64Array(d)]; // start, end
  const moments = heads.map(() => ({ m: new Float64Array(d), v: new Float64Array(d) }));
  for (let it = 1; it <= iterations; it++) {
    heads.forEach((w, h) => {
      const grad = new Float64Array(d);
      for (const win of windowsZ) {
        const p = softmax(win.rows.map((x) => dot(x, w)));
        win.rows.forEach((x, r) => {
          const g = (p[r]! - (r === win.gold[h] ? 1 : 0)) / windowsZ.length;
          for (let j = 0; j < d; j++) grad[j]! += g * x[j]!;
        });
      }
      const { m, v } = moments[h]!;
      for (let j = 0; j < d; j++) {
        const g = grad[j]! + lambda * w[j]!;
        m[j] = 0.9 * m[j]! + 0.1 * g;
        v[j] = 0.999 * v[j]! + 0.001 * g * g;
        w[j]! -= (0.05 * (m[j]! / (1 - 0.9 ** it))) / (Math.sqrt(v[j]! / (1 - 0.999 ** it)) + 1e-8);
      }
    });
  }
  return others.map((zs) => {
    return {
      start: Float64Array.from(zs, (x) => dot(x, heads[0]!)),
      end: Float64Array.from(zs, (x) => dot(x, heads[1]!)),
    };
  });
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += a[j]! * b[j]!;
  return s;
}

function softmax(s: number[]): number[] {
  const max = Math.max(...s);
  const e = s.map((x) => Math.exp(x - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}
