// distill init-student: a DistilBERT student folder initialised from a BERT teacher (extract_distilbert.py).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { InputError, MismatchError } from '../core/errors.js';
import { claimOutputFolder } from '../core/folders.js';
import { assertModelDir, readEncoderConfig } from '../core/model-dir.js';
import { intListOption, intOption } from '../options.js';
import { WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { writeFileAtomic } from '../core/safetensors.js';

interface InitStudentOptions {
  teacher: string;
  out: string;
  layers?: number[];
  /** Random weights from this seed instead of the teacher's layers (the architecture stays the teacher's, --layers' depth). */
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
  const teacherConfig = readEncoderConfig(opts.teacher);
  const tokenizer = WordPieceTokenizer.fromDir(opts.teacher);
  if (tokenizer.vocabSize !== teacherConfig.vocabSize) {
    throw new MismatchError(`vocabulary sizes disagree: ${tokenizer.info.source} has ${tokenizer.vocabSize} tokens, ${join(opts.teacher, 'config.json')} says vocab_size ${teacherConfig.vocabSize}`);
  }
  // The student's modules bring tfjs: loaded once the input has been checked, not for --help or a bad path.
  const [{ defaultStudentLayers, initialStudentWeights, randomStudentWeights, studentConfigFromTeacher, studentWeightsFromTeacher }, { studentParamSpecs }, { copyTokenizerFiles, writeStudentFolder }, { studentToOnnx }] = await Promise.all([
    import('../../student/init.js'), import('../../student/model.js'), import('../../student/io.js'), import('../../student/export-onnx.js')]);
  const layers = opts.layers ?? defaultStudentLayers(teacherConfig.numLayers);
  if (opts.shape && opts.layers) throw new InputError('--shape and --layers both given', '--shape makes a student of another shape from random weights; --layers copies teacher layers');
  if (opts.shape && opts.shape.length !== 4) throw new InputError(`--shape ${opts.shape.join(',')}: expected four numbers, layers,hidden,heads,intermediate`, 'e.g. --shape 2,96,4,384');
  const random = opts.randomInit ?? (opts.shape ? 0 : undefined);
  let { config, weights } = opts.shape
    ? initialStudentWeights(opts.teacher, teacherConfig, { layers: opts.shape[0]!, hidden: opts.shape[1]!, heads: opts.shape[2]!, intermediate: opts.shape[3]! }, tokenizer.padId, random!, '--shape')
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
  const moved = claimOutputFolder(opts.out, opts.force, '--out');
  writeStudentFolder(config, weights, opts.out, random === undefined ? { distill_teacher_layers: layers.join(',') } : { distill_random_init_seed: String(random) });
  copyTokenizerFiles(opts.teacher, opts.out);
  if (opts.onnx) {
    // transformers.js loads a model folder's onnx/model.onnx.
    mkdirSync(join(opts.out, 'onnx'), { recursive: true });
    writeFileAtomic(join(opts.out, 'onnx', 'model.onnx'), studentToOnnx(config, weights));
  }
  const parameters = [...weights.values()].reduce((n, w) => n + w.length, 0);
  return {
    out: opts.out, teacher_layers: random === undefined ? layers : [], ...(random === undefined ? {} : { random_init_seed: random }),
    parameters, config: { ...config }, ...(moved ? { moved_aside: moved } : {}),
  };
}

export function registerInitStudent(program: Command): void {
  program
    .command('init-student')
    .summary('initialise a DistilBERT student from a BERT teacher')
    .description('Initialise a DistilBERT student from a BERT teacher, as DistilBERT was: embeddings, the MLM head and\n'
      + 'every other teacher layer (the evenly spaced rule: 12 → [0,2,4,7,9,11]). Writes a Hugging Face\n'
      + 'DistilBertForMaskedLM folder (config.json, model.safetensors, tokenizer files, and onnx/model.onnx for transformers.js).')
    .requiredOption('--teacher <dir>', 'teacher folder with config.json, model.safetensors and the tokenizer')
    .requiredOption('--out <dir>', 'where to write the student folder')
    .option('--layers <list>', 'teacher layers to copy, comma-separated (default: half the depth, evenly spaced)', intListOption('--layers'))
    .option('--random-init <seed>', 'random weights from this seed (as transformers initialises DistilBERT: normal(0, 0.02), zero biases) instead of the teacher\'s layers; the same architecture and depth', intOption('--random-init', 0, 2 ** 32 - 1))
    .option('--shape <L,H,A,F>', 'a student of another shape: layers, hidden size, attention heads, feed-forward size (e.g. 2,96,4,384), from random weights (--random-init\'s seed, default 0); a narrower student learns a projection to the teacher\'s width when trained', intListOption('--shape'))
    .option('--force', 'write into an --out that holds files: the old folder is moved to OUT.old-<time> first (never deleted)', false)
    .option('--no-onnx', 'do not write onnx/model.onnx (the ONNX graph transformers.js loads)')
    .action(async (opts: InitStudentOptions) => {
      const summary = await runInitStudent(opts);
      process.stdout.write(JSON.stringify(summary) + '\n');
    });
}
