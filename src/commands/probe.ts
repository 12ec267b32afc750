// distill probe / distill probe-data: GLUE-style comparison of a student with its teacher.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { writeFileAtomic } from '../core/out.js';
import { choiceOption, floatOption, intOption } from '../options.js';
import { BACKEND_NAMES } from '../../student/backend-names.js';
import { assertPerClass, builtinProbeTasks, writeProbeData } from '../probe/tasks.js';
import { checkOutputFile, distinctPaths, writeOutputFolder } from '../core/folders.js';
import { MADE_BY, markdownTable } from '../probe/report.js';
import { probe, type ProbeOptions } from '../probe/run.js';
import { US_STATES, writeStatesTask } from '../probe/ner.js';
import { writeStatesQaTask } from '../probe/qa.js';

/** What the probe command takes besides the library's options: the report file. */
interface ProbeCommandOptions extends ProbeOptions {
  out?: string;
  /** Replace an earlier report at --out. */
  force: boolean;
}

/** Whether `path` is a report that distill probe wrote (only such a file is replaced, and only with --force). */
function isProbeReport(path: string): boolean {
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { made_by?: unknown }).made_by === MADE_BY;
  } catch {
    return false;
  }
}

export function registerProbe(program: Command): void {
  program
    .command('probe')
    .summary('compare student and teacher on GLUE-style, NER and QA tasks')
    .description(
      'Compare a student with its teacher on GLUE-style tasks (and token classification in CoNLL layout, extractive\n' +
        'QA in SQuAD v1.1 layout): a linear probe (logistic or ridge regression, L2 ' +
        'chosen\n' +
        ("on a fifth of train) on frozen last-layer features, scored on dev with GLUE's metrics; prints a markdown " +
          'table\n') +
        '(teacher, student, retention, parameters, inference tokens/s) and writes the JSON to --out.',
    )
    .requiredOption('--teacher <dir>', 'teacher folder (ONNX)')
    .requiredOption('--student <dir>', 'student folder (DistilBERT: init-student output or a checkpoint)')
    .option(
      '--task <dirs...>',
      'task folders: GLUE layout (SST-2, CoLA, MRPC, QQP, RTE, QNLI, MNLI, STS-B), CoNLL or SQuAD layout, or ' +
        "distill probe-data's",
      [],
    )
    .option(
      '--mode <mode>',
      'linear: probes on frozen features; finetune: ' +
        'the student fine-tuned with a head (the ONNX teacher is probed linearly)',
      choiceOption('--mode', ['linear', 'finetune'] as const),
      'linear',
    )
    .option('--epochs <n>', 'fine-tuning epochs (--mode finetune)', intOption('--epochs', 1), 3)
    .option(
      '--lr <lr>',
      'fine-tuning peak learning rate, decayed linearly (--mode finetune)',
      floatOption('--lr', 1e-8, 1),
      5e-5,
    )
    .option(
      '--pooling <how>',
      'cls: the [CLS] vector; mean: the mean over real tokens',
      choiceOption('--pooling', ['cls', 'mean'] as const),
      'mean',
    )
    .option('--out <file>', 'write the JSON report here (a new file, or one probe wrote before with --force)')
    .option('--force', 'replace the report at --out that an earlier probe wrote (any other file is refused)', false)
    .option(
      '--limit <n>',
      'use the first N training examples (sentences, for CoNLL tasks) and N/2 dev of each task',
      intOption('--limit', 2),
    )
    .option(
      '--tag-column <n>',
      'CoNLL tasks: the column of the tags (0 is the word; default the last, as CoNLL-2003 NER)',
      intOption('--tag-column', 1),
    )
    .option(
      '--backend <name>',
      `student backend: ${BACKEND_NAMES.join(', ')}`,
      choiceOption('--backend', BACKEND_NAMES),
    )
    .option('--threads <n>', 'onnxruntime CPU threads for the teacher (0 = all cores)', intOption('--threads', 0), 0)
    .action(async (o: ProbeCommandOptions) => {
      const { paths, repeated } = distinctPaths(o.task);
      if (repeated.length > 0)
        process.stderr.write(`note: --task ${repeated.join(', ')}: named more than once, read once\n`);
      o.task = paths;
      if (o.out) {
        checkOutputFile(
          { path: o.out, option: '--out' },
          o.force,
          [
            { path: o.teacher, option: '--teacher' },
            { path: o.student, option: '--student' },
            ...o.task.map((path) => ({ path, option: '--task' })),
          ],
          isProbeReport,
        );
      }
      const report = await probe(o);
      if (o.out) writeFileAtomic(o.out, JSON.stringify(report, null, 1) + '\n');
      process.stdout.write(markdownTable(report) + '\n');
    });

  program
    .command('probe-data')
    .summary('write the built-in probe tasks (GLUE and CoNLL layouts)')
    .description(
      'Write the built-in probe tasks: in GLUE layout, spam-ham (SpamAssassin e-mails, single sentence, label 1 =\n' +
        'spam) and next-passage (two passages of Moby Dick or the State of the Union addresses, label 1 when the\n' +
        'second follows the first); in CoNLL layout, us-states (the State of the Union sentences that name a US\n' +
        'state, each tagged B-LOC/I-LOC where it occurs: a smoke test of token classification, not CoNLL-2003);\n' +
        'in SQuAD v1.1 layout, us-states-qa (paragraphs naming one state, asked which: a smoke test of span\n' +
        'extraction over windows, not SQuAD).\n' +
        'Deterministic splits.',
    )
    .argument('<dir>', 'output folder (new or empty)')
    .option(
      '--per-class <n>',
      'training examples per class (dev gets half as many, none of them in train)',
      intOption('--per-class', 10),
      400,
    )
    .option(
      '--force',
      'replace tasks that probe-data wrote in DIR: ' +
        'they are moved to DIR.old-<time> (never deleted); any other folder is refused',
      false,
    )
    .action(async (dir: string, o: { perClass: number; force: boolean }) => {
      const tasks = builtinProbeTasks();
      assertPerClass(o.perClass, tasks);
      const summary = await writeOutputFolder({ path: dir, option: 'DIR' }, 'tasks', o.force, [], (d) => ({
        tasks: [
          ...writeProbeData(d, o.perClass, tasks),
          { task: 'us-states', ...writeStatesTask(join(d, 'us-states')) },
          { task: 'us-states-qa', ...writeStatesQaTask(join(d, 'us-states-qa'), US_STATES) },
        ],
      }));
      process.stdout.write(JSON.stringify(summary.tasks) + '\n');
    });
}
