// GLUE-style tasks: files in GLUE's own layout (train.tsv, dev.tsv or dev_matched.tsv, tab-separated, read
// as GLUE's loaders read them: no quote processing), and the built-in probe tasks made from public labelled
// data in npm (distill probe-data).

import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { FileFormatError, InputError } from '../core/errors.js';
import { makeDir, writeFileAtomic } from '../core/out.js';
import { publicDomainParagraphs, spamAssassinMails } from '../../corpus/public-domain.js';
import { Rng } from '../../corpus/rng.js';

export type TaskKind = 'classification' | 'regression';
export type MetricName =
  | 'accuracy'
  | 'f1'
  | 'matthews'
  | 'pearson'
  | 'spearman'
  // token classification (src/probe/ner.ts), as seqeval
  | 'entity_f1'
  | 'entity_precision'
  | 'entity_recall'
  | 'token_accuracy'
  // extractive QA (src/probe/qa-probe.ts), as SQuAD v1.1's evaluation
  | 'exact_match'
  | 'answer_f1';

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

export interface Example {
  texts: string[];
  label: string;
}

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
  'sst-2': {
    kind: 'classification',
    text: ['sentence'],
    label: 'label',
    header: true,
    metrics: ['accuracy'],
    devFile: 'dev.tsv',
    labels: BINARY,
  },
  cola: {
    kind: 'classification',
    text: [3],
    label: 1,
    header: false,
    metrics: ['matthews'],
    devFile: 'dev.tsv',
    labels: BINARY,
  },
  mrpc: {
    kind: 'classification',
    text: ['#1 String', '#2 String'],
    label: 'Quality',
    header: true,
    metrics: ['accuracy', 'f1'],
    devFile: 'dev.tsv',
    labels: BINARY,
  },
  qqp: {
    kind: 'classification',
    text: ['question1', 'question2'],
    label: 'is_duplicate',
    header: true,
    metrics: ['accuracy', 'f1'],
    devFile: 'dev.tsv',
    labels: BINARY,
  },
  rte: {
    kind: 'classification',
    text: ['sentence1', 'sentence2'],
    label: 'label',
    header: true,
    metrics: ['accuracy'],
    devFile: 'dev.tsv',
    labels: ['entailment', 'not_entailment'],
  },
  qnli: {
    kind: 'classification',
    text: ['question', 'sentence'],
    label: 'label',
    header: true,
    metrics: ['accuracy'],
    devFile: 'dev.tsv',
    labels: ['entailment', 'not_entailment'],
  },
  mnli: {
    kind: 'classification',
    text: ['sentence1', 'sentence2'],
    label: 'gold_label',
    header: true,
    metrics: ['accuracy'],
    devFile: 'dev_matched.tsv',
    labels: ['contradiction', 'entailment', 'neutral'],
  },
  'sts-b': {
    kind: 'regression',
    text: ['sentence1', 'sentence2'],
    label: 'score',
    header: true,
    metrics: ['pearson', 'spearman'],
    devFile: 'dev.tsv',
  },
};

/**
 * The task of a folder: by GLUE's folder names (SST-2, CoLA, MRPC,
 * QQP, RTE, QNLI, MNLI, STS-B), else by the header of train.tsv.
 */
export function taskSpecFor(dir: string): TaskSpec {
  const name = basename(dir.replace(/\/+$/, ''));
  const key = name
    .toLowerCase()
    .replace(/_/g, '-')
    .replace(/^sst2$/, 'sst-2')
    .replace(/^stsb$/, 'sts-b');
  const known = KNOWN[key];
  if (known) return { name, ...known };
  const train = join(dir, 'train.tsv');
  if (!existsSync(train))
    throw new FileFormatError(train, 'missing', "a task folder holds train.tsv and dev.tsv in GLUE's layout");
  const header = readFileSync(train, 'utf8').split('\n', 1)[0]!.split('\t');
  if (header.includes('sentence1') && header.includes('sentence2') && header.includes('label')) {
    return {
      name,
      kind: 'classification',
      text: ['sentence1', 'sentence2'],
      label: 'label',
      header: true,
      metrics: ['accuracy'],
      devFile: 'dev.tsv',
    };
  }
  if (header.includes('sentence') && header.includes('label')) {
    return {
      name,
      kind: 'classification',
      text: ['sentence'],
      label: 'label',
      header: true,
      metrics: ['accuracy'],
      devFile: 'dev.tsv',
    };
  }
  throw new FileFormatError(
    train,
    `header "${header.join('\\t')}" is not one of GLUE's tasks`,
    'name the folder after the GLUE task (SST-2, CoLA, MRPC, QQP, RTE, QNLI, MNLI, STS-B), or use columns ' +
      'sentence[,label] or sentence1, sentence2, label',
  );
}

/** Rows of a GLUE TSV: split on tabs, quotes kept as they are (GLUE's loaders use no quoting). */
export function readTsv(path: string, spec: TaskSpec): Example[] {
  if (!existsSync(path))
    throw new FileFormatError(path, 'missing', `a ${spec.name} folder holds train.tsv and ${spec.devFile}`);
  const lines = readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .filter((l) => l.length > 0);
  let columns: string[] = [];
  if (spec.header) {
    const header = lines.shift();
    if (header === undefined)
      throw new FileFormatError(
        path,
        'empty: no header line and no examples',
        `a ${spec.name} file starts with the header line of GLUE's ${spec.name} files, then one example per line`,
      );
    columns = header.split('\t');
  }
  if (lines.length === 0)
    throw new FileFormatError(path, 'no examples', 'one example per line, tab-separated, after the header');
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
    if (cells.length <= need)
      throw new FileFormatError(
        `${path}:${i + 1 + (spec.header ? 1 : 0)}`,
        `${cells.length} columns, expected at least ${need + 1}`,
      );
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
    for (const [path, examples] of [
      [trainPath, train],
      [devPath, dev],
    ] as const) {
      const bad = examples.findIndex((e) => !Number.isFinite(Number(e.label)) || e.label === '');
      if (bad >= 0)
        throw new FileFormatError(
          at(path, bad),
          `label "${examples[bad]!.label}" is not a number (${spec.name} is a regression task)`,
        );
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
      throw new FileFormatError(
        at(trainPath, odd),
        `label "${train[odd]!.label}" is not a whole number like the task's other labels (${numeric.join(', ')})`,
        "fix the label; a classification task's labels are all whole numbers or all words",
      );
    }
  }
  for (const [path, examples] of [
    [trainPath, train],
    [devPath, dev],
  ] as const) {
    const bad = examples.findIndex((e) => !classes.includes(e.label));
    if (bad >= 0) {
      throw new FileFormatError(
        at(path, bad),
        `label "${examples[bad]!.label}" is not one of the task's labels (${classes.join(', ')})`,
        spec.labels
          ? `${spec.name}'s labels are GLUE's: ${classes.join(', ')}`
          : 'every dev label must occur in train.tsv',
      );
    }
  }
  const present = new Set(train.map((e) => e.label));
  if (present.size < 2) {
    throw new FileFormatError(
      trainPath,
      `every example has the label "${train[0]!.label}": a classifier needs at least two classes to learn`,
      'give train.tsv examples of each class',
    );
  }
  return { spec, dir, train, dev, classes };
}

// --- Built-in probe tasks from public labelled data in npm. ---

function clean(s: string): string {
  return s
    .replace(/[\t\r\n]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
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

export interface ProbeDataSummary {
  task: string;
  train: number;
  dev: number;
}

/** Half as many dev examples per class as training examples (rounded up). */
function devPerClass(perClass: number): number {
  return Math.ceil(perClass / 2);
}

function shuffled<T>(rng: Rng, items: T[]): T[] {
  rng.shuffle(items);
  return items;
}

/** A task's rows of each class (label 0, then 1), for train and for dev. */
interface ClassPools {
  train: string[][][];
  dev: string[][][];
}

/**
 * The spam-ham task's examples per class: distinct e-mails (as emailText gives them), shuffled from the seed. Train
 * and dev draw from one pool, dev after train, so that no text is in both.
 */
function spamHamPools(rng: Rng): ClassPools {
  const mails = spamAssassinMails();
  const distinct = (group: string): string[] =>
    [...new Set(mails.filter((m) => m.group.includes(group)).map((m) => emailText(m.text)))].filter(
      (t) => t.length > 0,
    );
  const classes = [distinct('ham'), distinct('spam')].map((texts, label) =>
    shuffled(rng, texts).map((t) => [t, String(label)]),
  );
  return { train: classes, dev: classes };
}

/**
 * The next-passage task's examples per class and split. Paragraphs of Moby Dick and the State of the Union addresses
 * are cut into blocks of 8 in a row; a third of the blocks, drawn from the seed, are dev's, the rest train's, and a
 * pair takes both passages from one split, so that no passage is in both. Label 1: a passage and the one after it;
 * label 0: two passages of the split at least three apart. No pair repeats.
 */
function nextPassagePools(rng: Rng): ClassPools {
  const texts = [...publicDomainParagraphs('moby-dick'), ...publicDomainParagraphs('sotu')]
    .filter((p) => p.length > 80)
    .map((p) => clean(p).slice(0, 300));
  const blocks = shuffled(
    rng,
    Array.from({ length: Math.ceil(texts.length / 8) }, (_, i) => i),
  );
  const devBlocks = new Set(blocks.slice(0, Math.round(blocks.length / 3)));
  const part = (isDev: boolean): string[][][] => {
    const mine = texts.map((_, i) => i).filter((i) => devBlocks.has(i >> 3) === isDev);
    const inPart = new Set(mine);
    const positives = shuffled(
      rng,
      mine.filter((i) => inPart.has(i + 1)),
    ).map((i) => [texts[i]!, texts[i + 1]!, '1']);
    const negatives: string[][] = [];
    const seen = new Set<string>();
    for (let tries = 0; negatives.length < positives.length && tries < 20 * positives.length; tries++) {
      const a = mine[rng.int(mine.length)]!;
      const b = mine[rng.int(mine.length)]!;
      if (Math.abs(a - b) <= 2 || seen.has(`${a}:${b}`)) continue;
      seen.add(`${a}:${b}`);
      negatives.push([texts[a]!, texts[b]!, '0']);
    }
    return [negatives, positives];
  };
  return { train: part(false), dev: part(true) };
}

/** The built-in tasks' examples, drawn from the seed, and the largest --per-class they hold. */
export interface BuiltinTasks {
  spamHam: ClassPools;
  nextPassage: ClassPools;
  maxPerClass: number;
  seed: number;
}

export function builtinProbeTasks(seed = 2026): BuiltinTasks {
  const rng = new Rng(seed);
  const spamHam = spamHamPools(rng);
  const nextPassage = nextPassagePools(rng);
  const fits = (n: number): boolean =>
    spamHam.train.every((c) => c.length >= n + devPerClass(n)) &&
    nextPassage.train.every((c) => c.length >= n) &&
    nextPassage.dev.every((c) => c.length >= devPerClass(n));
  let maxPerClass = 0;
  while (fits(maxPerClass + 1)) maxPerClass++;
  return { spamHam, nextPassage, maxPerClass, seed };
}

/** Per class: perClass rows to train and devPerClass to dev (after train's when both draw from one pool); shuffled. */
function splitTask(rng: Rng, pools: ClassPools, perClass: number): { train: string[][]; dev: string[][] } {
  const devStart = pools.dev === pools.train ? perClass : 0;
  return {
    train: shuffled(
      rng,
      pools.train.flatMap((c) => c.slice(0, perClass)),
    ),
    dev: shuffled(
      rng,
      pools.dev.flatMap((c) => c.slice(devStart, devStart + devPerClass(perClass))),
    ),
  };
}

/** --per-class beyond what the built-in tasks hold is refused, naming the most they hold. */
export function assertPerClass(perClass: number, tasks: BuiltinTasks): void {
  if (perClass > tasks.maxPerClass) {
    throw new InputError(
      `--per-class ${perClass}: the built-in tasks hold at most ${tasks.maxPerClass} training examples per class ` +
        '(and half as many for dev, none of them in train)',
      `give --per-class ${tasks.maxPerClass} or less`,
    );
  }
}

/**
 * Write the built-in tasks in GLUE's layout under `dir` (a new folder: see writeOutputFolder):
 *  spam-ham/  single sentence (SST-2's columns): e-mails of the SpamAssassin corpus, label 1 = spam;
 *  next-passage/  sentence pairs (RTE's columns): two passages of the same book or address, label 1 when the
 *  second follows the first, 0 when it is a passage from elsewhere.
 * Deterministic (seeded); `perClass` examples of each class in
 * train and half that (rounded up) in dev, no text of dev in train.
 */
export function writeProbeData(dir: string, perClass = 400, tasks = builtinProbeTasks()): ProbeDataSummary[] {
  assertPerClass(perClass, tasks);
  const rng = Rng.derive(tasks.seed, 1);
  const spamTask = splitTask(rng, tasks.spamHam, perClass);
  makeDir(join(dir, 'spam-ham'));
  writeTsv(join(dir, 'spam-ham', 'train.tsv'), ['sentence', 'label'], spamTask.train);
  writeTsv(join(dir, 'spam-ham', 'dev.tsv'), ['sentence', 'label'], spamTask.dev);
  const pairTask = splitTask(rng, tasks.nextPassage, perClass);
  makeDir(join(dir, 'next-passage'));
  const indexed = (rows: string[][]): string[][] => rows.map((r, i) => [String(i), ...r]);
  writeTsv(
    join(dir, 'next-passage', 'train.tsv'),
    ['index', 'sentence1', 'sentence2', 'label'],
    indexed(pairTask.train),
  );
  writeTsv(join(dir, 'next-passage', 'dev.tsv'), ['index', 'sentence1', 'sentence2', 'label'], indexed(pairTask.dev));
  return [
    { task: 'spam-ham', train: spamTask.train.length, dev: spamTask.dev.length },
    { task: 'next-passage', train: pairTask.train.length, dev: pairTask.dev.length },
  ];
}
