// distill eval: the validation metrics of any model folder on a prepared corpus, as JSON.

import type { Command } from 'commander';
import { choiceOption, floatOption, intOption } from '../options.js';
import { RECIPE } from '../core/recipe.js';
import { BACKEND_NAMES } from '../../student/backend-names.js';
import { EVAL_BATCH_SIZE, EVAL_BUCKET_WIDTH } from '../eval/batching.js';
import { evaluateModel, type EvalOptions } from '../eval/run.js';

export function registerEval(program: Command): void {
  program
    .command('eval')
    .summary('validation metrics of a model folder on a prepared corpus')
    .description(
      'Validation metrics of any model folder (a student checkpoint, an exported ONNX student, or the teacher ' +
        'itself) on a\n' +
        ('prepared corpus, as one JSON object: val_loss (masked-LM cross-entropy against the true tokens), val_ppl, ' +
          'val_acc\n') +
        ('(top-1 at masked positions) and, with --teacher: val_agree (top-1 agreement with the teacher), val_kl ' +
          '(KL(teacher‖model)\n') +
        ("at temperature 1) and val_cos (cosine of the last hidden states). The masking is the recipe's, drawn once " +
          'from --seed;\n') +
        "with --valid-fraction and the run's seed, the sequences are the ones `train` held back and logged val_* on.",
    )
    .requiredOption(
      '--model <dir>',
      'model folder: a checkpoint or student folder (tfjs), or any ONNX model folder (onnxruntime)',
    )
    .option('--teacher <dir>', 'the teacher, for agreement, KL and cosine (any model folder)')
    .requiredOption('--corpus <dir>', "prepared corpus folder (distill prepare), prepared with the model's tokenizer")
    .option(
      '--sequences <n>',
      'sequences to evaluate on (fewer when the corpus holds fewer)',
      intOption('--sequences', 1),
      512,
    )
    .option(
      '--seed <n>',
      'seed of the order, the held-out split and the masking (a run\'s "seed" gives its validation set)',
      intOption('--seed', 0, 2 ** 32 - 1),
      RECIPE.seed,
    )
    .option(
      '--valid-fraction <f>',
      'read only the record batches a run with this valid_fraction (and --seed) held back',
      floatOption('--valid-fraction', 0, 0.5),
    )
    .option(
      '--batch-size <n>',
      'sequences per batch (the batches and their masks depend on it; train validates with the default)',
      intOption('--batch-size', 1),
      EVAL_BATCH_SIZE,
    )
    .option(
      '--bucket-width <n>',
      'length bucket of the batching (as --batch-size)',
      intOption('--bucket-width', 1),
      EVAL_BUCKET_WIDTH,
    )
    .option(
      '--backend <name>',
      `backend for a tfjs student: ${BACKEND_NAMES.join(', ')}`,
      choiceOption('--backend', BACKEND_NAMES),
    )
    .option('--threads <n>', 'onnxruntime CPU threads (0 = all cores)', intOption('--threads', 0), 0)
    .action(async (o: EvalOptions) => {
      process.stdout.write(JSON.stringify(await evaluateModel(o)) + '\n');
    });
}
