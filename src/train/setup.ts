// A run's set-up, before its first update: what a resume continues, the student's backend, the teacher and the
// corpus (prepared first when it is missing), the student, the data reader, the validation set and the schedule.
// Each step is a function of its own; setUpRun calls them in order. The optimizer and the teacher's worker are
// started by the run itself (src/train/loop.ts), last, so that nothing here can fail and leave them running.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { InputError, MismatchError } from '../core/errors.js';
import { moveAside } from '../core/folders.js';
import { assertModelDir, findOnnxFile, readEncoderConfig, type EncoderConfig } from '../core/model-dir.js';
import { totalUpdates, type TrainConfig } from '../config.js';
import type { Communicator } from '../parallel/communicator.js';
import { scheduleFactor, type Schedule } from './adamw.js';
import {
  bestCheckpointDir,
  checkpointToResume,
  readingCheckpoint,
  readTrainerState,
  verifyCheckpoint,
  type ResumeRecord,
  type TrainerState,
} from './checkpoint.js';
import { describeChanges, resumedConfig } from './resume.js';
import type { TrainOptions } from './options.js';
import { validationBatches, type EvalBatch } from '../eval/data.js';
import { ensureCorpus, openCorpus } from '../../corpus/ensure.js';
import { readTokenCounts } from '../../corpus/prepare.js';
import { CorpusReader } from '../../corpus/reader.js';
import { tokenWeights } from '../../corpus/masking.js';
import { hasTokenizer, WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { intermediatePlan, type IntermediatePlan } from '../../losses/layer-map.js';
import { adapterForRank, selectBackend, type BackendChoice } from '../../student/backend.js';
import { initialStudentWeights, withNewProjection } from '../../student/init.js';
import { loadStudent } from '../../student/io.js';
import { DistilBertStudent } from '../../student/model.js';

/** What a resume continues: the checkpoint, its state and config, and what the resume changed. */
export interface Resumed {
  config: TrainConfig;
  from?: string;
  state?: TrainerState;
  changed: ResumeRecord['changed'];
}

/** Everything a run's loop needs that the set-up makes. */
export interface RunSetup extends Resumed {
  backend: BackendChoice;
  tok: WordPieceTokenizer;
  teacherConfig: EncoderConfig;
  /** The corpora's fingerprint (fingerprintOfCorpora), recorded in each checkpoint. */
  corpusFingerprint: string;
  student: DistilBertStudent;
  plan: IntermediatePlan | undefined;
  reader: CorpusReader;
  validation: EvalBatch[] | undefined;
  /** The masking weights of the corpus's tokens. */
  tokenWeights: Float64Array;
  schedule: Schedule;
}

export async function setUpRun(opts: TrainOptions, comm: Communicator, log: (line: string) => void): Promise<RunSetup> {
  const resumed = resumeState(opts, comm, log);
  const { config } = resumed;
  const backend = await selectBackend(config.backend ?? undefined, {
    gpuAdapter: adapterForRank(config.gpu_adapters, comm.rank),
    precision: config.precision,
    gpuProducts: config.webgpu_products,
  });
  log(`student backend: ${backend.name} (${backend.source}); matrix products: ${backend.matmul}`);
  const { tok, teacherConfig } = openTeacher(config);
  // Rank 0 prepares the corpus when it is missing; the others wait for it (an all-reduce as a barrier).
  opts.onPhase?.('preparing');
  if (comm.rank === 0)
    await ensureCorpus(
      config,
      tok,
      { log, ...(opts.stopRequested ? { stopRequested: opts.stopRequested } : {}) },
      teacherConfig.maxPositions,
    );
  if (comm.size > 1) await comm.allreduceSum(new Float64Array(1));
  if (comm.rank !== 0) await ensureCorpus(config, tok, { log: () => undefined }, teacherConfig.maxPositions);
  opts.onPhase?.('setup');
  const corpusFingerprint = fingerprintOfCorpora(config);
  // A resumed run continues the data stream of the corpus it started on: the same meta.json, byte for byte.
  if (resumed.state?.corpus_fingerprint !== undefined && resumed.state.corpus_fingerprint !== corpusFingerprint) {
    throw new MismatchError(
      `--resume: the corpus changed since the checkpoint was written (${join(config.corpus, 'meta.json')}` +
        `${config.valid_corpus ? ` or ${join(config.valid_corpus, 'meta.json')}` : ''} differs)`,
      "the checkpoint's data position indexes the corpus as it was: put the corpus back as it was, or start a new " +
        'run (another --out) on the new one',
    );
  }
  const student = makeStudent(opts.runDir, resumed, tok, teacherConfig, log);
  const plan = intermediatePlan(
    { layers: student.config.n_layers, hidden: student.config.dim, heads: student.config.n_heads },
    { layers: teacherConfig.numLayers, hidden: teacherConfig.hiddenSize, heads: teacherConfig.numHeads },
    config,
    'config',
  );
  if (plan) log(describePlan(plan, config, student));
  if (comm.size > 1) await broadcastWeights(student, comm); // every rank starts from rank 0's weights
  const reader = new CorpusReader(config.corpus, {
    batchSize: config.batch_size,
    rank: comm.rank,
    world: comm.size,
    seed: config.seed,
    bucketWidth: config.bucket_width,
    padId: tok.padId,
    ...(config.valid_fraction > 0 ? { heldOut: { fraction: config.valid_fraction, part: 'train' as const } } : {}),
  });
  const validation = await validationSet(config, tok, teacherConfig, reader, log);
  const weights = tokenWeights(readTokenCounts(config.corpus), tok.specialIds, config.mlm_smoothing);
  const schedule = makeSchedule(resumed, reader, log);
  if (resumed.state) reader.restore(resumed.state.cursor);
  return {
    ...resumed,
    backend,
    tok,
    teacherConfig,
    corpusFingerprint,
    student,
    plan,
    reader,
    validation,
    tokenWeights: weights,
    schedule,
  };
}

/** With --resume: the checkpoint to continue, its state, and the config with only the keys asked for changed. */
function resumeState(opts: TrainOptions, comm: Communicator, log: (line: string) => void): Resumed {
  const asked = new Set(opts.overridden ?? []);
  let config = opts.config;
  if (opts.maxSteps !== undefined) {
    config = { ...config, max_steps: opts.maxSteps };
    asked.add('max_steps');
  }
  if (opts.checkpointEvery !== undefined) {
    config = { ...config, checkpoint_every: opts.checkpointEvery };
    asked.add('checkpoint_every');
  }
  if (!opts.resume) return { config, changed: {} };
  const from = checkpointToResume(opts.runDir);
  verifyCheckpoint(opts.runDir, from); // each file against the checksum recorded when it was written
  const state = readingCheckpoint(opts.runDir, from, readTrainerState);
  if (state.world_size !== comm.size) {
    throw new MismatchError(
      `--resume: the checkpoint was written by ${state.world_size} process(es), this run has ${comm.size}`,
      `launch with the same number of ranks (mpirun -np ${state.world_size})`,
    );
  }
  const resumed = resumedConfig(state.config, config, asked);
  if (resumed.ignored.length > 0) {
    log(
      `--resume continues with the run's own config (from its checkpoint); the config given differs in ` +
        `${resumed.ignored.join(', ')}: ignored ` +
        '(--resume --set KEY=VALUE changes the keys that may change)',
    );
  }
  const changed = resumed.changed;
  log(
    `resuming from ${from} (update ${state.step}); ` +
      `${Object.keys(changed).length > 0 ? `changed: ${describeChanges(changed)}` : 'nothing changed'}`,
  );
  // A best checkpoint written after the one resumed from belongs to updates that are now redone: set aside.
  const bestDir = bestCheckpointDir(opts.runDir);
  if (
    comm.rank === 0 &&
    existsSync(join(bestDir, 'trainer_state.json')) &&
    readTrainerState(bestDir).step > state.step
  ) {
    log(
      `${bestDir} is from update ${readTrainerState(bestDir).step}, ` +
        `after the checkpoint resumed from: moved to ${moveAside(bestDir)}`,
    );
  }
  return { config: resumed.config, from, state, changed };
}

/**
 * The teacher folder, checked before any corpus work (it runs in onnxruntime: a folder without a graph is named now).
 */
function openTeacher(config: TrainConfig): { tok: WordPieceTokenizer; teacherConfig: EncoderConfig } {
  assertModelDir(config.teacher, 'teacher (config)');
  findOnnxFile(config.teacher, true);
  return { tok: WordPieceTokenizer.fromDir(config.teacher), teacherConfig: readEncoderConfig(config.teacher) };
}

/** SHA-256 of the meta.json of the run's corpus and validation corpus: what the checkpoint's data position indexes. */
function fingerprintOfCorpora(c: TrainConfig): string {
  const h = createHash('sha256').update(readFileSync(join(c.corpus, 'meta.json')));
  if (c.valid_corpus !== null) h.update(readFileSync(join(c.valid_corpus, 'meta.json')));
  return h.digest('hex');
}

/** The student: from the checkpoint (architecture included), a folder, teacher layers, or an architecture. */
function makeStudent(
  runDir: string,
  r: Resumed,
  tok: WordPieceTokenizer,
  teacherConfig: EncoderConfig,
  log: (line: string) => void,
): DistilBertStudent {
  const { config } = r;
  let student: DistilBertStudent;
  if (r.from) student = readingCheckpoint(runDir, r.from, loadStudent);
  else if (typeof config.student === 'string') {
    assertModelDir(config.student, 'student (config)');
    if (hasTokenizer(config.student))
      tok.assertSameVocabulary(WordPieceTokenizer.fromDir(config.student), 'teacher (config)', 'student (config)');
    student = loadStudent(config.student);
  } else {
    const { config: sc, weights: sw } = initialStudentWeights(
      config.teacher,
      teacherConfig,
      config.student,
      tok.padId,
      config.seed,
      'student (config)',
    );
    student = DistilBertStudent.fromHfWeights(sc, (name) => sw.get(name)!);
  }
  student.config.dropout = config.dropout;
  student.config.attention_dropout = config.dropout;
  if (student.config.vocab_size !== teacherConfig.vocabSize) {
    throw new MismatchError(
      `the student's vocabulary (${student.config.vocab_size}) is not the teacher's (${teacherConfig.vocabSize})`,
      'a student is distilled from the teacher whose tokenizer it shares',
    );
  }
  // A student narrower than the teacher compares hidden states
  // through a learned projection (made here when a folder lacks one).
  if (student.config.dim !== teacherConfig.hiddenSize && student.config.projection_dim === undefined) {
    student = withNewProjection(student, teacherConfig.hiddenSize, config.seed);
  }
  if ((student.config.projection_dim ?? student.config.dim) !== teacherConfig.hiddenSize) {
    throw new MismatchError(
      `the student's projection maps to width ${student.config.projection_dim}, ` +
        `the teacher's hidden size is ${teacherConfig.hiddenSize}`,
    );
  }
  if (student.config.max_position_embeddings < (config.max_length ?? teacherConfig.maxPositions)) {
    log(
      `note: the student takes ${student.config.max_position_embeddings} positions, ` +
        `fewer than the corpus's sequences may hold`,
    );
  }
  return student;
}

/** The log line of the intermediate-layer losses: which layers they match, and with what weights. */
function describePlan(plan: IntermediatePlan, config: TrainConfig, student: DistilBertStudent): string {
  const projection = student.config.projection_dim
    ? `, through a ${student.config.dim}→${student.config.projection_dim} projection`
    : '';
  const parts = [
    config.alpha_hidden > 0 ? `hidden MSE (α ${config.alpha_hidden}${projection})` : '',
    config.alpha_attention > 0
      ? `attention KL (α ${config.alpha_attention}, ` +
        `${plan.attentionPerHead ? 'per head' : `${plan.relationHeads} relation heads`})`
      : '',
    config.alpha_value_relation > 0
      ? `value relations (α ${config.alpha_value_relation}, ${plan.relationHeads} heads)`
      : '',
  ];
  return (
    `intermediate losses: student layer i ↔ teacher layer [${plan.layerMap.join(', ')}]; ` +
    `${parts.filter(Boolean).join(', ')}`
  );
}

async function broadcastWeights(student: DistilBertStudent, comm: Communicator): Promise<void> {
  for (const v of student.variables()) {
    const data = Float32Array.from((await v.data()) as Float32Array);
    await comm.broadcast(data);
    tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
  }
}

/** The validation set: a fixed set of masked batches (src/eval/data.ts), from a separate corpus or held back. */
async function validationSet(
  config: TrainConfig,
  tok: WordPieceTokenizer,
  teacherConfig: EncoderConfig,
  reader: CorpusReader,
  log: (line: string) => void,
): Promise<EvalBatch[] | undefined> {
  if (config.valid_corpus === null && !(config.valid_fraction > 0)) return undefined;
  if (config.valid_corpus !== null)
    await openCorpus(config.valid_corpus, tok, teacherConfig.maxPositions, "the teacher's");
  const validation = validationBatches(
    {
      corpus: config.valid_corpus ?? config.corpus,
      seed: config.seed,
      sequences: config.eval_sequences,
      ...(config.valid_fraction > 0 ? { heldOut: { fraction: config.valid_fraction } } : {}),
    },
    tok,
    config,
  );
  const sequences = validation.reduce((n, b) => n + b.batchSize, 0);
  const source =
    config.valid_corpus ??
    `the record batches held back from ${config.corpus} (valid_fraction ${config.valid_fraction}; ` +
      `${reader.sequences} sequences left to train on)`;
  log(
    `validation: ${sequences} sequences of ${source}, masked once; every ` +
      `${config.eval_every > 0 ? `${config.eval_every} updates and ` : ''}at the end`,
  );
  return validation;
}

/**
 * The learning-rate schedule: warm-up then linear decay to 0 at the run's last update. A resume that changes the run's
 * length keeps the warm-up and continues on the schedule of a run planned that long (adamw.ts).
 */
function makeSchedule(
  { config, state, changed }: Resumed,
  reader: CorpusReader,
  log: (line: string) => void,
): Schedule {
  if (!state) {
    const updates = totalUpdates(config, reader.batchesPerEpoch());
    return { warmup: Math.ceil(config.warmup_prop * updates), total: updates };
  }
  const recorded = state.schedule ?? {
    warmup: Math.ceil(config.warmup_prop * state.total_updates),
    total: state.total_updates,
  };
  const wanted =
    'max_steps' in changed || 'epochs' in changed ? totalUpdates(config, reader.batchesPerEpoch()) : recorded.total;
  if (wanted < state.step) {
    throw new InputError(
      `--resume: the run has done ${state.step} updates; a length of ${wanted} would end it before now`,
      `give max_steps ≥ ${state.step}`,
    );
  }
  const schedule = { warmup: recorded.warmup, total: wanted };
  if (wanted !== recorded.total) {
    const before = state.config.lr * scheduleFactor(Math.max(0, state.step - 1), recorded);
    log(
      `the schedule now ends at update ${wanted} (was ${recorded.total}), as if the run had been planned that long: ` +
        `the learning rate ` +
        (`goes from ${before.toPrecision(3)} (update ${state.step}) to ` +
          `${(config.lr * scheduleFactor(state.step, schedule)).toPrecision(3)} `) +
        `(update ${state.step + 1}), then decays linearly to 0 at update ${wanted}`,
    );
  }
  return schedule;
}
