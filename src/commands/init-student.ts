// distill init-student: a DistilBERT student folder initialised from a BERT teacher (extract_distilbert.py).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { MismatchError } from '../core/errors.js';
import { claimOutputFolder } from '../core/folders.js';
import { assertModelDir, readEncoderConfig } from '../core/model-dir.js';
import { intListOption, intOption } from '../options.js';
import { WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { defaultStudentLayers, randomStudentWeights, studentConfigFromTeacher, studentWeightsFromTeacher } from '../../student/init.js';
import { copyTokenizerFiles, writeStudentFolder } from '../../student/io.js';
import { studentToOnnx } from '../../student/export-onnx.js';
import { writeFileAtomic } from '../core/safetensors.js';

interface InitStudentOptions {
  teacher: string;
  out: string;
  layers?: number[];
  /** Random weights from this seed instead of the teacher's layers (the architecture stays the teacher's, --layers' depth). */
  randomInit?: number;
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

export function runInitStudent(opts: InitStudentOptions): InitStudentSummary {
  assertModelDir(opts.teacher, '--teacher');
  const teacherConfig = readEncoderConfig(opts.teacher);
  const tokenizer = WordPieceTokenizer.fromDir(opts.teacher);
  if (tokenizer.vocabSize !== teacherConfig.vocabSize) {
    throw new MismatchError(`vocabulary sizes disagree: ${tokenizer.info.source} has ${tokenizer.vocabSize} tokens, ${join(opts.teacher, 'config.json')} says vocab_size ${teacherConfig.vocabSize}`);
  }
  const layers = opts.layers ?? defaultStudentLayers(teacherConfig.numLayers);
  const { config, weights } = opts.randomInit === undefined
    ? studentWeightsFromTeacher(opts.teacher, teacherConfig, layers, tokenizer.padId)
    : randomStudentWeights(studentConfigFromTeacher(teacherConfig, layers, tokenizer.padId), opts.randomInit);
  const moved = claimOutputFolder(opts.out, opts.force, '--out');
  writeStudentFolder(config, weights, opts.out, opts.randomInit === undefined ? { distill_teacher_layers: layers.join(',') } : { distill_random_init_seed: String(opts.randomInit) });
  copyTokenizerFiles(opts.teacher, opts.out);
  if (opts.onnx) {
    // transformers.js loads a model folder's onnx/model.onnx.
    mkdirSync(join(opts.out, 'onnx'), { recursive: true });
    writeFileAtomic(join(opts.out, 'onnx', 'model.onnx'), studentToOnnx(config, weights));
  }
  const parameters = [...weights.values()].reduce((n, w) => n + w.length, 0);
  return {
    out: opts.out, teacher_layers: opts.randomInit === undefined ? layers : [], ...(opts.randomInit === undefined ? {} : { random_init_seed: opts.randomInit }),
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
    .option('--force', 'write into an --out that holds files: the old folder is moved to OUT.old-<time> first (never deleted)', false)
    .option('--no-onnx', 'do not write onnx/model.onnx (the ONNX graph transformers.js loads)')
    .action((opts: InitStudentOptions) => {
      const summary = runInitStudent(opts);
      process.stdout.write(JSON.stringify(summary) + '\n');
    });
}
