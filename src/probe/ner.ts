// Token classification (named entities) as a probe task: CoNLL-2003's layout read, words split into word pieces
// with each word's label on its first piece (its other pieces ignored, as transformers' token-classification
// example does with -100), a linear probe per word on frozen features, scored as seqeval scores (span-metrics.ts).
//   DIR/train.txt, DIR/dev.txt (or valid.txt, CoNLL's name): one token per line with its tags in columns
//   (CoNLL-2003: word POS chunk NER; the tag column chosen by tagColumn, default the last), blank lines between
//   sentences, -DOCSTART- lines between documents.

import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { FileFormatError, InputError } from '../core/errors.js';
import { makeDir, writeFileAtomic } from '../core/out.js';
import { publicDomainParagraphs } from '../../corpus/public-domain.js';
import { Rng } from '../../corpus/rng.js';
import { entityScores, tagScheme, type TagScheme } from './span-metrics.js';
import { logisticRegression, standardise } from './linear.js';
import type { Metrics } from './metrics.js';

export interface Sentence {
  words: string[];
  tags: string[];
}

export interface NerTask {
  kind: 'ner';
  name: string;
  dir: string;
  train: Sentence[];
  dev: Sentence[];
  /** The tags of train, in a fixed order (the probe's classes). */
  tags: string[];
  scheme: TagScheme;
}

const DEV_FILES = ['dev.txt', 'valid.txt'];

/** Whether `dir` holds a CoNLL-layout task (train.txt). */
export function isConllTask(dir: string): boolean {
  return existsSync(join(dir, 'train.txt'));
}

/** Read one CoNLL file: sentences of (word, tag); a line with another column count than the file's first is refused. */
export function readConll(path: string, tagColumn?: number): Sentence[] {
  const sentences: Sentence[] = [];
  let current: Sentence = { words: [], tags: [] };
  let columns: number | undefined;
  const flush = (): void => {
    if (current.words.length) sentences.push(current);
    current = { words: [], tags: [] };
  };
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((raw, i) => {
      const line = raw.replace(/\r$/, '');
      if (line.trim() === '') return flush();
      const fields = line.trim().split(/\s+/);
      if (fields[0] === '-DOCSTART-') return flush();
      columns ??= fields.length;
      if (fields.length !== columns || columns < 2)
        throw new FileFormatError(
          `${path}:${i + 1}`,
          `${fields.length} column${fields.length === 1 ? '' : 's'} where the file's first token line has ${columns}`,
          'CoNLL lines are a token and its tags separated by spaces or tabs, the same columns on every line',
        );
      const column = tagColumn ?? columns - 1;
      if (column < 1 || column >= columns)
        throw new InputError(`--tag-column ${column}: ${path} has columns 0..${columns - 1} (0 is the word)`);
      current.words.push(fields[0]!);
      current.tags.push(fields[column]!);
    });
  flush();
  if (sentences.length === 0)
    throw new FileFormatError(path, 'no sentences', 'a CoNLL file holds token lines, sentences between blank lines');
  return sentences;
}

/** A CoNLL task folder: train.txt and dev.txt (or valid.txt); every dev tag must occur in train. */
export function loadConllTask(dir: string, tagColumn?: number): NerTask {
  const devFile = DEV_FILES.find((f) => existsSync(join(dir, f)));
  if (!devFile)
    throw new FileFormatError(join(dir, 'dev.txt'), 'missing (and so is valid.txt)', 'a CoNLL task has train and dev');
  const train = readConll(join(dir, 'train.txt'), tagColumn);
  const dev = readConll(join(dir, devFile), tagColumn);
  const tags = [...new Set(train.flatMap((s) => s.tags))].sort();
  for (const s of dev)
    for (const t of s.tags)
      if (!tags.includes(t))
        throw new FileFormatError(
          join(dir, devFile),
          `tag "${t}" does not occur in train.txt`,
          'a probe predicts the tags it was trained on: give a train.txt with every tag',
        );
  return { kind: 'ner', name: basename(dir), dir, train, dev, tags, scheme: tagScheme(train.map((s) => s.tags)) };
}

/**
 * The US states, each as its words: the built-in tasks' entities (Washington left out: in the addresses it is
 * mostly the capital or the president).
 */
export const US_STATES = (
  'Alabama Alaska Arizona Arkansas California Colorado Connecticut Delaware Florida Georgia Hawaii Idaho Illinois ' +
  'Indiana Iowa Kansas Kentucky Louisiana Maine Maryland Massachusetts Michigan Minnesota Mississippi Missouri ' +
  'Montana Nebraska Nevada New_Hampshire New_Jersey New_Mexico New_York North_Carolina North_Dakota Ohio Oklahoma ' +
  'Oregon Pennsylvania Rhode_Island South_Carolina South_Dakota Tennessee Texas Utah Vermont Virginia West_Virginia ' +
  'Wisconsin Wyoming'
)
  .split(' ')
  .map((s) => s.split('_'));

/**
 * The built-in NER task (distill probe-data): the sentences of the State of the Union addresses that name a US
 * state, each state tagged B-LOC (I-LOC for its second word) where it really occurs, every other word O; a seeded
 * split, at most `sentences` of them (a fifth to dev). A smoke test of token classification, not CoNLL-2003.
 */
export function writeStatesTask(dir: string, sentences = 1500, seed = 5): { train: number; dev: number } {
  const states = US_STATES;
  const found: Sentence[] = [];
  for (const paragraph of publicDomainParagraphs('sotu')) {
    for (const text of paragraph.split(/(?<=[.!?])\s+/)) {
      const words = text.match(/[A-Za-z]+(?:'[a-z]+)?|\d+|[^\sA-Za-z\d]/g) ?? [];
      if (words.length < 5 || words.length > 60) continue;
      const tags = words.map(() => 'O');
      let any = false;
      for (let i = 0; i < words.length; i++)
        for (const s of states)
          if (s.every((w, k) => words[i + k] === w) && tags[i] === 'O') {
            s.forEach((_, k) => (tags[i + k] = k === 0 ? 'B-LOC' : 'I-LOC'));
            any = true;
          }
      if (any) found.push({ words, tags });
    }
  }
  const rng = new Rng(seed);
  rng.shuffle(found);
  const chosen = found.slice(0, sentences);
  const nDev = Math.floor(chosen.length / 5);
  const write = (file: string, set: Sentence[]): void =>
    writeFileAtomic(
      join(dir, file),
      set.map((s) => s.words.map((w, i) => `${w} ${s.tags[i]}`).join('\n')).join('\n\n') + '\n',
    );
  makeDir(dir);
  write('train.txt', chosen.slice(nDev));
  write('dev.txt', chosen.slice(0, nDev));
  return { train: chosen.length - nDev, dev: nDev };
}

/** Entity precision, recall, F1 and token accuracy of predicted tags (by class index) against the dev sentences. */
export function nerMetrics(task: NerTask, predicted: number[][]): Metrics {
  const s = entityScores(
    task.dev.map((x) => x.tags),
    predicted.map((p) => p.map((c) => task.tags[c]!)),
  );
  return { entity_f1: s.f1, entity_precision: s.precision, entity_recall: s.recall, token_accuracy: s.accuracy };
}

/** Word features of a split: (Float32Array | undefined) per word, per sentence (features.ts extractWordFeatures). */
export type WordFeatures = (Float32Array | undefined)[][];

/**
 * A softmax per word on frozen features (multinomial logistic regression, linear.ts), its L2 strength chosen by
 * entity F1 on a held-out fifth of the train sentences; dev scored as seqeval. A word without features gets the
 * most frequent tag.
 */
export function nerLinearProbe(
  task: NerTask,
  train: WordFeatures,
  dev: WordFeatures,
  seed = 13,
): Record<string, number> {
  const classOf = new Map(task.tags.map((t, i) => [t, i]));
  const majority = mostFrequent(task.train.flatMap((s) => s.tags).map((t) => classOf.get(t)!));
  const order = task.train.map((_, i) => i);
  new Rng(seed).shuffle(order);
  const hold = order.slice(0, Math.max(1, Math.floor(order.length / 5)));
  const fit = order.slice(hold.length);
  const words = (idx: number[], f: WordFeatures): { x: Float32Array[]; y: number[] } => {
    const x: Float32Array[] = [];
    const y: number[] = [];
    for (const i of idx)
      f[i]!.forEach((v, w) => {
        if (!v) return;
        x.push(v);
        y.push(classOf.get(task.train[i]!.tags[w]!)!);
      });
    return { x, y };
  };
  /** Fit on `fitIdx`'s words, predict every word of `sentences`. */
  const predict = (fitIdx: number[], lambda: number, sentences: WordFeatures): number[][] => {
    const { x, y } = words(fitIdx, train);
    const flat = sentences.flat().filter((v): v is Float32Array => v !== undefined);
    const z = standardise(x, [flat]);
    const scores = logisticRegression(z.train, y, task.tags.length, lambda, z.others[0]!, 150);
    let k = 0;
    return sentences.map((s) => s.map((v) => (v ? argmax(scores[k++]!) : majority)));
  };
  const held: NerTask = { ...task, dev: hold.map((i) => task.train[i]!) };
  const best = [1e-4, 1e-3, 1e-2]
    .map((l) => ({
      l,
      f1: nerMetrics(
        held,
        predict(
          fit,
          l,
          hold.map((i) => train[i]!),
        ),
      )['entity_f1']!,
    }))
    .reduce((a, b) => (b.f1 > a.f1 ? b : a));
  return nerMetrics(task, predict(order, best.l, dev));
}

/** The most frequent tag everywhere: the baseline a probe must beat (entity F1 0 when it is O). */
export function nerMajority(task: NerTask): Metrics {
  const classOf = new Map(task.tags.map((t, i) => [t, i]));
  const majority = mostFrequent(task.train.flatMap((s) => s.tags).map((t) => classOf.get(t)!));
  return nerMetrics(
    task,
    task.dev.map((s) => s.tags.map(() => majority)),
  );
}

const argmax = (s: number[]): number => s.indexOf(Math.max(...s));

function mostFrequent(xs: number[]): number {
  const counts = new Map<number, number>();
  for (const x of xs) counts.set(x, (counts.get(x) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0];
}
