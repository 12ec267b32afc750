// distill eval as a library function: the validation metrics of any model folder (a student checkpoint in tfjs, an
// ONNX model in onnxruntime) on a prepared corpus, with the teacher's agreement when one is given.

import { assertModelDir, isTfjsStudentFolder, readEncoderConfig } from '../core/model-dir.js';
import { ProgressReporter } from '../progress.js';
import type { BackendName } from '../../student/backend-names.js';
import { assertSharedVocabulary, WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { RECIPE_MASKING } from '../../corpus/masking.js';
import type { EvalModel } from './models.js';
import type { EvalMetrics } from './metrics.js';

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

/** The model's validation metrics on `o.corpus` (and its agreement with `o.teacher`), as one report. */
export async function evaluateModel(o: EvalOptions): Promise<EvalReport> {
  assertModelDir(o.model, '--model');
  if (o.teacher) {
    assertModelDir(o.teacher, '--teacher');
    assertSharedVocabulary({ path: o.model, option: '--model' }, { path: o.teacher, option: '--teacher' });
  }
  // tfjs and onnxruntime: loaded once the input has been checked, not for --help or a bad path.
  const [{ selectBackend }, { openCorpus }, { validationBatches }, { loadEvalModel }, { evaluate }] = await Promise.all(
    [
      import('../../student/backend.js'),
      import('../../corpus/ensure.js'),
      import('./data.js'),
      import('./models.js'),
      import('./evaluate.js'),
    ],
  );
  const tok = WordPieceTokenizer.fromDir(o.model);
  await openCorpus(o.corpus, tok, readEncoderConfig(o.model).maxPositions, "the model's");
  // A student without ONNX runs in tfjs: start the backend before loading it.
  if (isTfjsStudentFolder(o.model) || (o.teacher && isTfjsStudentFolder(o.teacher))) await selectBackend(o.backend);
  const batches = validationBatches(
    {
      corpus: o.corpus,
      seed: o.seed,
      sequences: o.sequences,
      batchSize: o.batchSize,
      bucketWidth: o.bucketWidth,
      ...(o.validFraction ? { heldOut: { fraction: o.validFraction, optionName: '--valid-fraction' } } : {}),
    },
    tok,
    RECIPE_MASKING,
  );
  const started = performance.now();
  const model = await loadEvalModel(o.model, o.threads, '--model');
  let teacher: EvalModel | undefined;
  try {
    teacher = o.teacher ? await loadEvalModel(o.teacher, o.threads, '--teacher') : undefined;
    const bar = new ProgressReporter('eval');
    const metrics = await evaluate(model, teacher, batches, {
      onBatch: (done, total) => bar.update({ fraction: done / total, text: `batch ${done}/${total}` }),
    });
    bar.done();
    return {
      model: o.model,
      runtime: model.runtime,
      teacher: o.teacher ?? null,
      corpus: o.corpus,
      valid_fraction: o.validFraction ?? null,
      seed: o.seed,
      ...metrics,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await model.release();
    await teacher?.release();
  }
}
