// Extractive question answering's pieces, for the probe task to come: SQuAD v1.1's JSON read and checked, a
// context cut into word pieces that remember their words' characters, windows with a stride over a context longer
// than the model takes (as the Hugging Face QA example cuts them), and the best span of a window's start/end
// scores mapped back to the context's characters. The SQuAD layout: {"data": [{"paragraphs": [{"context", "qas":
// [{"id", "question", "answers": [{"text", "answer_start"}]}]}]}]}

import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { makeDir, writeFileAtomic } from '../core/out.js';
import { publicDomainParagraphs } from '../../corpus/public-domain.js';
import { Rng } from '../../corpus/rng.js';
import { FileFormatError } from '../core/errors.js';

export interface QaExample {
  id: string;
  question: string;
  context: string;
  /** The gold answers: text and the character where it starts in the context. */
  answers: { text: string; start: number }[];
}

export interface QaTask {
  kind: 'qa';
  name: string;
  dir: string;
  train: QaExample[];
  dev: QaExample[];
}

const TRAIN_FILES = ['train-v1.1.json', 'train.json'];
const DEV_FILES = ['dev-v1.1.json', 'dev.json'];

/** Whether `dir` holds a SQuAD-layout task (train-v1.1.json or train.json). */
export function isSquadTask(dir: string): boolean {
  return TRAIN_FILES.some((f) => existsSync(join(dir, f)));
}

/** A SQuAD task folder: train and dev by SQuAD's names (train-v1.1.json, dev-v1.1.json) or the short ones. */
export function loadSquadTask(dir: string): QaTask {
  const find = (names: string[]): string => {
    const f = names.find((n) => existsSync(join(dir, n)));
    if (!f) throw new FileFormatError(join(dir, names[0]!), `missing (and so is ${names[1]})`, 'a SQuAD task has both');
    return join(dir, f);
  };
  return { kind: 'qa', name: basename(dir), dir, train: readSquad(find(TRAIN_FILES)), dev: readSquad(find(DEV_FILES)) };
}

/**
 * The built-in QA task (distill probe-data): passages of five sentences of the State of the Union addresses that
 * name exactly one US state (one or more times), asked "Which state does this passage name?", the answer the
 * state where it first occurs; a seeded split, a fifth to dev. A smoke test of span extraction over windows, not
 * SQuAD.
 */
export function writeStatesQaTask(
  dir: string,
  states: string[][],
  examples = 600,
  seed = 7,
): { train: number; dev: number } {
  const found: { context: string; qas: unknown[] }[] = [];
  // Contexts of five consecutive sentences of an address (the texts come whole): ~120 words, longer than the tiny
  // teacher's 128 positions once cut into pieces with the question, so most take two windows or more.
  for (const [a, address] of publicDomainParagraphs('sotu').entries()) {
    const sentences = address.split(/(?<=[.!?])\s+/);
    for (let k = 0; k + 5 <= sentences.length; k += 5) {
      const context = sentences.slice(k, k + 5).join(' ');
      const hits = states
        .map((st) => ({ text: st.join(' '), at: new RegExp(`\\b${st.join(' ')}\\b`).exec(context)?.index }))
        .filter((h) => h.at !== undefined);
      if (hits.length !== 1) continue;
      const { text, at } = hits[0]!;
      const question = 'Which state does this passage name?';
      found.push({ context, qas: [{ id: `sotu-${a}-${k}`, question, answers: [{ text, answer_start: at }] }] });
    }
  }
  new Rng(seed).shuffle(found);
  const chosen = found.slice(0, examples);
  const nDev = Math.floor(chosen.length / 5);
  const write = (file: string, set: typeof found): void =>
    writeFileAtomic(
      join(dir, file),
      JSON.stringify({ version: '1.1', data: [{ title: 'sotu', paragraphs: set }] }) + '\n',
    );
  makeDir(dir);
  write('train-v1.1.json', chosen.slice(nDev));
  write('dev-v1.1.json', chosen.slice(0, nDev));
  return { train: chosen.length - nDev, dev: nDev };
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

/** A context's words (letters and digits, or one punctuation mark) with their character spans and pieces. */
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
  // Words as BERT's pre-tokenizer cuts them: runs of letters and digits, each punctuation mark alone.
  for (const m of context.matchAll(/[\p{L}\p{N}\p{M}]+|[^\s\p{L}\p{N}\p{M}]/gu)) {
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
