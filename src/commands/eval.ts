// distill eval: the validation metrics of any model folder on a prepared corpus, as JSON.

import type { Command } from 'commander';
import { assertModelDir, readEncoderConfig } from '../core/model-dir.js';
import { choiceOption, floatOption, intOption } from '../options.js';
import { ProgressReporter } from '../progress.js';
import { RECIPE } from '../core/recipe.js';
import { BACKEND_NAMES, type BackendName } from '../../student/kernels/names.js';
import { isTfjsStudentFolder } from '../core/model-dir.js';
import { assertSharedVocabulary, WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { RECIPE_MASKING } from '../../corpus/masking.js';
import { EVAL_BATCH_SIZE, EVAL_BUCKET_WIDTH } from '../eval/batching.js';
import type { EvalModel } from '../eval/models.js';
import type { EvalMetrics } from '../eval/metrics.js';

export interface EvalOptions {
  model: string;
  teacher?: string;
  corpus: string;
  sequences: number;
  seed: number;
  validFraction?: number;
  batchSize: number;
  bucketWidth: number;
  backend?: BackendName;
  threads: number;
}

export interface EvalReport extends EvalMetrics {
  model: string;
  runtime: string;
  teacher: string | null;
  corpus: string;
  valid_fraction: number | null;
  seed: number;
  seconds: number;
}

export async function runEval(o: EvalOptions): Promise<EvalReport> {
  assertModelDir(o.model, '--model');
  if (o.teacher) {
    assertModelDir(o.teacher, '--teacher');
    assertSharedVocabulary({ path: o.model, option: '--model' }, { path: o.teacher, option: '--teacher' });
  }
  // tfjs and onnxruntime: loaded once the input has been checked, not for --help or a bad path.
  const [{ selectBackend }, { openCorpus }, { validationBatches }, { loadEvalModel }, { evaluate }] = await Promise.all([
    import('../../student/kernels/backend.js'), import('../../corpus/ensure.js'), import('../eval/data.js'), import('../eval/models.js'), import('../eval/evaluate.js')]);
  const tok = WordPieceTokenizer.fromDir(o.model);
  await openCorpus(o.corpus, tok, readEncoderConfig(o.model).maxPositions, 'the model\'s');
  // A student without ONNX runs in tfjs: start the backend before loading it.
  if (isTfjsStudentFolder(o.model) || (o.teacher && isTfjsStudentFolder(o.teacher))) await selectBackend(o.backend);
  const batches = validationBatches({
    corpus: o.corpus, seed: o.seed, sequences: o.sequences, batchSize: o.batchSize, bucketWidth: o.bucketWidth,
    ...(o.validFraction ? { heldOut: { fraction: o.validFraction, optionName: '--valid-fraction' } } : {}),
  }, tok, RECIPE_MASKING);
  const started = performance.now();
  const model = await loadEvalModel(o.model, o.threads, '--model');
  let teacher: EvalModel | undefined;
  try {
    teacher = o.teacher ? await loadEvalModel(o.teacher, o.threads, '--teacher') : undefined;
    const bar = new ProgressReporter('eval');
    const metrics = await evaluate(model, teacher, batches, { onBatch: (done, total) => bar.update({ fraction: done / total, text: `batch ${done}/${total}` }) });
    bar.done();
    return {
      model: o.model, runtime: model.runtime, teacher: o.teacher ?? null, corpus: o.corpus, valid_fraction: o.validFraction ?? null, seed: o.seed,
      ...metrics, seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await model.release();
    await teacher?.release();
  }
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .summary('validation metrics of a model folder on a prepared corpus')
    .description('Validation metrics of any model folder (a student checkpoint, an exported ONNX student, or the teacher itself) on a\n'
      + 'prepared corpus, as one JSON object: val_loss (masked-LM cross-entropy against the true tokens), val_ppl, val_acc\n'
      + '(top-1 at masked positions) and, with --teacher: val_agree (top-1 agreement with the teacher), val_kl (KL(teacher‖model)\n'
      + 'at temperature 1) and val_cos (cosine of the last hidden states). The masking is the recipe\'s, drawn once from --seed;\n'
      + 'with --valid-fraction and the run\'s seed, the sequences are the ones `train` held back and logged val_* on.')
    .requiredOption('--model <dir>', 'model folder: a checkpoint or student folder (tfjs), or any ONNX model folder (onnxruntime)')
    .option('--teacher <dir>', 'the teacher, for agreement, KL and cosine (any model folder)')
    .requiredOption('--corpus <dir>', 'prepared corpus folder (distill prepare), prepared with the model\'s tokenizer')
    .option('--sequences <n>', 'sequences to evaluate on (fewer when the corpus holds fewer)', intOption('--sequences', 1), 512)
    .option('--seed <n>', 'seed of the order, the held-out split and the masking (a run\'s "seed" gives its validation set)', intOption('--seed', 0, 2 ** 32 - 1), RECIPE.seed)
    .option('--valid-fraction <f>', 'read only the record batches a run with this valid_fraction (and --seed) held back', floatOption('--valid-fraction', 0, 0.5))
    .option('--batch-size <n>', 'sequences per batch (the batches and their masks depend on it; train validates with the default)', intOption('--batch-size', 1), EVAL_BATCH_SIZE)
    .option('--bucket-width <n>', 'length bucket of the batching (as --batch-size)', intOption('--bucket-width', 1), EVAL_BUCKET_WIDTH)
    .option('--backend <name>', `backend for a tfjs student: ${BACKEND_NAMES.join(', ')}`, choiceOption('--backend', BACKEND_NAMES))
    .option('--threads <n>', 'onnxruntime CPU threads (0 = all cores)', intOption('--threads', 0), 0)
    .action(async (o: EvalOptions) => {
      process.stdout.write(JSON.stringify(await runEval(o)) + '\n');
    });
}
