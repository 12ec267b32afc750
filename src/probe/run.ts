// distill probe as a library function: the student against its teacher on GLUE-style tasks and on token
// classification (CoNLL layout: src/probe/ner.ts): linear probes on frozen features, or the student fine-tuned with
// a head, scored with each task's metrics. The command adds the report file.

import { InputError } from '../core/errors.js';
import { assertModelDir } from '../core/model-dir.js';
import { ProgressReporter } from '../progress.js';
import type { BackendName } from '../../student/backend-names.js';
import { assertSharedVocabulary } from '../../corpus/tokenizer.js';
import { loadTask, type Task } from './tasks.js';
import type { FeatureEncoder, Pooling } from './features.js';
import { linearProbe } from './linear.js';
import { majorityBaseline, retention, type Metrics } from './metrics.js';
import { MADE_BY, type ProbeReport, type ProbeTaskResult } from './report.js';
import { isConllTask, loadConllTask, nerLinearProbe, nerMajority, type NerTask, type WordFeatures } from './ner.js';
import { isSquadTask, loadSquadTask, type QaTask } from './qa.js';
import { encodeQa, fitLinearHeads, goldRows, predictAnswers, qaMetrics, scoredPositions } from './qa-probe.js';
import type { EncodedQa } from './qa-probe.js';

export interface ProbeOptions {
  teacher: string;
  student: string;
  task: string[];
  mode: 'linear' | 'finetune';
  epochs: number;
  lr: number;
  pooling: Pooling;
  limit?: number;
  backend?: BackendName;
  threads: number;
  /** CoNLL tasks: the tag column (default the last). */
  tagColumn?: number;
}

type AnyTask = Task | NerTask | QaTask;
/** QA's frozen features: per window, the rows its heads score; the dev windows as encoded. */
interface QaFeatures {
  train: { rows: Float32Array[]; gold: [number, number] }[];
  dev: Float32Array[][];
  devQa: EncodedQa;
}
/**
 * One task's frozen features: per example (GLUE-style), per word of each sentence (token classification), or
 * per window (extractive QA).
 */
type TaskFeatures =
  { train: Float32Array[]; dev: Float32Array[] } | { train: WordFeatures; dev: WordFeatures } | QaFeatures;

/** Student against teacher on each task: linear probes on frozen features, or the student fine-tuned (mode). */
export async function probe(o: ProbeOptions): Promise<ProbeReport> {
  if (o.task.length === 0)
    throw new InputError('give at least one --task DIR', 'make the built-in tasks with: distill probe-data DIR');
  assertModelDir(o.teacher, '--teacher');
  assertModelDir(o.student, '--student');
  assertSharedVocabulary({ path: o.teacher, option: '--teacher' }, { path: o.student, option: '--student' });
  const tasks = o.task.map((dir): AnyTask => {
    if (isConllTask(dir)) return limitSpans(loadConllTask(dir, o.tagColumn), o.limit);
    if (isSquadTask(dir)) return limitSpans(loadSquadTask(dir), o.limit);
    return limitGlue(loadTask(dir), o.limit);
  });
  // tfjs and onnxruntime: loaded to run, not for --help.
  const [{ studentEncoder, teacherEncoder }, { finetuneStudent }, { finetuneTagger }, { finetuneReader }] =
    await Promise.all([
      import('../probe/features.js'),
      import('../probe/finetune.js'),
      import('../probe/finetune-tokens.js'),
      import('../probe/finetune-qa.js'),
    ]);
  const bar = new ProgressReporter('probe');
  const teacher = await teacherEncoder(o.teacher, o.threads);
  const tf = await featuresOf(teacher, tasks, o.pooling, bar);
  await teacher.close();
  const student = await studentEncoder(o.student, o.backend);
  const sf = await featuresOf(student, tasks, o.pooling, bar);
  await student.close();

  const fine = { finetuneStudent, finetuneTagger, finetuneReader };
  const results: ProbeTaskResult[] = [];
  for (const [i, t] of tasks.entries()) {
    const tm = linearMetrics(t, tf.perTask[i]!);
    const sm = o.mode === 'finetune' ? await finetuned(t, o, bar, fine) : linearMetrics(t, sf.perTask[i]!);
    results.push(resultOf(t, tm, sm));
    // QA fine-tuned: the linear heads on both models' frozen features too, a row of its own (not in the macro).
    if (o.mode === 'finetune' && 'kind' in t && t.kind === 'qa')
      results.push({
        ...resultOf(t, tm, linearMetrics(t, sf.perTask[i]!)),
        task: `${t.name} (linear heads)`,
        reference: true,
      });
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  // A task's score: its entity F1 (token classification), its answer F1 (QA), else the mean of its metrics (GLUE's).
  const taskScore = (m: Metrics): number =>
    m.entity_f1 ?? m.answer_f1 ?? mean(Object.values(m).filter((v): v is number => v !== undefined));
  const own = results.filter((r) => !r.reference);
  const macroT = mean(own.map((r) => taskScore(r.metrics.teacher)));
  const macroS = mean(own.map((r) => taskScore(r.metrics.student)));
  return {
    made_by: MADE_BY,
    tasks: results,
    teacher: { parameters: teacher.parameters, tokens_per_s: tf.tokensPerS },
    student: { parameters: student.parameters, tokens_per_s: sf.tokensPerS },
    macro: { teacher: macroT, student: macroS, retention_pct: (100 * macroS) / macroT },
    pooling: o.pooling,
    mode: o.mode,
  };
}

function linearMetrics(t: AnyTask, f: TaskFeatures): Metrics {
  if (!('kind' in t)) return linearProbe(t, f.train as Float32Array[], f.dev as Float32Array[]).metrics;
  if (t.kind === 'ner') return nerLinearProbe(t, f.train as WordFeatures, f.dev as WordFeatures);
  const q = f as QaFeatures;
  return qaMetrics(t, predictAnswers(q.devQa, t.dev.length, fitLinearHeads(q.train, q.dev)));
}

const taskName = (t: AnyTask): string => ('kind' in t ? t.name : t.spec.name);

/** A task's row: teacher, student, retention and the trivial baseline; the tagging scheme of a CoNLL task. */
function resultOf(t: AnyTask, tm: Metrics, sm: Metrics): ProbeTaskResult {
  // The trivial baselines: the majority class; the majority tag; the empty answer (exact match and F1 0).
  const majority = !('kind' in t)
    ? majorityBaseline(t)
    : t.kind === 'ner'
      ? nerMajority(t)
      : qaMetrics(
          t,
          t.dev.map(() => ''),
        );
  return {
    task: taskName(t),
    metrics: { teacher: tm, student: sm, retention_pct: retention(sm, tm), majority },
    train: t.train.length,
    dev: t.dev.length,
    ...('kind' in t && t.kind === 'ner' ? { scheme: t.scheme } : {}),
  };
}

interface Finetuners {
  finetuneStudent: typeof import('./finetune.js').finetuneStudent;
  finetuneTagger: typeof import('./finetune-tokens.js').finetuneTagger;
  finetuneReader: typeof import('./finetune-qa.js').finetuneReader;
}

/** The student fine-tuned on a task with the head its kind takes (a class, a tag per word, a span). */
async function finetuned(t: AnyTask, o: ProbeOptions, bar: ProgressReporter, f: Finetuners): Promise<Metrics> {
  const name = taskName(t);
  const options = {
    epochs: o.epochs,
    lr: o.lr,
    batchSize: 16,
    pooling: o.pooling,
    seed: 17,
    backend: o.backend,
    onProgress: (done: number, total: number) =>
      bar.update({ fraction: done / total, text: `fine-tuning the student on ${name}: step ${done}/${total}` }),
  };
  let m: Metrics;
  if (!('kind' in t)) m = (await f.finetuneStudent(o.student, t, options)).metrics;
  else if (t.kind === 'ner') m = (await f.finetuneTagger(o.student, t, options)).metrics;
  else m = (await f.finetuneReader(o.student, t, options)).metrics;
  bar.done();
  return m;
}

/** Each task's frozen features from one encoder, with progress. */
async function featuresOf(
  enc: FeatureEncoder,
  tasks: AnyTask[],
  pooling: Pooling,
  bar: ProgressReporter,
): Promise<{ perTask: TaskFeatures[]; tokensPerS: number }> {
  const { extractFeatures, extractWordFeatures } = await import('../probe/features.js');
  const perTask: TaskFeatures[] = [];
  let tokS = 0;
  for (const t of tasks) {
    const name = taskName(t);
    const progress =
      (split: string) =>
      (done: number, total: number): void =>
        bar.update({ fraction: done / total, text: `${enc.label} features, ${name} ${split}: ${done}/${total}` });
    if ('kind' in t && t.kind === 'qa') {
      const q = await qaFeatures(enc, t, progress);
      perTask.push(q);
      tokS = q.tokensPerS;
      continue;
    }
    const of = async (split: 'train' | 'dev'): Promise<{ features: TaskFeatures['train']; tokensPerS: number }> =>
      'kind' in t
        ? extractWordFeatures(
            enc,
            t[split].map((s) => s.words),
            progress(split),
          )
        : extractFeatures(
            enc,
            t[split].map((e) => e.texts),
            pooling,
            progress(split),
          );
    const train = await of('train');
    const dev = await of('dev');
    perTask.push({ train: train.features, dev: dev.features } as TaskFeatures);
    tokS = (train.tokensPerS + dev.tokensPerS) / 2;
  }
  bar.done();
  return { perTask, tokensPerS: tokS };
}

/** --limit: the first `limit` training examples and half as many dev ones; at least two classes left. */
function limitGlue(t: Task, limit: number | undefined): Task {
  if (!limit) return t;
  t.train = t.train.slice(0, limit);
  t.dev = t.dev.slice(0, Math.ceil(limit / 2));
  const present = new Set(t.train.map((e) => e.label));
  if (t.spec.kind === 'classification' && present.size < 2) {
    throw new InputError(
      `--limit ${limit}: the first ${t.train.length} training examples ` +
        `of ${t.spec.name} all have the label "${t.train[0]!.label}"`,
      'raise --limit so that the examples cover at least two classes',
    );
  }
  return t;
}

/** --limit for token classification (sentences) and QA (questions). */
function limitSpans<T extends NerTask | QaTask>(t: T, limit: number | undefined): T {
  return limit ? { ...t, train: t.train.slice(0, limit), dev: t.dev.slice(0, Math.ceil(limit / 2)) } : t;
}

/** A QA task's windows, encoded with this encoder's tokenizer and positions, and the rows its heads score. */
async function qaFeatures(
  enc: FeatureEncoder,
  t: QaTask,
  progress: (split: string) => (done: number, total: number) => void,
): Promise<QaFeatures & { tokensPerS: number }> {
  const { extractRows } = await import('../probe/features.js');
  const trainQa = encodeQa(enc.tokenizer, t.train, enc.maxPositions);
  const devQa = encodeQa(enc.tokenizer, t.dev, enc.maxPositions);
  const rows = (qa: EncodedQa, split: string): Promise<{ features: Float32Array[][]; tokensPerS: number }> =>
    extractRows(
      enc,
      qa.inputs.map((x) => x.ids),
      qa.inputs.map(scoredPositions),
      progress(split),
    );
  const train = await rows(trainQa, 'train');
  const dev = await rows(devQa, 'dev');
  return {
    train: train.features.map((r, k) => ({ rows: r, gold: goldRows(trainQa.inputs[k]!) })),
    dev: dev.features,
    devQa,
    tokensPerS: (train.tokensPerS + dev.tokensPerS) / 2,
  };
}
