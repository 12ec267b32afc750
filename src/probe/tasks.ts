// GLUE-style tasks: files in GLUE's own layout (train.tsv, dev.tsv or dev_matched.tsv, tab-separated, read
// as GLUE's loaders read them: no quote processing), and the built-in probe tasks made from public labelled
// data in npm (distill probe-data).

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { FileFormatError } from '../core/errors.js';
import { writeFileAtomic } from '../core/safetensors.js';
import { publicDomainParagraphs, spamAssassinMails } from '../../corpus/public-domain.js';
import { Rng } from '../../corpus/rng.js';

export type TaskKind = 'classification' | 'regression';
export type MetricName = 'accuracy' | 'f1' | 'matthews' | 'pearson' | 'spearman';

export interface TaskSpec {
  name: string;
  kind: TaskKind;
  /** Columns of the text(s) and the label, by header name (or index for header-less files). */
  text: (string | number)[];
  label: string | number;
  header: boolean;
  metrics: MetricName[];
  devFile: string;
  /** The task's labels (GLUE's); absent: the labels train.tsv holds. */
  labels?: string[];
}

export interface Example { texts: string[]; label: string }

export interface Task {
  spec: TaskSpec;
  dir: string;
  train: Example[];
  dev: Example[];
  /** Class names in a fixed order (classification). */
  classes: string[];
}

const BINARY = ['0', '1'];

const KNOWN: Record<string, Omit<TaskSpec, 'name'>> = {
  'sst-2': { kind: 'classification', text: ['sentence'], label: 'label', header: true, metrics: ['accuracy'], devFile: 'dev.tsv', labels: BINARY },
  cola: { kind: 'classification', text: [3], label: 1, header: false, metrics: ['matthews'], devFile: 'dev.tsv', labels: BINARY },
  mrpc: { kind: 'classification', text: ['#1 String', '#2 String'], label: 'Quality', header: true, metrics: ['accuracy', 'f1'], devFile: 'dev.tsv', labels: BINARY },
  qqp: { kind: 'classification', text: ['question1', 'question2'], label: 'is_duplicate', header: true, metrics: ['accuracy', 'f1'], devFile: 'dev.tsv', labels: BINARY },
  rte: { kind: 'classification', text: ['sentence1', 'sentence2'], label: 'label', header: true, metrics: ['accuracy'], devFile: 'dev.tsv', labels: ['entailment', 'not_entailment'] },
  qnli: { kind: 'classification', text: ['question', 'sentence'], label: 'label', header: true, metrics: ['accuracy'], devFile: 'dev.tsv', labels: ['entailment', 'not_entailment'] },
  mnli: { kind: 'classification', text: ['sentence1', 'sentence2'], label: 'gold_label', header: true, metrics: ['accuracy'], devFile: 'dev_matched.tsv', labels: ['contradiction', 'entailment', 'neutral'] },
  'sts-b': { kind: 'regression', text: ['sentence1', 'sentence2'], label: 'score', header: true, metrics: ['pearson', 'spearman'], devFile: 'dev.tsv' },
};

/** The task of a folder: by GLUE's folder names (SST-2, CoLA, MRPC, QQP, RTE, QNLI, MNLI, STS-B), else by the header of train.tsv. */
export function taskSpecFor(dir: string): TaskSpec {
  const name = basename(dir.replace(/\/+$/, ''));
  const key = name.toLowerCase().replace(/_/g, '-').replace(/^sst2$/, 'sst-2').replace(/^stsb$/, 'sts-b');
  const known = KNOWN[key];
  if (known) return { name, ...known };
  const train = join(dir, 'train.tsv');
  if (!existsSync(train)) throw new FileFormatError(train, 'missing', 'a task folder holds train.tsv and dev.tsv in GLUE\'s layout');
  const header = readFileSync(train, 'utf8').split('\n', 1)[0]!.split('\t');
  if (header.includes('sentence1') && header.includes('sentence2') && header.includes('label')) {
    return { name, kind: 'classification', text: ['sentence1', 'sentence2'], label: 'label', header: true, metrics: ['accuracy'], devFile: 'dev.tsv' };
  }
  if (header.includes('sentence') && header.includes('label')) {
    return { name, kind: 'classification', text: ['sentence'], label: 'label', header: true, metrics: ['accuracy'], devFile: 'dev.tsv' };
  }
  throw new FileFormatError(train, `header "${header.join('\\t')}" is not one of GLUE's tasks`, 'name the folder after the GLUE task (SST-2, CoLA, MRPC, QQP, RTE, QNLI, MNLI, STS-B), or use columns sentence[,label] or sentence1, sentence2, label');
}

/** Rows of a GLUE TSV: split on tabs, quotes kept as they are (GLUE's loaders use no quoting). */
export function readTsv(path: string, spec: TaskSpec): Example[] {
  if (!existsSync(path)) throw new FileFormatError(path, 'missing', `a ${spec.name} folder holds train.tsv and ${spec.devFile}`);
  const lines = readFileSync(path, 'utf8').split(/\r?\n/).filter((l) => l.length > 0);
  let columns: string[] = [];
  if (spec.header) {
    const header = lines.shift();
    if (header === undefined) throw new FileFormatError(path, 'empty: no header line and no examples', `a ${spec.name} file starts with the header line of GLUE's ${spec.name} files, then one example per line`);
    columns = header.split('\t');
  }
  if (lines.length === 0) throw new FileFormatError(path, 'no examples', 'one example per line, tab-separated, after the header');
  const index = (c: string | number, what: string): number => {
    if (typeof c === 'number') return c;
    const i = columns.indexOf(c);
    if (i < 0) throw new FileFormatError(path, `no column "${c}" (${what}) in the header "${columns.join('\\t')}"`);
    return i;
  };
  const textIdx = spec.text.map((c) => index(c, 'text'));
  const labelIdx = index(spec.label, 'label');
  return lines.map((line, i) => {
    const cells = line.split('\t');
    const need = Math.max(labelIdx, ...textIdx);
    if (cells.length <= need) throw new FileFormatError(`${path}:${i + 1 + (spec.header ? 1 : 0)}`, `${cells.length} columns, expected at least ${need + 1}`);
    return { texts: textIdx.map((t) => cells[t]!), label: cells[labelIdx]!.trim() };
  });
}

export function loadTask(dir: string): Task {
  const spec = taskSpecFor(dir);
  const trainPath = join(dir, 'train.tsv');
  const devPath = join(dir, spec.devFile);
  const train = readTsv(trainPath, spec);
  const dev = readTsv(devPath, spec);
  // Line numbers of the examples in their file (the header counts).
  const at = (path: string, i: number): string => `${path}:${i + 1 + (spec.header ? 1 : 0)}`;
  if (spec.kind === 'regression') {
    for (const [path, examples] of [[trainPath, train], [devPath, dev]] as const) {
      const bad = examples.findIndex((e) => !Number.isFinite(Number(e.label)) || e.label === '');
      if (bad >= 0) throw new FileFormatError(at(path, bad), `label "${examples[bad]!.label}" is not a number (${spec.name} is a regression task)`);
    }
    return { spec, dir, train, dev, classes: [] };
  }
  // Classification: the labels are the task's (GLUE's set), or else those of train.tsv, which must not mix whole
  // numbers with words (a "spam" among 0/1 labels is a typo, not a third class).
  let classes: string[];
  if (spec.labels) {
    classes = [...spec.labels];
  } else {
    classes = [...new Set(train.map((e) => e.label))].sort();
    const numeric = classes.filter((c) => /^-?\d+$/.test(c));
    if (numeric.length > 0 && numeric.length < classes.length) {
      const odd = train.findIndex((e) => !/^-?\d+$/.test(e.label));
      throw new FileFormatError(at(trainPath, odd), `label "${train[odd]!.label}" is not a whole number like the task's other labels (${numeric.join(', ')})`,
        'fix the label; a classification task\'s labels are all whole numbers or all words');
    }
  }
  for (const [path, examples] of [[trainPath, train], [devPath, dev]] as const) {
    const bad = examples.findIndex((e) => !classes.includes(e.label));
    if (bad >= 0) {
      throw new FileFormatError(at(path, bad), `label "${examples[bad]!.label}" is not one of the task's labels (${classes.join(', ')})`,
        spec.labels ? `${spec.name}'s labels are GLUE's: ${classes.join(', ')}` : 'every dev label must occur in train.tsv');
    }
  }
  const present = new Set(train.map((e) => e.label));
  if (present.size < 2) {
    throw new FileFormatError(trainPath, `every example has the label "${train[0]!.label}": a classifier needs at least two classes to learn`,
      'give train.tsv examples of each class');
  }
  return { spec, dir, train, dev, classes };
}

// --- Built-in probe tasks from public labelled data in npm. ---

function clean(s: string): string {
  return s.replace(/[\t\r\n]+/g, ' ').replace(/\s+/g, ' ').trim();
}

/** Subject and the start of the body of a raw e-mail, on one line. */
export function emailText(raw: string, maxChars = 600): string {
  const split = raw.search(/\r?\n\r?\n/);
  const headers = split >= 0 ? raw.slice(0, split) : '';
  const body = split >= 0 ? raw.slice(split) : raw;
  const subject = /^Subject:(.*)$/im.exec(headers)?.[1]?.trim() ?? '';
  const text = clean(`${subject}. ${body.replace(/<[^>]+>/g, ' ')}`);
  return text.slice(0, maxChars);
}

function writeTsv(path: string, header: string[], rows: string[][]): void {
  writeFileAtomic(path, [header.join('\t'), ...rows.map((r) => r.join('\t'))].join('\n') + '\n');
}

export interface ProbeDataSummary { task: string; train: number; dev: number }

/**
 * Write the built-in tasks in GLUE's layout under `dir`:
 *  spam-ham/  single sentence (SST-2's columns): e-mails of the SpamAssassin corpus, label 1 = spam;
 *  next-passage/  sentence pairs (RTE's columns): two passages of the same book or address, label 1 when the
 *  second follows the first, 0 when it is a passage from elsewhere.
 * Splits are deterministic (seeded); `perClass` examples per class in train, half that in dev.
 */
export function writeProbeData(dir: string, perClass = 400, seed = 2026): ProbeDataSummary[] {
  const rng = new Rng(seed);
  const summaries: ProbeDataSummary[] = [];
  const split = <T>(items: T[]): { train: T[]; dev: T[] } => {
    rng.shuffle(items);
    const nTrain = Math.round((items.length * 2) / 3);
    return { train: items.slice(0, nTrain), dev: items.slice(nTrain) };
  };

  const mails = spamAssassinMails();
  const ham = mails.filter((m) => m.group.includes('ham')).map((m) => [emailText(m.text), '0']);
  const spam = mails.filter((m) => m.group.includes('spam')).map((m) => [emailText(m.text), '1']);
  rng.shuffle(ham);
  rng.shuffle(spam);
  const n = Math.round(perClass * 1.5);
  const spamTask = split([...ham.slice(0, n), ...spam.slice(0, n)].filter((r) => r[0]!.length > 0));
  mkdirSync(join(dir, 'spam-ham'), { recursive: true });
  writeTsv(join(dir, 'spam-ham', 'train.tsv'), ['sentence', 'label'], spamTask.train);
  writeTsv(join(dir, 'spam-ham', 'dev.tsv'), ['sentence', 'label'], spamTask.dev);
  summaries.push({ task: 'spam-ham', train: spamTask.train.length, dev: spamTask.dev.length });

  const paragraphs = [...publicDomainParagraphs('moby-dick'), ...publicDomainParagraphs('sotu')]
    .filter((p) => p.length > 80).map((p) => clean(p).slice(0, 300));
  const pairs: string[][] = [];
  for (let i = 0; i < n; i++) {
    const a = rng.int(paragraphs.length - 1);
    pairs.push([paragraphs[a]!, paragraphs[a + 1]!, '1']);
    let b = rng.int(paragraphs.length);
    while (Math.abs(b - a) <= 2) b = rng.int(paragraphs.length);
    const c = rng.int(paragraphs.length);
    pairs.push([paragraphs[c]!, paragraphs[b]!, '0']);
  }
  const pairTask = split(pairs);
  mkdirSync(join(dir, 'next-passage'), { recursive: true });
  writeTsv(join(dir, 'next-passage', 'train.tsv'), ['index', 'sentence1', 'sentence2', 'label'], pairTask.train.map((r, i) => [String(i), ...r]));
  writeTsv(join(dir, 'next-passage', 'dev.tsv'), ['index', 'sentence1', 'sentence2', 'label'], pairTask.dev.map((r, i) => [String(i), ...r]));
  summaries.push({ task: 'next-passage', train: pairTask.train.length, dev: pairTask.dev.length });
  return summaries;
}
