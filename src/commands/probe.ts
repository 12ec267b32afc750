// distill probe / distill probe-data: GLUE-style comparison of a student with its teacher.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { InputError } from '../core/errors.js';
import { writeFileAtomic } from '../core/out.js';
import { choiceOption, floatOption, intOption } from '../options.js';
import { ProgressReporter } from '../progress.js';
import { BACKEND_NAMES, type BackendName } from '../../student/kernels/names.js';
import { assertPerClass, builtinProbeTasks, loadTask, writeProbeData } from '../probe/tasks.js';
import { checkOutputFile, distinctPaths, writeOutputFolder } from '../core/folders.js';
import { assertModelDir } from '../core/model-dir.js';
import { assertSharedVocabulary } from '../../corpus/tokenizer.js';
import type { FeatureEncoder, Pooling } from '../probe/features.js';
import { linearProbe } from '../probe/linear.js';
import { majorityBaseline, retention, type Metrics } from '../probe/metrics.js';
import { MADE_BY, markdownTable, type ProbeReport, type ProbeTaskResult } from '../probe/report.js';

export interface ProbeOptions {
  teacher: string;
  student: string;
  task: string[];
  mode: 'linear' | 'finetune';
  epochs: number;
  lr: number;
  pooling: Pooling;
  out?: string;
  limit?: number;
  backend?: BackendName;
  threads: number;
  /** Replace an earlier report at --out. */
  force?: boolean;
}

/** Whether `path` is a report that distill probe wrote (only such a file is replaced, and only with --force). */
function isProbeReport(path: string): boolean {
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { made_by?: unknown }).made_by === MADE_BY;
  } catch {
    return false;
  }
}

export async function runProbe(o: ProbeOptions): Promise<ProbeReport> {
  if (o.task.length === 0) throw new InputError('give at least one --task DIR', 'make the built-in tasks with: distill probe-data DIR');
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
        throw new InputError(`--limit ${o.limit}: the first ${t.train.length} training examples of ${t.spec.name} all have the label "${t.train[0]!.label}"`, 'raise --limit so that the examples cover at least two classes');
      }
    }
    return t;
  });
  // tfjs and onnxruntime: loaded to run, not for --help.
  const [{ extractFeatures, studentEncoder, teacherEncoder }, { finetuneStudent }] = await Promise.all([import('../probe/features.js'), import('../probe/finetune.js')]);
  const bar = new ProgressReporter('probe');
  const featuresOf = async (enc: FeatureEncoder): Promise<{ perTask: { train: Float32Array[]; dev: Float32Array[] }[]; tokensPerS: number }> => {
    const perTask = [];
    let tokS = 0;
    for (const t of tasks) {
      const progress = (split: string) => (done: number, total: number): void => bar.update({ fraction: done / total, text: `${enc.label} features, ${t.spec.name} ${split}: ${done}/${total}` });
      const train = await extractFeatures(enc, t.train.map((e) => e.texts), o.pooling, progress('train'));
      const dev = await extractFeatures(enc, t.dev.map((e) => e.texts), o.pooling, progress('dev'));
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
      sm = (await finetuneStudent(o.student, t, {
        epochs: o.epochs, lr: o.lr, batchSize: 16, pooling: o.pooling, seed: 17, backend: o.backend,
        onProgress: (done, total) => bar.update({ fraction: done / total, text: `fine-tuning the student on ${t.spec.name}: step ${done}/${total}` }),
      })).metrics;
      bar.done();
    } else {
      sm = linearProbe(t, sf.perTask[i]!.train, sf.perTask[i]!.dev).metrics;
    }
    results.push({ task: t.spec.name, metrics: { teacher: tm, student: sm, retention_pct: retention(sm, tm), majority: majorityBaseline(t) }, train: t.train.length, dev: t.dev.length });
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const taskScore = (m: Record<string, number | undefined>): number => mean(Object.values(m).filter((v): v is number => v !== undefined));
  const macroT = mean(results.map((r) => taskScore(r.metrics.teacher)));
  const macroS = mean(results.map((r) => taskScore(r.metrics.student)));
  return {
    made_by: MADE_BY,
    tasks: results,
    teacher: { parameters: teacher.parameters, tokens_per_s: tf.tokensPerS },
    student: { parameters: student.parameters, tokens_per_s: sf.tokensPerS },
    macro: { teacher: macroT, student: macroS, retention_pct: (100 * macroS) / macroT },
    pooling: o.pooling, mode: o.mode,
  };
}

export function registerProbe(program: Command): void {
  program
    .command('probe')
    .summary('compare student and teacher on GLUE-style tasks')
    .description('Compare a student with its teacher on GLUE-style tasks: a linear probe (logistic or ridge regression, L2 chosen\n'
      + 'on a fifth of train) on frozen last-layer features, scored on dev with GLUE\'s metrics; prints a markdown table\n'
      + '(teacher, student, retention, parameters, inference tokens/s) and writes the JSON to --out.')
    .requiredOption('--teacher <dir>', 'teacher folder (ONNX)')
    .requiredOption('--student <dir>', 'student folder (DistilBERT: init-student output or a checkpoint)')
    .option('--task <dirs...>', 'task folders in GLUE layout (SST-2, CoLA, MRPC, QQP, RTE, QNLI, MNLI, STS-B, or distill probe-data\'s)', [])
    .option('--mode <mode>', 'linear: probes on frozen features; finetune: the student fine-tuned with a head (the ONNX teacher is probed linearly)',
      choiceOption('--mode', ['linear', 'finetune'] as const), 'linear')
    .option('--epochs <n>', 'fine-tuning epochs (--mode finetune)', intOption('--epochs', 1), 3)
    .option('--lr <lr>', 'fine-tuning peak learning rate, decayed linearly (--mode finetune)', floatOption('--lr', 1e-8, 1), 5e-5)
    .option('--pooling <how>', 'cls: the [CLS] vector; mean: the mean over real tokens', choiceOption('--pooling', ['cls', 'mean'] as const), 'mean')
    .option('--out <file>', 'write the JSON report here (a new file, or one probe wrote before with --force)')
    .option('--force', 'replace the report at --out that an earlier probe wrote (any other file is refused)', false)
    .option('--limit <n>', 'use the first N training examples (and N/2 dev) of each task', intOption('--limit', 2))
    .option('--backend <name>', `student backend: ${BACKEND_NAMES.join(', ')}`, choiceOption('--backend', BACKEND_NAMES))
    .option('--threads <n>', 'onnxruntime CPU threads for the teacher (0 = all cores)', intOption('--threads', 0), 0)
    .action(async (o: ProbeOptions) => {
      const { paths, repeated } = distinctPaths(o.task);
      if (repeated.length > 0) process.stderr.write(`note: --task ${repeated.join(', ')}: named more than once, read once\n`);
      o.task = paths;
      if (o.out) {
        checkOutputFile({ path: o.out, option: '--out' }, o.force ?? false, [{ path: o.teacher, option: '--teacher' }, { path: o.student, option: '--student' },
          ...o.task.map((path) => ({ path, option: '--task' }))], isProbeReport);
      }
      const report = await runProbe(o);
      if (o.out) writeFileAtomic(o.out, JSON.stringify(report, null, 1) + '\n');
      process.stdout.write(markdownTable(report) + '\n');
    });

  program
    .command('probe-data')
    .summary('write the built-in probe tasks in GLUE layout')
    .description('Write the built-in probe tasks in GLUE layout: spam-ham (SpamAssassin e-mails, single sentence, label 1 = spam)\n'
      + 'and next-passage (two passages of Moby Dick or the State of the Union addresses, label 1 when the second follows\n'
      + 'the first). Deterministic splits.')
    .argument('<dir>', 'output folder (new or empty)')
    .option('--per-class <n>', 'training examples per class (dev gets half as many, none of them in train)', intOption('--per-class', 10), 400)
    .option('--force', 'replace tasks that probe-data wrote in DIR: they are moved to DIR.old-<time> (never deleted); any other folder is refused', false)
    .action(async (dir: string, o: { perClass: number; force: boolean }) => {
      const tasks = builtinProbeTasks();
      assertPerClass(o.perClass, tasks);
      const summary = await writeOutputFolder({ path: dir, option: 'DIR' }, 'tasks', o.force, [], (d) => ({ tasks: writeProbeData(d, o.perClass, tasks) }));
      process.stdout.write(JSON.stringify(summary.tasks) + '\n');
    });
}
