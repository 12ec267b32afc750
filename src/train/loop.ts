// The training loop, top to bottom. One update:
//   for each of grad_accum micro-batches:
//     global batch from the reader → DistilBERT masking over the whole global batch → this rank's rows
//     teacher forward (ONNX; already running: it works one batch ahead while the student trains)
//     student forward + backward (tfjs) on the weighted losses / grad_accum, gradients accumulated
//   clip at the global norm → AdamW step with the warm-up/decay schedule → metrics → checkpoint.
// Every random draw derives from (seed, data position, update), so a resumed run repeats a straight one.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import { DistillError, InputError, MismatchError, StoppedError } from '../core/errors.js';
import { totalUpdates, type TrainConfig } from '../config.js';
import { AdamW, scheduleFactor, type Schedule } from './adamw.js';
import { describeChanges, resumedConfig } from './resume.js';
import { SOLO, type Communicator } from '../parallel/communicator.js';
import { UpdateStep, distillObjective, type DistillMicroBatch } from './step.js';
import { LossScale } from './loss-scale.js';
import { claimRunFolder } from './run-dir.js';
import { assertApart, assertNotInsideRecognised, describeRecognised, moveAside, recognise, type NamedPath } from '../core/folders.js';
import { appendText, makeDir, writeFileAtomic } from '../core/out.js';
import { DivergenceGuard } from './divergence.js';
import {
  bestCheckpointDir, checkpointToResume, readingCheckpoint, readTrainerState, removeIncompleteCheckpoints, restoreOptimizer, saveBestCheckpoint, saveCheckpoint, setAsideCheckpointsAfter, verifyCheckpoint,
  CHECKPOINT_FORMAT, type CheckpointHooks, type ResumeRecord, type TrainerState,
} from './checkpoint.js';
import { writeSafetensors } from '../core/safetensors.js';
import { TeacherCache } from '../../teacher/cache.js';
import { RemoteTeacher, type RemoteTeacherOutput } from '../../teacher/remote.js';
import { defaultTeacherEp } from '../../teacher/teacher.js';
import { hasTokenizer, WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { assertModelDir, findOnnxFile, readEncoderConfig } from '../core/model-dir.js';
import { adapterForRank, prefetch, readsSynchronously, selectBackend, type BackendChoice } from '../../student/kernels/backend.js';
import { initialStudentWeights, withNewProjection } from '../../student/init.js';
import { wasmBackend } from '../../student/kernels/backend-internals.js';
import { wasmHeapBytes, WASM_HEAP_LIMIT_BYTES } from '../../student/kernels/wasm-heap.js';
import { loadStudent, NonFiniteWeightsError } from '../../student/io.js';
import { DistilBertStudent } from '../../student/model.js';
import { CorpusReader, sliceRows, type Cursor, type GlobalBatch } from '../../corpus/reader.js';
import { maskBatch, tokenWeights, type MaskingConfig } from '../../corpus/masking.js';
import { readCorpusMeta, readTokenCounts } from '../../corpus/prepare.js';
import { Rng } from '../../corpus/rng.js';
import { ensureCorpus, openCorpus } from '../../corpus/ensure.js';
import { validationBatches, type EvalBatch } from '../eval/data.js';
import { evaluate, EvaluationStopped } from '../eval/evaluate.js';
import { cachedEvalModel, remoteTeacherEvalModel, studentEvalModel } from '../eval/models.js';
import type { EvalMetrics } from '../eval/metrics.js';
import { lossRows, type LossRows } from '../../losses/rows.js';
import { lossNumbers, type LossWeights } from '../../losses/total.js';
import { intermediatePlan, teacherOutputs } from '../../losses/layer-map.js';

/** One line of metrics.jsonl. */
export interface UpdateMetrics {
  step: number;
  lr: number;
  loss: number;
  loss_ce: number;
  loss_mlm: number;
  loss_cos: number;
  loss_mse: number;
  /** The intermediate-layer losses: present when one of alpha_hidden, alpha_attention, alpha_value_relation is set. */
  loss_hidden?: number;
  loss_att?: number;
  loss_vr?: number;
  /** Not finite (null in the file) when the update was skipped. */
  grad_norm: number;
  /** precision fp16-mixed: the loss scale this update used (src/train/loss-scale.ts). */
  loss_scale?: number;
  /** precision fp16-mixed: the gradients overflowed f16, nothing was applied and the loss scale halved. */
  skipped?: true;
  /** Real tokens in this update (all micro-batches, all ranks). */
  tokens: number;
  tokens_per_s: number;
  elapsed_s: number;
}

export interface TrainSummary {
  run_dir: string;
  steps: number;
  total_updates: number;
  final_loss: number;
  tokens: number;
  elapsed_s: number;
  tokens_per_s: number;
  /** Share of the wall time each side computed: the teacher runs beside the student. */
  teacher_busy: number;
  student_busy: number;
  /** Seconds the student waited for the teacher. */
  teacher_wait_s: number;
  world_size: number;
  /** Seconds per update spent in the all-reduces (0 alone). */
  comm_s_per_update: number;
  backend: string;
  checkpoint: string | undefined;
  /** True when the run stopped early because stopRequested said so (a checkpoint of the last update was written). */
  stopped: boolean;
  /** With teacher_cache: its folder, and the training batches read from it (hits) or computed and stored (misses). */
  teacher_cache?: { dir: string; hits: number; misses: number };
}

export interface TrainOptions {
  config: TrainConfig;
  runDir: string;
  resume: boolean;
  /**
   * The config keys the user set explicitly (--set, --backend, ...): on --resume these change the run where they
   * may (src/train/resume.ts); every other key continues as the checkpoint recorded it.
   */
  overridden?: (keyof TrainConfig)[];
  /** Override of max_steps: the run's length, which the learning-rate schedule spans. */
  maxSteps?: number;
  /** Stop (with a checkpoint) after this many updates in this invocation; --resume continues the same schedule. */
  stopAfter?: number;
  checkpointEvery?: number;
  comm?: Communicator;
  /** Start over in a folder that holds a run: the old run is moved aside (RUN.old-<time>), never deleted. */
  force?: boolean;
  /**
   * Asked after every update (a signal handler's flag): when a signal is named on any rank, every rank stops after the
   * same update, with a checkpoint of it. Asked too while the corpus is prepared (the complete shards are kept) and, on
   * one rank, between validation batches (the validation is dropped, the update checkpointed).
   */
  stopRequested?: () => NodeJS.Signals | undefined;
  /** Hears what the run is doing, so that a signal's message can say what will happen. */
  onPhase?: (phase: TrainPhase) => void;
  onUpdate?: (m: UpdateMetrics, total: number) => void;
  onLog?: (line: string) => void;
  checkpointHooks?: CheckpointHooks;
  /**
   * A folder to write every micro-batch the student trains on into, as it is (masked input ids, attention mask, MLM
   * labels, int32 [rows, T]) with its dropout seed: UPDATE-MICRO-rRANK.safetensors. For checking a run against another
   * implementation on the same batches (test/fixtures/make_train_reference.py).
   */
  dumpBatches?: string;
}

export class TrainingDivergedError extends DistillError {}

/** What a run is doing: setting up, preparing its corpus, training, or validating. */
export type TrainPhase = 'setup' | 'preparing' | 'training' | 'validating';

const MASK_STREAM = 0x6d61736b;
const DROPOUT_STREAM = 0x64726f70;
const REHEARSAL_STREAM = 0x72656872;

interface Prepared {
  batch: GlobalBatch;
  /** This rank's rows, masked. */
  inputIds: Int32Array;
  attentionMask: Int32Array;
  labels: Int32Array;
  rows: number;
  /** Undefined when this rank's share of the global batch is empty (a last batch smaller than the world). */
  lossRows: LossRows | undefined;
  /** Row counts of the whole global batch: every mean divides by these, so N ranks × b equal 1 rank × N·b. */
  counts: { ce: number; mlm: number; cos: number };
  teacher: Promise<RemoteTeacherOutput | undefined>;
}

export async function train(opts: TrainOptions): Promise<TrainSummary> {
  const comm = opts.comm ?? SOLO;
  const log = opts.onLog ?? (() => undefined);
  // --- The run folder: apart from every input, one owner (a lock), and an existing run continued or moved aside. ---
  if (opts.dumpBatches) claimDumpFolder(opts.dumpBatches, [...runInputs(opts.config), { path: opts.runDir, option: '--out' }]);
  const folder = comm.rank === 0 ? claimRunFolder(opts.runDir, { resume: opts.resume, force: opts.force ?? false, inputs: runInputs(opts.config), log }) : undefined;
  if (!folder) makeDir(opts.runDir);
  try {
    return await trainInFolder(opts, comm, log);
  } finally {
    folder?.release();
  }
}

/** SHA-256 of the meta.json of the run's corpus and validation corpus: what the checkpoint's data position indexes. */
function fingerprintOfCorpora(c: TrainConfig): string {
  const h = createHash('sha256').update(readFileSync(join(c.corpus, 'meta.json')));
  if (c.valid_corpus !== null) h.update(readFileSync(join(c.valid_corpus, 'meta.json')));
  return h.digest('hex');
}

/** --dump-batches: a new or empty folder, apart from what the run reads and writes. */
function claimDumpFolder(dir: string, others: NamedPath[]): void {
  const out: NamedPath = { path: dir, option: '--dump-batches' };
  assertApart(out, others);
  assertNotInsideRecognised(out);
  const r = recognise(dir);
  if (r.state !== 'missing' && r.state !== 'empty') {
    throw new InputError(`--dump-batches ${dir} already exists and holds ${describeRecognised(r)}`, 'give --dump-batches a new or empty folder');
  }
  makeDir(dir);
}

/** What a run reads: its output folder may be none of them, contain none, lie inside none. */
function runInputs(c: TrainConfig): NamedPath[] {
  return [
    { path: c.teacher, option: 'teacher (config)' }, { path: c.corpus, option: 'corpus (config)' },
    ...(typeof c.student === 'string' ? [{ path: c.student, option: 'student (config)' }] : []),
    ...(c.valid_corpus !== null ? [{ path: c.valid_corpus, option: 'valid_corpus (config)' }] : []),
    ...(c.teacher_cache !== null ? [{ path: c.teacher_cache, option: 'teacher_cache (config)' }] : []),
    ...c.corpus_inputs.filter((p) => !p.startsWith('@stdlib/')).map((path) => ({ path, option: 'corpus_inputs (config)' })),
  ];
}

async function trainInFolder(opts: TrainOptions, comm: Communicator, log: (line: string) => void): Promise<TrainSummary> {
  removeIncompleteCheckpoints(opts.runDir);

  // --- Resume: the architecture, config and position come from the checkpoint; only keys asked for change. ---
  const asked = new Set(opts.overridden ?? []);
  let config = opts.config;
  if (opts.maxSteps !== undefined) { config = { ...config, max_steps: opts.maxSteps }; asked.add('max_steps'); }
  if (opts.checkpointEvery !== undefined) { config = { ...config, checkpoint_every: opts.checkpointEvery }; asked.add('checkpoint_every'); }
  let resumeFrom: string | undefined;
  let state: TrainerState | undefined;
  let changed: ResumeRecord['changed'] = {};
  if (opts.resume) {
    resumeFrom = checkpointToResume(opts.runDir);
    verifyCheckpoint(opts.runDir, resumeFrom); // each file against the checksum recorded when it was written
    state = readingCheckpoint(opts.runDir, resumeFrom, readTrainerState);
    if (state.world_size !== comm.size) {
      throw new MismatchError(`--resume: the checkpoint was written by ${state.world_size} process(es), this run has ${comm.size}`, `launch with the same number of ranks (mpirun -np ${state.world_size})`);
    }
    const resumed = resumedConfig(state.config, config, asked);
    ({ config, changed } = resumed);
    if (resumed.ignored.length > 0) {
      log(`--resume continues with the run's own config (from its checkpoint); the config given differs in ${resumed.ignored.join(', ')}: ignored `
        + '(--resume --set KEY=VALUE changes the keys that may change)');
    }
    log(`resuming from ${resumeFrom} (update ${state.step}); ${Object.keys(changed).length > 0 ? `changed: ${describeChanges(changed)}` : 'nothing changed'}`);
    // A best checkpoint written after the one resumed from belongs to updates that are now redone: set aside.
    const bestDir = bestCheckpointDir(opts.runDir);
    if (comm.rank === 0 && existsSync(join(bestDir, 'trainer_state.json')) && readTrainerState(bestDir).step > state.step) {
      log(`${bestDir} is from update ${readTrainerState(bestDir).step}, after the checkpoint resumed from: moved to ${moveAside(bestDir)}`);
    }
  }

  // --- Backend, teacher, corpus, student. ---
  const backend: BackendChoice = await selectBackend(config.backend ?? undefined, { gpuAdapter: adapterForRank(config.gpu_adapters, comm.rank), precision: config.precision, gpuProducts: config.webgpu_products });
  log(`student backend: ${backend.name} (${backend.source}); matrix products: ${backend.matmul}`);
  assertModelDir(config.teacher, 'teacher (config)');
  findOnnxFile(config.teacher, true); // the teacher runs in onnxruntime: a folder without a graph is named now, before any corpus work
  const teacherConfig = readEncoderConfig(config.teacher);
  const teacherLayers = teacherConfig.numLayers;
  const tok = WordPieceTokenizer.fromDir(config.teacher);
  // Rank 0 prepares the corpus when it is missing; the others wait for it (an all-reduce as a barrier).
  opts.onPhase?.('preparing');
  if (comm.rank === 0) await ensureCorpus(config, tok, { log, ...(opts.stopRequested ? { stopRequested: opts.stopRequested } : {}) }, teacherConfig.maxPositions);
  if (comm.size > 1) await comm.allreduceSum(new Float64Array(1));
  if (comm.rank !== 0) await ensureCorpus(config, tok, { log: () => undefined }, teacherConfig.maxPositions);
  opts.onPhase?.('setup');
  // A resumed run continues the data stream of the corpus it started on: the same meta.json, byte for byte.
  const corpusFingerprint = fingerprintOfCorpora(config);
  if (state?.corpus_fingerprint !== undefined && state.corpus_fingerprint !== corpusFingerprint) {
    throw new MismatchError(`--resume: the corpus changed since the checkpoint was written (${join(config.corpus, 'meta.json')}${config.valid_corpus ? ` or ${join(config.valid_corpus, 'meta.json')}` : ''} differs)`,
      'the checkpoint\'s data position indexes the corpus as it was: put the corpus back as it was, or start a new run (another --out) on the new one');
  }

  // The student: from the checkpoint (architecture included), a folder, teacher layers, or an architecture.
  let student: DistilBertStudent;
  if (resumeFrom) student = readingCheckpoint(opts.runDir, resumeFrom, loadStudent);
  else if (typeof config.student === 'string') {
    assertModelDir(config.student, 'student (config)');
    if (hasTokenizer(config.student)) tok.assertSameVocabulary(WordPieceTokenizer.fromDir(config.student), 'teacher (config)', 'student (config)');
    student = loadStudent(config.student);
  }
  else {
    const { config: sc, weights: sw } = initialStudentWeights(config.teacher, teacherConfig, config.student, tok.padId, config.seed, 'student (config)');
    student = DistilBertStudent.fromHfWeights(sc, (name) => sw.get(name)!);
  }
  student.config.dropout = config.dropout;
  student.config.attention_dropout = config.dropout;
  if (student.config.vocab_size !== teacherConfig.vocabSize) {
    throw new MismatchError(`the student's vocabulary (${student.config.vocab_size}) is not the teacher's (${teacherConfig.vocabSize})`, 'a student is distilled from the teacher whose tokenizer it shares');
  }
  // A student narrower than the teacher compares hidden states through a learned projection (made here when a folder lacks one).
  if (student.config.dim !== teacherConfig.hiddenSize && student.config.projection_dim === undefined) student = withNewProjection(student, teacherConfig.hiddenSize, config.seed);
  if ((student.config.projection_dim ?? student.config.dim) !== teacherConfig.hiddenSize) {
    throw new MismatchError(`the student's projection maps to width ${student.config.projection_dim}, the teacher's hidden size is ${teacherConfig.hiddenSize}`);
  }
  if (student.config.max_position_embeddings < (config.max_length ?? teacherConfig.maxPositions)) {
    log(`note: the student takes ${student.config.max_position_embeddings} positions, fewer than the corpus's sequences may hold`);
  }
  // Which layers the intermediate losses match, and what the teacher outputs for them (losses/layer-map.ts).
  const plan = intermediatePlan({ layers: student.config.n_layers, hidden: student.config.dim, heads: student.config.n_heads },
    { layers: teacherLayers, hidden: teacherConfig.hiddenSize, heads: teacherConfig.numHeads }, config, 'config');
  if (plan) {
    log(`intermediate losses: student layer i ↔ teacher layer [${plan.layerMap.join(', ')}]; `
      + `${[config.alpha_hidden > 0 ? `hidden MSE (α ${config.alpha_hidden}${student.config.projection_dim ? `, through a ${student.config.dim}→${student.config.projection_dim} projection` : ''})` : '',
        config.alpha_attention > 0 ? `attention KL (α ${config.alpha_attention}, ${plan.attentionPerHead ? 'per head' : `${plan.relationHeads} relation heads`})` : '',
        config.alpha_value_relation > 0 ? `value relations (α ${config.alpha_value_relation}, ${plan.relationHeads} heads)` : ''].filter(Boolean).join(', ')}`);
  }
  // Every rank starts from rank 0's weights.
  if (comm.size > 1) {
    for (const v of student.variables()) {
      const data = Float32Array.from(await v.data() as Float32Array);
      await comm.broadcast(data);
      tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
    }
  }

  const reader = new CorpusReader(config.corpus, {
    batchSize: config.batch_size, rank: comm.rank, world: comm.size, seed: config.seed, bucketWidth: config.bucket_width, padId: tok.padId,
    ...(config.valid_fraction > 0 ? { heldOut: { fraction: config.valid_fraction, part: 'train' as const } } : {}),
  });
  // --- Validation: a fixed set of masked batches (src/eval/data.ts), from a separate corpus or held back. ---
  let validation: EvalBatch[] | undefined;
  if (config.valid_corpus !== null || config.valid_fraction > 0) {
    if (config.valid_corpus !== null) await openCorpus(config.valid_corpus, tok, teacherConfig.maxPositions, 'the teacher\'s');
    validation = validationBatches({
      corpus: config.valid_corpus ?? config.corpus, seed: config.seed, sequences: config.eval_sequences,
      ...(config.valid_fraction > 0 ? { heldOut: { fraction: config.valid_fraction } } : {}),
    }, tok, config);
    const sequences = validation.reduce((n, b) => n + b.batchSize, 0);
    log(`validation: ${sequences} sequences of ${config.valid_corpus ?? `the record batches held back from ${config.corpus} (valid_fraction ${config.valid_fraction}; ${reader.sequences} sequences left to train on)`}, `
      + `masked once; every ${config.eval_every > 0 ? `${config.eval_every} updates and ` : ''}at the end`);
  }
  const weights = tokenWeights(readTokenCounts(config.corpus), tok.specialIds, config.mlm_smoothing);
  // The learning-rate schedule: warm-up then linear decay to 0 at the run's last update. A resume that changes
  // the run's length keeps the warm-up and continues on the schedule of a run planned that long (adamw.ts).
  let schedule: Schedule;
  if (state) {
    const recorded = state.schedule ?? { warmup: Math.ceil(config.warmup_prop * state.total_updates), total: state.total_updates };
    const wanted = 'max_steps' in changed || 'epochs' in changed ? totalUpdates(config, reader.batchesPerEpoch()) : recorded.total;
    if (wanted < state.step) {
      throw new InputError(`--resume: the run has done ${state.step} updates; a length of ${wanted} would end it before now`, `give max_steps ≥ ${state.step}`);
    }
    schedule = { warmup: recorded.warmup, total: wanted };
    if (wanted !== recorded.total) {
      const before = state.config.lr * scheduleFactor(Math.max(0, state.step - 1), recorded);
      log(`the schedule now ends at update ${wanted} (was ${recorded.total}), as if the run had been planned that long: the learning rate `
        + `goes from ${before.toPrecision(3)} (update ${state.step}) to ${(config.lr * scheduleFactor(state.step, schedule)).toPrecision(3)} (update ${state.step + 1}), then decays linearly to 0 at update ${wanted}`);
    }
  } else {
    const updates = totalUpdates(config, reader.batchesPerEpoch());
    schedule = { warmup: Math.ceil(config.warmup_prop * updates), total: updates };
  }
  const total = schedule.total;
  const stopAt = Math.min(total, opts.stopAfter !== undefined ? (state?.step ?? 0) + opts.stopAfter : total);

  const optimizer = new AdamW(student.variables(), student.specs.map((s) => !s.noDecay), { betas: config.betas, eps: config.eps, weightDecay: config.weight_decay });
  if (resumeFrom) readingCheckpoint(opts.runDir, resumeFrom, (checkpoint) => restoreOptimizer(checkpoint, student, optimizer));
  // fp16-mixed: the loss scale goes on from the one the checkpoint reached, unless the resume sets loss_scale.
  const lossScale = config.precision !== 'fp16-mixed' ? undefined
    : new LossScale(config.loss_scale, config.loss_scale_growth_interval, 'loss_scale' in changed ? undefined : state?.loss_scale);
  const update = new UpdateStep(student.variables(), optimizer, {
    gradAccum: config.grad_accum, maxGradNorm: config.max_grad_norm, comm, ...(lossScale ? { lossScale } : {}),
  });
  let step = state?.step ?? 0;
  let tokensSoFar = state?.tokens ?? 0;
  const elapsedBefore = state?.elapsed_s ?? 0;
  if (state) reader.restore(state.cursor);

  const metricsPath = join(opts.runDir, 'metrics.jsonl');
  if (comm.rank === 0) truncateMetrics(metricsPath, state?.metrics_lines ?? 0);
  let metricsLines = state?.metrics_lines ?? 0;
  if (comm.rank === 0) writeFileAtomic(join(opts.runDir, 'config.json'), JSON.stringify(config, null, 1) + '\n');
  // A resume that changed the run is recorded: in every later checkpoint's trainer_state.json, and as a line of
  // metrics.jsonl ({"event":"resume",...}) between the updates before and after it.
  const resumes: ResumeRecord[] = [...(state?.resumes ?? [])];
  if (state && Object.keys(changed).length > 0) {
    const record: ResumeRecord = { step: state.step, time: new Date().toISOString(), changed };
    resumes.push(record);
    if (comm.rank === 0) appendText(metricsPath, JSON.stringify({ event: 'resume', ...record }) + '\n');
    metricsLines++;
  }

  // The config carries the loss weights and the masking split under their reference names.
  const lossWeights: LossWeights = config;
  const masking: MaskingConfig = config;

  // --- The teacher works one batch ahead. ---
  let teacherWait = 0;
  let commMs = 0;
  const firstStep = step;
  let studentBusy = 0;
  // What the teacher is asked for a micro-batch, and what the objective reads of it and of the teacher's answer.
  const teacherRequest = (inputIds: Int32Array, attentionMask: Int32Array, rows: number, seqLen: number, rowsOfLoss: LossRows) => ({
    inputIds, attentionMask, batchSize: rows, seqLen, softRows: config.restrict_ce_to_mask ? rowsOfLoss.maskedRows : rowsOfLoss.realRows,
    keepLogits: config.alpha_mse !== 0, fullLogits: false,
  });
  const microBatch = (inputIds: Int32Array, attentionMask: Int32Array, rows: number, seqLen: number, rowsOfLoss: LossRows, t: RemoteTeacherOutput,
    counts?: Prepared['counts']): DistillMicroBatch => ({
    inputIds, attentionMask, batchSize: rows, seqLen, rows: rowsOfLoss, ...(counts ? { counts } : {}),
    teacher: { lastHidden: t.lastHidden, soft: t.soft, ...(plan ? { intermediate: { plan, tensors: t.intermediate } } : {}) },
  });
  const prepareNext = (): Prepared => {
    const batch = reader.next();
    const p = batch.position;
    const masked = maskBatch(batch.inputIds, batch.attentionMask, weights, tok.maskId, tok.vocabSize, masking, Rng.derive(config.seed, p.epoch, p.unit, p.batch, MASK_STREAM));
    const rows = batch.rowEnd - batch.rowStart;
    const inputIds = sliceRows(masked.maskedInputIds, batch.seqLen, batch.rowStart, batch.rowEnd);
    const attentionMask = sliceRows(batch.attentionMask, batch.seqLen, batch.rowStart, batch.rowEnd);
    const labels = sliceRows(masked.mlmLabels, batch.seqLen, batch.rowStart, batch.rowEnd);
    const rowsOfLoss = rows > 0 ? lossRows(attentionMask, labels, rows, batch.seqLen, tok.vocabSize) : undefined;
    let real = 0;
    let maskedCount = 0;
    for (let i = 0; i < batch.attentionMask.length; i++) {
      real += batch.attentionMask[i]!;
      if (masked.mlmLabels[i] !== -100) maskedCount++;
    }
    const counts = { ce: config.restrict_ce_to_mask ? maskedCount : real, mlm: maskedCount, cos: real };
    const request = rowsOfLoss && teacherRequest(inputIds, attentionMask, rows, batch.seqLen, rowsOfLoss);
    // From the teacher cache when the run has one and it holds this batch (teacher/cache.ts), else the teacher.
    const run = request ? (cache ? cache.forward(request, () => teacher.forward(request)) : teacher.forward(request)) : Promise.resolve(undefined);
    return { batch, inputIds, attentionMask, labels, rows, lossRows: rowsOfLoss, counts, teacher: run };
  };

  // The teacher runs in a worker thread (its ONNX session and its soft targets), one batch ahead. It starts
  // last, so that nothing before the loop can fail and leave its thread running.
  const teacherEp = config.teacher_ep ?? defaultTeacherEp(backend.device !== undefined);
  const outputs = teacherOutputs(plan, teacherLayers); // what the teacher's graph gives besides its soft targets
  const cache = config.teacher_cache === null ? undefined : TeacherCache.open(config.teacher_cache, {
    teacherDir: config.teacher, temperature: config.temperature, topk: config.soft_targets_topk, executionProvider: teacherEp,
    outputs: [JSON.stringify(outputs)],
  });
  if (cache) log(`teacher cache: ${cache.dir}`);
  const teacher = await RemoteTeacher.start(config.teacher,
    {
      ...outputs,
      threads: config.teacher_threads, optionName: 'teacher', softTargetTemperature: config.temperature, softTargetTopK: config.soft_targets_topk, executionProvider: teacherEp,
    },
    config.alpha_mse !== 0);
  const placement = teacher.nodesByProvider ? ` (nodes run: ${Object.entries(teacher.nodesByProvider).map(([p, n]) => `${n} on ${p}`).join(', ')})` : '';
  log(`teacher: onnxruntime ${teacherEp} execution provider${placement}${backend.device ? `; GPU adapter: ${backend.device}` : ''}`);
  const started = performance.now();
  let next: Prepared | undefined;
  let lastCheckpoint: string | undefined = resumeFrom;
  let lastLoss = NaN;
  // Divergence: a loss or gradient norm far above its recent level for a few updates in a row stops the run,
  // naming the last checkpoint known to be good (the update after it was normal) and setting later ones aside.
  const guard = new DivergenceGuard(config.divergence_factor, config.divergence_patience, resumeFrom, state?.divergence_history);
  const diverged = (message: string): TrainingDivergedError => {
    const good = guard.lastGood();
    const setAside = comm.rank === 0 ? setAsideCheckpointsAfter(opts.runDir, good) : [];
    const aside = setAside.length > 0 ? ` (${setAside.length} later checkpoint${setAside.length > 1 ? 's' : ''} set aside as *.diverged, not deleted)` : '';
    return new TrainingDivergedError(`${message}: training stopped`, good
      ? `the last checkpoint known to be good is ${good}${aside}; --resume continues from it, or start over with a lower lr or a longer warmup_prop (--force moves this run aside)`
      : `no checkpoint was written before it${aside}; start over with a lower lr or a longer warmup_prop (--force moves this run aside)`);
  };
  const trainerState = (cursor: Cursor): TrainerState => ({
    format_version: CHECKPOINT_FORMAT, step, total_updates: total, schedule, cursor, tokens: tokensSoFar,
    elapsed_s: elapsedBefore + (performance.now() - started) / 1000, metrics_lines: metricsLines, config, world_size: comm.size,
    divergence_history: guard.history(), resumes, corpus_fingerprint: corpusFingerprint, ...(best ? { best } : {}), ...(lossScale ? { loss_scale: lossScale.state() } : {}),
  });
  const checkpointNow = (cursor: Cursor): void => {
    if (comm.rank !== 0) return;
    try {
      lastCheckpoint = saveCheckpoint(opts.runDir, student, optimizer, trainerState(cursor), config.teacher, config.keep_checkpoints, opts.checkpointHooks, guard.lastGood());
    } catch (e) {
      // Weights that are not finite are never written as a checkpoint, let alone called good.
      if (e instanceof NonFiniteWeightsError) throw diverged(`${e.message} after update ${step}`);
      throw e;
    }
    guard.wroteCheckpoint(step, lastCheckpoint);
  };

  // The evaluation: the student and the teacher (its worker) on the validation set; rank 0 logs the val_* line
  // and keeps the lowest val_loss as checkpoints/best.
  let best = state?.best;
  const teacherOnValidation = cachedEvalModel(remoteTeacherEvalModel(teacher)); // the same batches every time
  const validate = async (): Promise<EvalMetrics | undefined> => {
    opts.onPhase?.('validating');
    let metrics: EvalMetrics;
    try {
      metrics = await evaluate(studentEvalModel(student), teacherOnValidation, validation!, { comm, stopRequested: () => opts.stopRequested?.() !== undefined });
    } catch (e) {
      if (!(e instanceof EvaluationStopped)) throw e;
      log(`validation at update ${step} ${e.message}: dropped`);
      return undefined;
    } finally {
      opts.onPhase?.('training');
    }
    const line = { step, ...metrics };
    if (comm.rank === 0) {
      appendText(metricsPath, JSON.stringify(line) + '\n');
      metricsLines++;
    }
    const improved = best === undefined || metrics.val_loss < best.val_loss;
    log(`validation at update ${step}: val_loss ${metrics.val_loss.toFixed(4)} (ppl ${metrics.val_ppl.toFixed(2)}), accuracy ${metrics.val_acc.toFixed(4)}, `
      + `agreement with the teacher ${metrics.val_agree!.toFixed(4)}, KL ${metrics.val_kl!.toFixed(4)}, hidden cosine ${metrics.val_cos!.toFixed(4)}`
      + `${improved ? ' (best so far)' : ` (best: ${best!.val_loss.toFixed(4)} at update ${best!.step})`}`);
    if (improved) {
      best = { step, val_loss: metrics.val_loss };
      if (comm.rank === 0) {
        if (!readsSynchronously(backend.name)) await prefetch([...student.variables(), ...optimizer.moments()]);
        saveBestCheckpoint(opts.runDir, student, optimizer, trainerState(next ? next.batch.position : reader.cursor), config.teacher);
      }
    }
    return metrics;
  };

  // On wasm every tensor of the step lives in one memory of at most 4 GiB (student/kernels/wasm-heap.ts), and how
  // much a step needs grows with its tokens: one rehearsal of the largest micro-batch the run can meet (batch_size
  // sequences of the corpus's max_length, every token real; two with grad_accum > 1, whose summed gradients add to
  // the peak), its gradients dropped, stops a run that cannot fit now, not at its first full batch hours later.
  // Nothing of the run's state changes (the weights, the moments, the data cursor and every seed stay as they were).
  const rehearse = async (): Promise<void> => {
    const T = readCorpusMeta(config.corpus).max_length;
    const B = config.batch_size;
    const ordinary = Array.from({ length: tok.vocabSize }, (_, id) => id).filter((id) => !tok.specialIds.has(id));
    const ids = Int32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? tok.clsId : i % T === T - 1 ? tok.sepId : ordinary[(i * 7919) % ordinary.length]!));
    const attentionMask = new Int32Array(B * T).fill(1);
    const masked = maskBatch(ids, attentionMask, weights, tok.maskId, tok.vocabSize, masking, Rng.derive(config.seed, REHEARSAL_STREAM));
    const rowsOfLoss = lossRows(attentionMask, masked.mlmLabels, B, T, tok.vocabSize);
    const t = await teacher.forward(teacherRequest(masked.maskedInputIds, attentionMask, B, T, rowsOfLoss));
    try {
      for (let micro = 0; micro < Math.min(2, config.grad_accum); micro++) {
        await update.accumulate(distillObjective(student, microBatch(masked.maskedInputIds, attentionMask, B, T, rowsOfLoss, t), lossWeights, { training: true, dropoutSeed: micro }));
      }
      await update.gradNorm(); // the update's own temporaries (the gradient norm's); AdamW updates in place
    } finally {
      update.discard();
    }
    const heap = wasmHeapBytes(wasmBackend(tf.backend()));
    log(`wasm memory: the largest micro-batch (${B} × ${T} tokens${config.grad_accum > 1 ? ', two accumulated' : ''}) fits; the memory has grown to `
      + `${Math.round(heap / 2 ** 20)} MiB of ${WASM_HEAP_LIMIT_BYTES / 2 ** 20}`);
    // Within a tenth of the end, the order of later allocations (another batch's length, the validation pass) can
    // leave no free block large enough: a bert-base student at 15 × 128 rehearsed at 4,092 MiB, then failed in its
    // first update.
    if (heap > 0.9 * WASM_HEAP_LIMIT_BYTES) {
      log(`warning: that is within a tenth of the wasm memory's end; a later step may not fit (the error will say so): a smaller batch_size with a larger grad_accum leaves room`);
    }
  };

  let stopped = false;
  if (state && step >= total) {
    log(`the run in ${opts.runDir} is complete: ${step} of ${total} updates; nothing to do. To train it longer: `
      + `distill train --out ${opts.runDir} --resume --set max_steps=${step + Math.max(1, Math.round(step / 2))} (any number above ${step})`);
  }
  try {
    if (backend.name === 'wasm' && step < stopAt) await rehearse();
    // A signal during the set-up: nothing trained, nothing to checkpoint.
    const early = opts.stopRequested?.();
    if (early && comm.size === 1) throw new StoppedError(early, `stopped by ${early} before the first update of this start: nothing was trained`, opts.resume ? 'the run is as it was: --resume continues it' : 'start the run again when you wish');
    opts.onPhase?.('training');
    next = step < stopAt ? prepareNext() : undefined;
    while (step < stopAt) {
      const updateStarted = performance.now();
      const lr = config.lr * scheduleFactor(step, schedule);
      const sums = { loss: 0, loss_ce: 0, loss_mlm: 0, loss_cos: 0, loss_mse: 0, loss_hidden: 0, loss_att: 0, loss_vr: 0 };
      let updateTokens = 0;
      for (let micro = 0; micro < config.grad_accum; micro++) {
        const current = next!;
        const waitStarted = performance.now();
        const t = await current.teacher;
        teacherWait += performance.now() - waitStarted;
        const isLast = micro === config.grad_accum - 1 && step + 1 >= stopAt;
        next = isLast ? undefined : prepareNext(); // the teacher starts on the next batch now

        const rows = current.lossRows;
        if (!rows || !t) continue; // nothing of this global batch falls to this rank
        const studentStarted = performance.now();
        const dropoutSeed = Rng.derive(config.seed, step, micro, DROPOUT_STREAM).nextUint32();
        if (opts.dumpBatches) dumpMicroBatch(opts.dumpBatches, step + 1, micro, comm.rank, current, dropoutSeed);
        const batch = microBatch(current.inputIds, current.attentionMask, current.rows, current.batch.seqLen, rows, t, current.counts);
        const parts = lossNumbers(await update.accumulate(distillObjective(student, batch, lossWeights, { training: true, dropoutSeed })));
        for (const k of Object.keys(sums) as (keyof typeof sums)[]) sums[k] += parts[k] / config.grad_accum;
        updateTokens += rows.realRows.length;
        studentBusy += performance.now() - studentStarted;
      }
      const commStarted = performance.now();
      // Let the event loop run once per update (a signal's handler waits for it: the awaits above may all be
      // settled already, which never yields to it), then ask whether to stop.
      await new Promise<void>((resolveTurn) => setImmediate(resolveTurn));
      let stopNow = opts.stopRequested?.() !== undefined;
      if (comm.size > 1) {
        // Each rank's losses are its share of the global means: the global values are their sums. A stop asked
        // of any rank travels with them, so every rank stops after this same update.
        const keys = Object.keys(sums) as (keyof typeof sums)[];
        const shared = Float64Array.from([...keys.map((k) => sums[k]), updateTokens, stopNow ? 1 : 0]);
        await comm.allreduceSum(shared);
        keys.forEach((k, i) => { sums[k] = shared[i]!; });
        updateTokens = shared[keys.length]!;
        stopNow = shared[keys.length + 1]! > 0;
      }
      commMs += performance.now() - commStarted;
      if (!Number.isFinite(sums.loss)) {
        update.discard();
        guard.observe(step + 1, sums.loss, NaN);
        throw diverged(`the loss is ${sums.loss} at update ${step + 1}${config.precision === 'fp16-mixed'
          ? ' (precision fp16-mixed: an operand of a product beyond f16\'s range, 65504, also gives NaN; if a lower lr does not help, use precision "fp32")' : ''}`);
      }
      // All-reduce of the gradients across ranks, clipping, AdamW.
      const scaleUsed = lossScale?.value;
      const { norm, skipped } = await update.apply(lr);
      step++;
      if (skipped) {
        // fp16-mixed: the gradients overflowed f16; nothing was applied and the scale halved (loss-scale.ts).
        // The update's batch is used up, as in PyTorch's GradScaler; the divergence guard does not judge it.
        log(`update ${step}: the gradients overflow f16 with loss_scale ${scaleUsed}: skipped (nothing applied); loss_scale now ${lossScale!.value}`);
      }
      const verdict = skipped ? undefined : guard.observe(step, sums.loss, norm);
      if (verdict?.diverged) {
        throw diverged(`the loss or the gradient norm stayed above ${config.divergence_factor}× its recent level for ${config.divergence_patience} updates `
          + `(updates ${verdict.streakStart}–${step}: loss ${sums.loss.toPrecision(4)} against a median of ${verdict.medianLoss.toPrecision(4)}, `
          + `gradient norm ${norm.toPrecision(4)} against ${verdict.medianGradNorm.toPrecision(4)})`);
      }
      if (!skipped) tokensSoFar += updateTokens;
      lastLoss = sums.loss;
      const elapsed = elapsedBefore + (performance.now() - started) / 1000;
      const m: UpdateMetrics = {
        step, lr, loss: sums.loss, loss_ce: sums.loss_ce, loss_mlm: sums.loss_mlm, loss_cos: sums.loss_cos, loss_mse: sums.loss_mse,
        ...(plan ? { loss_hidden: sums.loss_hidden, loss_att: sums.loss_att, loss_vr: sums.loss_vr } : {}),
        grad_norm: norm, ...(scaleUsed !== undefined ? { loss_scale: scaleUsed } : {}), ...(skipped ? { skipped: true as const } : {}), tokens: updateTokens, tokens_per_s: updateTokens / ((performance.now() - updateStarted) / 1000), elapsed_s: elapsed,
      };
      if (comm.rank === 0) {
        appendText(metricsPath, JSON.stringify(m) + '\n');
        metricsLines++;
      }
      opts.onUpdate?.(m, total);
      if (validation && !stopNow && ((config.eval_every > 0 && step % config.eval_every === 0) || step === total)) {
        await validate();
        if (comm.size === 1) stopNow = opts.stopRequested?.() !== undefined; // a signal during the validation
      }
      const every = config.checkpoint_every;
      // No periodic checkpoint while the loss is abnormal: it would push good ones out.
      if ((every > 0 && step % every === 0 && !guard.inStreak()) || step === stopAt || stopNow) {
        // Checkpoints read the weights synchronously: bring them to the host first where reads are asynchronous.
        if (comm.rank === 0 && !readsSynchronously(backend.name)) await prefetch([...student.variables(), ...optimizer.moments()]);
        checkpointNow(next ? next.batch.position : reader.cursor);
      }
      if (stopNow && step < stopAt) {
        stopped = true; // asked to stop: this update is checkpointed, the run continues with --resume
        break;
      }
    }
  } finally {
    if (next) await next.teacher.catch(() => undefined);
    await teacher.close();
  }
  const wall = (performance.now() - started) / 1000;
  const summary: TrainSummary = {
    run_dir: opts.runDir, steps: step, total_updates: total, final_loss: lastLoss, tokens: tokensSoFar,
    elapsed_s: elapsedBefore + wall, tokens_per_s: wall > 0 ? (tokensSoFar - (state?.tokens ?? 0)) / wall : 0,
    teacher_busy: teacher.busyMs / 1000 / Math.max(wall, 1e-9), student_busy: studentBusy / 1000 / Math.max(wall, 1e-9),
    teacher_wait_s: teacherWait / 1000, backend: backend.name, checkpoint: lastCheckpoint, stopped,
    world_size: comm.size, comm_s_per_update: step > firstStep ? (commMs + update.allreduceMs) / 1000 / (step - firstStep) : 0,
    ...(cache ? { teacher_cache: { dir: cache.dir, hits: cache.hits, misses: cache.misses } } : {}),
  };
  if (cache) log(`teacher cache: ${cache.hits} batches read, ${cache.misses} computed and stored (${cache.dir})`);
  optimizer.dispose();
  student.dispose();
  return summary;
}


/** One micro-batch as the student trains on it, and its dropout seed (TrainOptions.dumpBatches). */
function dumpMicroBatch(dir: string, update: number, micro: number, rank: number, b: Prepared, dropoutSeed: number): void {
  const shape = [b.rows, b.batch.seqLen];
  const name = `${String(update).padStart(4, '0')}-${micro}-r${rank}.safetensors`;
  writeSafetensors(join(dir, name), {
    masked_input_ids: { data: b.inputIds, shape, dtype: 'I32' }, attention_mask: { data: b.attentionMask, shape, dtype: 'I32' },
    mlm_labels: { data: b.labels, shape, dtype: 'I32' },
  }, { update: String(update), micro: String(micro), rank: String(rank), dropout_seed: String(dropoutSeed) });
}

/** Keep the first `lines` lines of metrics.jsonl (updates after the checkpoint are redone on resume). */
function truncateMetrics(path: string, lines: number): void {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, 'utf8').split('\n').filter((l) => l.length > 0).slice(0, lines);
  writeFileAtomic(path, kept.map((l) => `${l}\n`).join(''));
}
