// Extractive question answering's pieces, for the probe task to come: SQuAD v1.1's JSON read and checked, a
// context cut into word pieces that remember their words' characters, windows with a stride over a context longer
// than the model takes (as the Hugging Face QA example cuts them), and the best span of a window's start/end
// scores mapped back to the context's characters. The SQuAD layout: {"data": [{"paragraphs": [{"context", "qas":
// [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}

import { readFileSync } from 'node:fs';
import { FileFormatError } from '../core/errors.js';

export interface QaExample {
  id: string;
  question: string;
  context: string;
  /** The gold answers: text and the character where it starts in the context. */
  answers: { text: string; start: number }[];
}

/**
 * Read a SQuAD v1.1 file. Each answer's `answer_start` must point at its text in the context: one that does not is
 * refused, naming the question (a file converted with the wrong character offsets would train on wrong spans).
 */
export function readSquad(path: string): QaExample[] {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new FileFormatError(path, `not JSON: ${(e as Error).message}`, 'SQuAD files are one JSON object');
  }
  const data = (json as { data?: unknown } | null)?.data;
  if (!Array.isArray(data) || data.length === 0)
    throw new FileFormatError(path, 'no "data" array, or an empty one', 'SQuAD v1.1: {"data": [{"paragraphs": ...}]}');
  const out: QaExample[] = [];
  for (const [a, article] of (data as { paragraphs?: unknown }[]).entries()) {
    for (const [p, para] of ((article.paragraphs ?? []) as { context?: unknown; qas?: unknown }[]).entries()) {
      const where = `data[${a}].paragraphs[${p}]`;
      if (typeof para.context !== 'string') throw new FileFormatError(path, `${where}: no "context" string`);
      for (const [q, qa] of ((para.qas ?? []) as Record<string, unknown>[]).entries())
        out.push(readQuestion(path, `${where}.qas[${q}]`, para.context, qa));
    }
  }
  if (out.length === 0) throw new FileFormatError(path, 'no questions', 'SQuAD v1.1 paragraphs hold "qas"');
  return out;
}

function readQuestion(path: string, where: string, context: string, qa: Record<string, unknown>): QaExample {
  const question = qa['question'];
  const answers = qa['answers'];
  if (typeof question !== 'string' || !Array.isArray(answers) || answers.length === 0)
    throw new FileFormatError(path, `${where}: a question needs "question" and at least one of "answers"`);
  return {
    id: typeof qa['id'] === 'string' ? qa['id'] : where,
    question,
    context,
    answers: (answers as Record<string, unknown>[]).map((ans, k) => {
      const text = ans['text'];
      const start = ans['answer_start'];
      if (typeof text !== 'string' || typeof start !== 'number' || context.slice(start, start + text.length) !== text) {
        const at = Number(start) || 0;
        const there = context.slice(at, at + String(text).length);
        throw new FileFormatError(
          path,
          `${where}.answers[${k}]: "answer_start" ${String(start)} does not point at its text ` +
            `${JSON.stringify(text)} (the context there reads ${JSON.stringify(there)})`,
          'answer_start is the character offset of the answer in its context (JavaScript strings count UTF-16 units)',
        );
      }
      return { text, start };
    }),
  };
}

/** A context's words (whitespace-separated) with their character spans, and each word's pieces. */
export interface PiecedContext {
  context: string;
  /** Per piece: the id and the word it belongs to. */
  ids: number[];
  word: number[];
  /** Per word: [first character, one past the last]. */
  chars: [number, number][];
}

export function pieceContext(context: string, tokenize: (w: string) => number[]): PiecedContext {
  const out: PiecedContext = { context, ids: [], word: [], chars: [] };
  for (const m of context.matchAll(/\S+/g)) {
    const w = out.chars.length;
    out.chars.push([m.index, m.index + m[0].length]);
    for (const id of tokenize(m[0])) {
      out.ids.push(id);
      out.word.push(w);
    }
  }
  return out;
}

/** One window of a context: pieces [start, end) of the context, and the answer's pieces in it when whole inside. */
export interface QaWindow {
  start: number;
  end: number;
  /** The first and last answer piece, relative to the window; undefined when the answer is not wholly inside. */
  answer?: [number, number];
}

/**
 * Windows of `length` context pieces, each starting `stride` pieces after the one before (the last one reaching
 * the end), as the Hugging Face QA example splits long contexts; the answer's pieces [first, last] are marked in
 * the windows that hold it whole.
 */
export function windows(pieces: number, length: number, stride: number, answer?: [number, number]): QaWindow[] {
  if (length < 1 || stride < 1) throw new Error(`windows of ${length} pieces every ${stride}`);
  const out: QaWindow[] = [];
  for (let start = 0; ; start += stride) {
    const end = Math.min(pieces, start + length);
    const inside = answer && answer[0] >= start && answer[1] < end;
    out.push({ start, end, ...(inside ? { answer: [answer[0] - start, answer[1] - start] } : {}) });
    if (end >= pieces) return out;
  }
}

/** The answer's first and last piece in the context, from its character span. */
export function answerPieces(c: PiecedContext, start: number, length: number): [number, number] {
  const first = c.chars.findIndex(([, e]) => e > start);
  let last = c.chars.findIndex(([s]) => s >= start + length) - 1;
  if (last < 0) last = c.chars.length - 1;
  const pieces = c.word.map((w, i) => [w, i] as const);
  return [pieces.find(([w]) => w >= first)![1], pieces.filter(([w]) => w <= last).at(-1)![1]];
}

/**
 * The best span of one window (start ≤ end, at most `maxLength` pieces): the highest start score + end score,
 * mapped back to the context's characters through the words the pieces belong to.
 */
export function bestSpan(
  c: PiecedContext,
  w: QaWindow,
  startScores: ArrayLike<number>,
  endScores: ArrayLike<number>,
  maxLength: number,
): { score: number; text: string; first: number; last: number } {
  let best = { score: -Infinity, first: 0, last: 0 };
  for (let i = 0; i < w.end - w.start; i++)
    for (let j = i; j < Math.min(w.end - w.start, i + maxLength); j++) {
      const s = startScores[i]! + endScores[j]!;
      if (s > best.score) best = { score: s, first: i, last: j };
    }
  const from = c.chars[c.word[w.start + best.first]!]![0];
  const to = c.chars[c.word[w.start + best.last]!]![1];
  return { ...best, text: c.context.slice(from, to) };
}
