// distill probe as a library function: the student against its teacher on GLUE-style tasks (linear probes on frozen
// features, or the student fine-tuned with a head), scored with GLUE's metrics. The command adds the report file.

import { InputError } from '../core/errors.js';
import { assertModelDir } from '../core/model-dir.js';
import { ProgressReporter } from '../progress.js';
import type { BackendName } from '../../student/backend-names.js';
import { assertSharedVocabulary } from '../../corpus/tokenizer.js';
import { loadTask } from './tasks.js';
import type { FeatureEncoder, Pooling } from './features.js';
import { linearProbe } from './linear.js';
import { majorityBaseline, retention, type Metrics } from './metrics.js';
import { MADE_BY, type ProbeReport, type ProbeTaskResult } from './report.js';

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
}

/** Student against teacher on each task: linear probes on frozen features, or the student fine-tuned (mode). */
export async function probe(o: ProbeOptions): Promise<ProbeReport> {
  if (o.task.length === 0)
    throw new InputError('give at least one --task DIR', 'make the built-in tasks with: distill probe-data DIR');
  assertModelDir(o.teacher, '--teacher');
  assertModelDir(o.student, '--student');
  assertSharedVocabulary({ path: o.teacher, option: '--teacher' }, { path: o.student, option: '--student' });
  const tasks = o.task.map((dir) => {
    const t = loadTask(dir);
    if (o.limit) {
      t.train = t.train.slice(0, o.limit);
      t.dev = t.dev.slice(0, Math.ceil(o.limit / 2));
      const present = new Set(t.train.map((e) => e.label));
      if (t.spec.kind === 'classification' && present.size < 2) {
        throw new InputError(
          `--limit ${o.limit}: the first ${t.train.length} training examples ` +
            `of ${t.spec.name} all have the label "${t.train[0]!.label}"`,
          'raise --limit so that the examples cover at least two classes',
        );
      }
    }
    return t;
  });
  // tfjs and onnxruntime: loaded to run, not for --help.
  const [{ extractFeatures, studentEncoder, teacherEncoder }, { finetuneStudent }] = await Promise.all([
    import('../probe/features.js'),
    import('../probe/finetune.js'),
  ]);
  const bar = new ProgressReporter('probe');
  const featuresOf = async (
    enc: FeatureEncoder,
  ): Promise<{ perTask: { train: Float32Array[]; dev: Float32Array[] }[]; tokensPerS: number }> => {
    const perTask = [];
    let tokS = 0;
    for (const t of tasks) {
      const progress =
        (split: string) =>
        (done: number, total: number): void =>
          bar.update({
            fraction: done / total,
            text: `${enc.label} features, ${t.spec.name} ${split}: ${done}/${total}`,
          });
      const train = await extractFeatures(
        enc,
        t.train.map((e) => e.texts),
        o.pooling,
        progress('train'),
      );
      const dev = await extractFeatures(
        enc,
        t.dev.map((e) => e.texts),
        o.pooling,
        progress('dev'),
      );
      perTask.push({ train: train.features, dev: dev.features });
      tokS = (train.tokensPerS + dev.tokensPerS) / 2;
    }
    bar.done();
    return { perTask, tokensPerS: tokS };
  };
  const teacher = await teacherEncoder(o.teacher, o.threads);
  const tf = await featuresOf(teacher);
  await teacher.close();
  const student = await studentEncoder(o.student, o.backend);
  const sf = await featuresOf(student);
  await student.close();

  const results: ProbeTaskResult[] = [];
  for (const [i, t] of tasks.entries()) {
    const tm = linearProbe(t, tf.perTask[i]!.train, tf.perTask[i]!.dev).metrics;
    let sm: Metrics;
    if (o.mode === 'finetune') {
      sm = (
        await finetuneStudent(o.student, t, {
          epochs: o.epochs,
          lr: o.lr,
          batchSize: 16,
          pooling: o.pooling,
          seed: 17,
          backend: o.backend,
          onProgress: (done, total) =>
            bar.update({
              fraction: done / total,
              text: `fine-tuning the student on ${t.spec.name}: step ${done}/${total}`,
            }),
        })
      ).metrics;
      bar.done();
    } else {
      sm = linearProbe(t, sf.perTask[i]!.train, sf.perTask[i]!.dev).metrics;
    }
    results.push({
      task: t.spec.name,
      metrics: { teacher: tm, student: sm, retention_pct: retention(sm, tm), majority: majorityBaseline(t) },
      train: t.train.length,
      dev: t.dev.length,
    });
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const taskScore = (m: Record<string, number | undefined>): number =>
    mean(Object.values(m).filter((v): v is number => v !== undefined));
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
