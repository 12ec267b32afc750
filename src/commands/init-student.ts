// distill init-student: a DistilBERT student folder initialised from a BERT teacher (extract_distilbert.py).

import { join } from 'node:path';
import type { Command } from 'commander';
import { InputError, MismatchError } from '../core/errors.js';
import { writeOutputFolder } from '../core/folders.js';
import { assertModelDir, readEncoderConfig, type EncoderConfig } from '../core/model-dir.js';
import { intListOption, intOption } from '../options.js';
import { WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { makeDir, writeFileAtomic } from '../core/out.js';

interface InitStudentOptions {
  teacher: string;
  out: string;
  layers?: number[];
  /**
   * Random weights from this seed instead of the teacher's layers
   * (the architecture stays the teacher's, --layers' depth).
   */
  randomInit?: number;
  /** Another shape: [layers, hidden, heads, intermediate], from random weights (--random-init's seed, default 0). */
  shape?: number[];
  force: boolean;
  onnx: boolean;
}

export interface InitStudentSummary {
  out: string;
  teacher_layers: number[];
  random_init_seed?: number;
  parameters: number;
  config: Record<string, unknown>;
  /** Where the folder that was at --out went (--force). */
  moved_aside?: string;
}

export async function runInitStudent(opts: InitStudentOptions): Promise<InitStudentSummary> {
  assertModelDir(opts.teacher, '--teacher');
  if (opts.shape && opts.layers)
    throw new InputError(
      '--shape and --layers both given',
      '--shape makes a student of another shape from random weights; --layers copies teacher layers',
    );
  if (opts.shape) assertShape(opts.shape);
  const teacherConfig = readEncoderConfig(opts.teacher);
  const tokenizer = WordPieceTokenizer.fromDir(opts.teacher);
  if (tokenizer.vocabSize !== teacherConfig.vocabSize) {
    throw new MismatchError(
      `vocabulary sizes disagree: ${tokenizer.info.source} has ${tokenizer.vocabSize} tokens, ` +
        `${join(opts.teacher, 'config.json')} says vocab_size ${teacherConfig.vocabSize}`,
    );
  }
  return writeOutputFolder(
    { path: opts.out, option: '--out' },
    'student',
    opts.force,
    [{ path: opts.teacher, option: '--teacher' }],
    (dir) => writeStudent(opts, teacherConfig, tokenizer, dir),
  );
}

/** The student folder's files, written into `dir`. */
async function writeStudent(
  opts: InitStudentOptions,
  teacherConfig: EncoderConfig,
  tokenizer: WordPieceTokenizer,
  dir: string,
): Promise<InitStudentSummary> {
  // The student's modules bring tfjs: loaded once the input has been checked, not for --help or a bad path.
  const [
    {
      defaultStudentLayers,
      initialStudentWeights,
      randomStudentWeights,
      studentConfigFromTeacher,
      studentWeightsFromTeacher,
    },
    { studentParamSpecs },
    { copyTokenizerFiles, writeStudentFolder },
    { studentToOnnx },
  ] = await Promise.all([
    import('../../student/init.js'),
    import('../../student/model.js'),
    import('../../student/io.js'),
    import('../../student/export-onnx.js'),
  ]);
  const layers = opts.layers ?? defaultStudentLayers(teacherConfig.numLayers);
  const random = opts.randomInit ?? (opts.shape ? 0 : undefined);
  let { config, weights } = opts.shape
    ? initialStudentWeights(
        opts.teacher,
        teacherConfig,
        { layers: opts.shape[0]!, hidden: opts.shape[1]!, heads: opts.shape[2]!, intermediate: opts.shape[3]! },
        tokenizer.padId,
        random!,
        '--shape',
      )
    : random === undefined
      ? studentWeightsFromTeacher(opts.teacher, teacherConfig, layers, tokenizer.padId)
      : randomStudentWeights(studentConfigFromTeacher(teacherConfig, layers, tokenizer.padId), random);
  // A narrower student's projection to the teacher's width is made when training starts (from the run's seed).
  if (config.projection_dim !== undefined) {
    const specs = studentParamSpecs(config);
    config = { ...config };
    delete config.projection_dim;
    weights = new Map([...weights].filter(([name]) => !specs.find((s) => s.name === name)?.aux));
  }
  writeStudentFolder(
    config,
    weights,
    dir,
    random === undefined ? { distill_teacher_layers: layers.join(',') } : { distill_random_init_seed: String(random) },
  );
  copyTokenizerFiles(opts.teacher, dir);
  if (opts.onnx) {
    // transformers.js loads a model folder's onnx/model.onnx.
    makeDir(join(dir, 'onnx'));
    writeFileAtomic(join(dir, 'onnx', 'model.onnx'), studentToOnnx(config, weights));
  }
  const parameters = [...weights.values()].reduce((n, w) => n + w.length, 0);
  return {
    out: opts.out,
    teacher_layers: random === undefined ? layers : [],
    ...(random === undefined ? {} : { random_init_seed: random }),
    parameters,
    config: { ...config },
  };
}

/** --shape L,H,A,F: four whole numbers, each at least 1, the hidden size a multiple of the heads. */
function assertShape(shape: number[]): void {
  const text = shape.join(',');
  if (shape.length !== 4)
    throw new InputError(
      `--shape ${text}: expected four numbers, layers,hidden,heads,intermediate`,
      'e.g. --shape 2,96,4,384',
    );
  const names = ['layers', 'hidden size', 'attention heads', 'feed-forward size'];
  shape.forEach((n, i) => {
    if (n < 1)
      throw new InputError(`--shape ${text}: ${names[i]} ${n}; a student needs at least 1`, 'e.g. --shape 2,96,4,384');
  });
  if (shape[1]! % shape[2]! !== 0) {
    throw new InputError(
      `--shape ${text}: the hidden size ${shape[1]} is not a multiple of the ${shape[2]} attention heads`,
      'each head takes hidden/heads dimensions, e.g. --shape 2,96,4,384',
    );
  }
}

export function registerInitStudent(program: Command): void {
  program
    .command('init-student')
    .summary('initialise a DistilBERT student from a BERT teacher')
    .description(
      'Initialise a DistilBERT student from a BERT teacher, as DistilBERT was: embeddings, the MLM head and\n' +
        'every other teacher layer (the evenly spaced rule: 12 → [0,2,4,7,9,11]). Writes a Hugging Face\n' +
        ('DistilBertForMaskedLM folder (config.json, model.safetensors, ' +
          'tokenizer files, and onnx/model.onnx for transformers.js).'),
    )
    .requiredOption('--teacher <dir>', 'teacher folder with config.json, model.safetensors and the tokenizer')
    .requiredOption('--out <dir>', 'where to write the student folder')
    .option(
      '--layers <list>',
      'teacher layers to copy, comma-separated (default: half the depth, evenly spaced)',
      intListOption('--layers'),
    )
    .option(
      '--random-init <seed>',
      'random weights from this seed (as transformers initialises DistilBERT: normal(0, 0.02), zero biases) instead ' +
        "of the teacher's layers; the same architecture and depth",
      intOption('--random-init', 0, 2 ** 32 - 1),
    )
    .option(
      '--shape <L,H,A,F>',
      'a student of another shape: layers, hidden size, attention heads, feed-forward size (e.g. 2,96,4,384), from ' +
        ("random weights (--random-init's seed, default 0); " +
          "a narrower student learns a projection to the teacher's width when trained"),
      intListOption('--shape'),
    )
    .option(
      '--force',
      'write into an --out that holds files: the old folder is moved to OUT.old-<time> first (never deleted)',
      false,
    )
    .option('--no-onnx', 'do not write onnx/model.onnx (the ONNX graph transformers.js loads)')
    .action(async (opts: InitStudentOptions) => {
      const summary = await runInitStudent(opts);
      process.stdout.write(JSON.stringify(summary) + '\n');
    });
}
