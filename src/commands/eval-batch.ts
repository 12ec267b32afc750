// distill eval-batch: the losses and the gradient norm of one distillation step on a given batch, to
// compare with PyTorch's numbers for the same batch.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { FileFormatError, MismatchError } from '../core/errors.js';
import { SafetensorsFile } from '../core/safetensors.js';
import { assertModelDir } from '../core/model-dir.js';
import { assertSharedVocabulary } from '../../corpus/tokenizer.js';
import { choiceOption, floatOption, intOption } from '../options.js';
import { RECIPE } from '../core/recipe.js';
import { BACKEND_NAMES, type BackendName } from '../../student/backend-names.js';
import type { LossWeights } from '../../losses/total.js';

interface EvalBatchOptions {
  teacher: string;
  student: string;
  batch: string;
  temperature: number;
  alphaCe: number;
  alphaMlm: number;
  alphaCos: number;
  alphaMse: number;
  restrictCeToMask: boolean;
  backend?: BackendName;
  threads: number;
  unfused: boolean;
}

export interface EvalBatchResult {
  loss_ce: number;
  loss_mlm: number;
  loss_cos: number;
  loss_mse: number;
  loss_total: number;
  grad_norm: number;
  backend: string;
}

interface BatchFile {
  maskedInputIds: Int32Array;
  attentionMask: Int32Array;
  mlmLabels: Int32Array;
  batchSize: number;
  seqLen: number;
}

export function readBatchFile(path: string): BatchFile {
  if (!existsSync(path)) throw new FileFormatError(path, 'no such file (given as --batch)');
  const file = SafetensorsFile.read(path);
  const names = ['masked_input_ids', 'attention_mask', 'mlm_labels'] as const;
  for (const n of names) {
    if (!file.has(n))
      throw new FileFormatError(
        path,
        `missing tensor "${n}"`,
        'a batch file holds int32 [B, T] tensors masked_input_ids, attention_mask and mlm_labels (-100 = not a target)',
      );
  }
  const shape = file.shapeOf('masked_input_ids');
  for (const n of names) {
    const s = file.shapeOf(n);
    if (s.length !== 2 || s[0] !== shape[0] || s[1] !== shape[1]) {
      throw new FileFormatError(
        path,
        `tensor "${n}" has shape [${s}], expected [B, T] like masked_input_ids [${shape}]`,
      );
    }
  }
  return {
    maskedInputIds: file.getInt32('masked_input_ids'),
    attentionMask: file.getInt32('attention_mask'),
    mlmLabels: file.getInt32('mlm_labels'),
    batchSize: shape[0]!,
    seqLen: shape[1]!,
  };
}

/**
 * The batch's values against the vocabulary, before the teacher sees them (an id outside it would surface as
 * onnxruntime's Gather error): input ids in [0, V), attention 0 or 1, labels -100 or in [0, V).
 */
function checkBatchValues(path: string, batch: BatchFile, vocabSize: number, vocabSource: string): void {
  const T = batch.seqLen;
  const where = (i: number): string => `[${Math.floor(i / T)}, ${i % T}]`;
  for (let i = 0; i < batch.maskedInputIds.length; i++) {
    const id = batch.maskedInputIds[i]!;
    if (id < 0 || id >= vocabSize) {
      throw new FileFormatError(
        path,
        `masked_input_ids${where(i)} is ${id}, outside the vocabulary of ${vocabSize} tokens (${vocabSource})`,
        "the batch was made with another tokenizer, or for another teacher: make it with this teacher's tokenizer",
      );
    }
    const a = batch.attentionMask[i]!;
    if (a !== 0 && a !== 1)
      throw new FileFormatError(
        path,
        `attention_mask${where(i)} is ${a}`,
        'attention_mask holds 1 for real tokens and 0 for padding',
      );
    const label = batch.mlmLabels[i]!;
    if (label !== -100 && (label < 0 || label >= vocabSize)) {
      throw new FileFormatError(
        path,
        `mlm_labels${where(i)} is ${label}, neither -100 (not a target) nor a token id below ${vocabSize}`,
      );
    }
  }
}

export async function runEvalBatch(opts: EvalBatchOptions): Promise<EvalBatchResult> {
  assertModelDir(opts.teacher, '--teacher');
  assertModelDir(opts.student, '--student');
  assertSharedVocabulary({ path: opts.teacher, option: '--teacher' }, { path: opts.student, option: '--student' });
  // tfjs and onnxruntime: loaded to run, not for --help.
  const [
    { Teacher },
    { selectBackend },
    { UpdateStep, distillObjective },
    { loadStudent },
    { lossRows },
    { RECIPE_LOSS_WEIGHTS },
    { lossesFromPacked },
  ] = await Promise.all([
    import('../../teacher/teacher.js'),
    import('../../student/backend.js'),
    import('../train/step.js'),
    import('../../student/io.js'),
    import('../../losses/rows.js'),
    import('../../losses/total.js'),
    import('../../losses/record.js'),
  ]);
  const backend = await selectBackend(opts.backend);
  const batch = readBatchFile(opts.batch);
  const student = loadStudent(opts.student);
  const teacher = await Teacher.load(opts.teacher, { hiddenStates: 'last', threads: opts.threads });
  try {
    const tc = teacher.config;
    const sc = student.config;
    if (tc.vocabSize !== sc.vocab_size || tc.hiddenSize !== sc.dim) {
      throw new MismatchError(
        `teacher and student do not fit: ${join(opts.teacher, 'config.json')} has vocab_size ${tc.vocabSize}, ` +
          `hidden_size ${tc.hiddenSize}; ` +
          `${join(opts.student, 'config.json')} has vocab_size ${sc.vocab_size}, dim ${sc.dim}`,
        'initialise the student from this teacher: distill init-student',
      );
    }
    checkBatchValues(opts.batch, batch, tc.vocabSize, join(opts.teacher, 'config.json'));
    const { batchSize: B, seqLen: T } = batch;
    const rows = lossRows(batch.attentionMask, batch.mlmLabels, B, T, sc.vocab_size);
    const t = await teacher.forward({
      inputIds: batch.maskedInputIds,
      attentionMask: batch.attentionMask,
      batchSize: B,
      seqLen: T,
    });
    const weights: LossWeights = {
      ...RECIPE_LOSS_WEIGHTS,
      temperature: opts.temperature,
      alpha_ce: opts.alphaCe,
      alpha_mlm: opts.alphaMlm,
      alpha_cos: opts.alphaCos,
      alpha_mse: opts.alphaMse,
      restrict_ce_to_mask: opts.restrictCeToMask,
    };
    // The training loop's update step, measuring only (no optimizer): the gradient of loss_total, its norm.
    const step = new UpdateStep(student.variables(), undefined, { gradAccum: 1, maxGradNorm: 0 });
    const values = lossesFromPacked(
      await step.accumulate(
        distillObjective(
          student,
          {
            inputIds: batch.maskedInputIds,
            attentionMask: batch.attentionMask,
            batchSize: B,
            seqLen: T,
            rows,
            teacher: { logits: t.logits, lastHidden: t.hiddenStates[0]! },
          },
          weights,
          { training: false },
          opts.unfused ? false : undefined,
        ),
      ),
    );
    // The tied projector is one variable (the word embeddings): its gradient is counted once.
    const gradNorm = await step.gradNorm();
    step.discard();
    const result = {
      loss_ce: values.ce,
      loss_mlm: values.mlm,
      loss_cos: values.cos,
      loss_mse: values.mse,
      loss_total: values.total,
      grad_norm: gradNorm,
    };
    return { ...result, backend: backend.name };
  } finally {
    student.dispose();
    await teacher.release();
  }
}

export function registerEvalBatch(program: Command): void {
  program
    .command('eval-batch')
    .summary('losses and gradient norm of one distillation step on a given batch')
    .description(
      'One distillation step on a given batch, without updating: runs the teacher (ONNX) and the student\n' +
        ('(tfjs, dropout off) and prints {loss_ce, loss_mlm, loss_cos, loss_mse, loss_total, grad_norm, backend} as ' +
          'JSON.\n') +
        "grad_norm is the L2 norm of the gradient of loss_total over the student's parameters (tied projector once).",
    )
    .requiredOption('--teacher <dir>', 'teacher folder (config.json, tokenizer, model.onnx)')
    .requiredOption(
      '--student <dir>',
      'student folder (DistilBERT config.json + model.safetensors), e.g. from init-student',
    )
    .requiredOption('--batch <file>', 'safetensors file with int32 [B, T] masked_input_ids, attention_mask, mlm_labels')
    .option(
      '--temperature <t>',
      'softmax temperature of the distillation loss',
      floatOption('--temperature', 1e-6),
      RECIPE.temperature,
    )
    .option('--alpha-ce <w>', 'weight of the distillation KL', floatOption('--alpha-ce', 0), RECIPE.alpha_ce)
    .option('--alpha-mlm <w>', 'weight of the masked-LM loss', floatOption('--alpha-mlm', 0), RECIPE.alpha_mlm)
    .option(
      '--alpha-cos <w>',
      'weight of the cosine loss on the last hidden states',
      floatOption('--alpha-cos', 0),
      RECIPE.alpha_cos,
    )
    .option('--alpha-mse <w>', 'weight of the logit MSE', floatOption('--alpha-mse', 0), RECIPE.alpha_mse)
    .option('--restrict-ce-to-mask', 'KL over masked positions only (default: every real token)', false)
    .option(
      '--backend <name>',
      `student backend: ${BACKEND_NAMES.join(', ')} (default: the best installed)`,
      choiceOption('--backend', BACKEND_NAMES),
    )
    .option(
      '--threads <n>',
      'onnxruntime CPU threads for the teacher (0 = all cores)',
      intOption('--threads', 0, 1024),
      0,
    )
    .option(
      '--unfused',
      'compute the logit losses with plain tfjs ops instead of ' +
        'the fused host pass (same numbers; the default on webgpu)',
      false,
    )
    .action(async (opts: EvalBatchOptions) => {
      process.stdout.write(JSON.stringify(await runEvalBatch(opts)) + '\n');
    });
}
