// distill probe as a library function: the student against its teacher on GLUE-style tasks and on token
// classification (CoNLL layout: src/probe/ner.ts): linear probes on frozen features, or the student fine-tuned with
// a head (GLUE-style tasks), scored with each task's metrics. The command adds the report file.

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

type AnyTask = Task | NerTask;
/** One task's frozen features: per example (GLUE-style), or per word of each sentence (token classification). */
type TaskFeatures = { train: Float32Array[]; dev: Float32Array[] } | { train: WordFeatures; dev: WordFeatures };

/** Student against teacher on each task: linear probes on frozen features, or the student fine-tuned (mode). */
export async function probe(o: ProbeOptions): Promise<ProbeReport> {
  if (o.task.length === 0)
    throw new InputError('give at least one --task DIR', 'make the built-in tasks with: distill probe-data DIR');
  assertModelDir(o.teacher, '--teacher');
  assertModelDir(o.student, '--student');
  assertSharedVocabulary({ path: o.teacher, option: '--teacher' }, { path: o.student, option: '--student' });
  const tasks = o.task.map((dir) =>
    isConllTask(dir) ? limitNer(loadConllTask(dir, o.tagColumn), o.limit) : limitGlue(loadTask(dir), o.limit),
  );
  if (o.mode === 'finetune' && tasks.some((t) => 'kind' in t))
    throw new InputError(
      '--mode finetune: token classification tasks are probed linearly only, for now',
      'probe them with --mode linear (the default), or leave them out of a finetune run',
    );
  // tfjs and onnxruntime: loaded to run, not for --help.
  const [{ studentEncoder, teacherEncoder }, { finetuneStudent }] = await Promise.all([
    import('../probe/features.js'),
    import('../probe/finetune.js'),
  ]);
  const bar = new ProgressReporter('probe');
  const teacher = await teacherEncoder(o.teacher, o.threads);
  const tf = await featuresOf(teacher, tasks, o.pooling, bar);
  await teacher.close();
  const student = await studentEncoder(o.student, o.backend);
  const sf = await featuresOf(student, tasks, o.pooling, bar);
  await student.close();

  const results: ProbeTaskResult[] = [];
  for (const [i, t] of tasks.entries()) {
    const tm = linearMetrics(t, tf.perTask[i]!);
    let sm: Metrics;
    if (o.mode === 'finetune') {
      const glue = t as Task;
      sm = (
        await finetuneStudent(o.student, glue, {
          epochs: o.epochs,
          lr: o.lr,
          batchSize: 16,
          pooling: o.pooling,
          seed: 17,
          backend: o.backend,
          onProgress: (done, total) =>
            bar.update({
              fraction: done / total,
              text: `fine-tuning the student on ${glue.spec.name}: step ${done}/${total}`,
            }),
        })
      ).metrics;
      bar.done();
    } else sm = linearMetrics(t, sf.perTask[i]!);
    const majority = 'kind' in t ? nerMajority(t) : majorityBaseline(t);
    results.push({
      task: 'kind' in t ? t.name : t.spec.name,
      metrics: { teacher: tm, student: sm, retention_pct: retention(sm, tm), majority },
      train: t.train.length,
      dev: t.dev.length,
    });
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  // A task's score: its entity F1 (token classification), else the mean of its metrics (GLUE's convention).
  const taskScore = (m: Metrics): number =>
    m.entity_f1 ?? mean(Object.values(m).filter((v): v is number => v !== undefined));
  const macroT = mean(results.map((r) => taskScore(r.metrics.teacher)));
  const macroS = mean(results.map((r) => taskScore(r.metrics.student)));
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
  return 'kind' in t
    ? nerLinearProbe(t, f.train as WordFeatures, f.dev as WordFeatures)
    : linearProbe(t, f.train as Float32Array[], f.dev as Float32Array[]).metrics;
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
    const name = 'kind' in t ? t.name : t.spec.name;
    const progress =
      (split: string) =>
      (done: number, total: number): void =>
        bar.update({ fraction: done / total, text: `${enc.label} features, ${name} ${split}: ${done}/${total}` });
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

/** --limit for token classification: sentences. */
function limitNer(t: NerTask, limit: number | undefined): NerTask {
  return limit ? { ...t, train: t.train.slice(0, limit), dev: t.dev.slice(0, Math.ceil(limit / 2)) } : t;
}
