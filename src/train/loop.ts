// The training loop, read top to bottom in Run.train. One update (Run.update):
//   for each of grad_accum micro-batches (src/train/batches.ts):
//     global batch from the reader → DistilBERT masking over the whole global batch → this rank's rows
//     teacher forward (ONNX; already running: it works one batch ahead while the student trains)
//     student forward + backward (tfjs) on the weighted losses / grad_accum, gradients accumulated
//   clip at the global norm → AdamW step with the warm-up/decay schedule → metrics line;
// then, when due, the validation (Run.validate) and a checkpoint (Run.checkpoint), and the stop checks.
// The set-up before the first update is src/train/setup.ts. Every random draw derives from (seed, data position,
// update), so a resumed run repeats a straight one.

import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, StoppedError } from '../core/errors.js';
import {
  assertApart,
  assertNotInsideRecognised,
  describeRecognised,
  recognise,
  type NamedPath,
} from '../core/folders.js';
import { appendText, makeDir, writeFileAtomic } from '../core/out.js';
import { writeSafetensors } from '../core/safetensors.js';
import type { TrainConfig } from '../config.js';
import { SOLO, type Communicator } from '../parallel/communicator.js';
import { evaluate, EvaluationStopped } from '../eval/evaluate.js';
import { cachedEvalModel, remoteTeacherEvalModel, studentEvalModel, type EvalModel } from '../eval/models.js';
import { AdamW, scheduleFactor } from './adamw.js';
import { MicroBatches, objectiveInput, type MicroBatch } from './batches.js';
import {
  removeIncompleteCheckpoints,
  restoreOptimizer,
  readingCheckpoint,
  saveBestCheckpoint,
  saveCheckpoint,
  CHECKPOINT_FORMAT,
  type ResumeRecord,
  type TrainerState,
} from './checkpoint.js';
import { DivergenceGuard } from './divergence.js';
import { TrainingDivergedError } from './diverged.js';
import type { TrainOptions, TrainSummary, UpdateMetrics } from './options.js';
import { LossScale } from './loss-scale.js';
import { rehearseLargestBatch } from './rehearsal.js';
import { claimRunFolder } from './run-dir.js';
import { setUpRun, type RunSetup } from './setup.js';
import { UpdateStep, distillObjective } from './step.js';
import { Rng } from '../../corpus/rng.js';
import { addLosses, LOSS_ORDER, lossesFromPacked, lossFields, zeroLosses, type Losses } from '../../losses/record.js';
import { teacherOutputs } from '../../losses/layer-map.js';
import { NonFiniteWeightsError } from '../../student/io.js';
import { prefetch, readsSynchronously } from '../../student/backend.js';
import { TeacherCache } from '../../teacher/cache.js';
import { RemoteTeacher } from '../../teacher/remote.js';
import { defaultTeacherEp } from '../../teacher/teacher.js';

export type { TrainOptions, TrainPhase, TrainSummary, UpdateMetrics } from './options.js';

const DROPOUT_STREAM = 0x64726f70;

export async function train(opts: TrainOptions): Promise<TrainSummary> {
  const comm = opts.comm ?? SOLO;
  const log = opts.onLog ?? (() => undefined);
  // The run folder: apart from every input, one owner (a lock), and an existing run continued or moved aside.
  if (opts.dumpBatches)
    claimDumpFolder(opts.dumpBatches, [...runInputs(opts.config), { path: opts.runDir, option: '--out' }]);
  const folder =
    comm.rank === 0
      ? claimRunFolder(opts.runDir, {
          resume: opts.resume,
          force: opts.force ?? false,
          inputs: runInputs(opts.config),
          log,
        })
      : undefined;
  if (!folder) makeDir(opts.runDir);
  try {
    removeIncompleteCheckpoints(opts.runDir);
    const run = await Run.start(opts, comm, log);
    return await run.train();
  } finally {
    folder?.release();
  }
}

/** One run: what the set-up made, the optimizer and the teacher's worker, and the loop over the updates. */
class Run {
  private readonly config: TrainConfig;
  private readonly optimizer: AdamW;
  private readonly lossScale: LossScale | undefined;
  private readonly update: UpdateStep;
  private readonly guard: DivergenceGuard;
  private readonly metricsPath: string;
  private readonly resumes: ResumeRecord[];
  private readonly stopAt: number;
  private readonly firstStep: number;
  private readonly teacherOnValidation: EvalModel | undefined;
  private step: number;
  private tokens: number;
  private metricsLines: number;
  private best: TrainerState['best'];
  private lastCheckpoint: string | undefined;
  private lastLoss = NaN;
  /** When the teacher's worker had started: the run's wall time counts from here. */
  private readonly started = performance.now();
  private studentMs = 0;
  private commMs = 0;

  private constructor(
    private readonly opts: TrainOptions,
    private readonly comm: Communicator,
    private readonly log: (line: string) => void,
    private readonly s: RunSetup,
    private readonly teacher: RemoteTeacher,
    private readonly cache: TeacherCache | undefined,
    private readonly batches: MicroBatches,
  ) {
    const { config, state, student } = s;
    this.config = config;
    this.optimizer = new AdamW(
      student.variables(),
      student.specs.map((p) => !p.noDecay),
      { betas: config.betas, eps: config.eps, weightDecay: config.weight_decay },
    );
    if (s.from)
      readingCheckpoint(opts.runDir, s.from, (checkpoint) => restoreOptimizer(checkpoint, student, this.optimizer));
    // fp16-mixed: the loss scale goes on from the one the checkpoint reached, unless the resume sets loss_scale.
    this.lossScale =
      config.precision !== 'fp16-mixed'
        ? undefined
        : new LossScale(
            config.loss_scale,
            config.loss_scale_growth_interval,
            'loss_scale' in s.changed ? undefined : state?.loss_scale,
          );
    this.update = new UpdateStep(student.variables(), this.optimizer, {
      gradAccum: config.grad_accum,
      maxGradNorm: config.max_grad_norm,
      comm,
      ...(this.lossScale ? { lossScale: this.lossScale } : {}),
    });
    // Divergence: a loss or gradient norm far above its recent level for a few updates in a row stops the run, naming
    // the last checkpoint known to be good (the update after it was normal) and setting later ones aside.
    this.guard = new DivergenceGuard(
      config.divergence_factor,
      config.divergence_patience,
      s.from,
      state?.divergence_history,
    );
    this.step = this.firstStep = state?.step ?? 0;
    this.tokens = state?.tokens ?? 0;
    this.best = state?.best;
    this.lastCheckpoint = s.from;
    this.stopAt = Math.min(
      s.schedule.total,
      opts.stopAfter !== undefined ? this.step + opts.stopAfter : s.schedule.total,
    );
    this.metricsPath = join(opts.runDir, 'metrics.jsonl');
    this.metricsLines = state?.metrics_lines ?? 0;
    this.resumes = [...(state?.resumes ?? [])];
    // the same batches every time
    this.teacherOnValidation = s.validation && cachedEvalModel(remoteTeacherEvalModel(teacher));
  }

  /**
   * Set up (src/train/setup.ts), then start the teacher's worker last: nothing before it can fail and leave it running.
   */
  static async start(opts: TrainOptions, comm: Communicator, log: (line: string) => void): Promise<Run> {
    const s = await setUpRun(opts, comm, log);
    const { config } = s;
    const teacherEp = config.teacher_ep ?? defaultTeacherEp(s.backend.device !== undefined);
    // what the teacher's graph gives besides its soft targets
    const outputs = teacherOutputs(s.plan, s.teacherConfig.numLayers);
    const cache =
      config.teacher_cache === null
        ? undefined
        : TeacherCache.open(config.teacher_cache, {
            teacherDir: config.teacher,
            temperature: config.temperature,
            topk: config.soft_targets_topk,
            executionProvider: teacherEp,
            outputs: [JSON.stringify(outputs)],
          });
    if (cache) log(`teacher cache: ${cache.dir}`);
    const teacher = await RemoteTeacher.start(
      config.teacher,
      {
        ...outputs,
        threads: config.teacher_threads,
        optionName: 'teacher',
        softTargetTemperature: config.temperature,
        softTargetTopK: config.soft_targets_topk,
        executionProvider: teacherEp,
      },
      config.alpha_mse !== 0,
    );
    const placement = teacher.nodesByProvider
      ? ` (nodes run: ${Object.entries(teacher.nodesByProvider)
          .map(([p, n]) => `${n} on ${p}`)
          .join(', ')})`
      : '';
    log(
      `teacher: onnxruntime ${teacherEp} execution ` +
        `provider${placement}${s.backend.device ? `; GPU adapter: ${s.backend.device}` : ''}`,
    );
    const run = new Run(
      opts,
      comm,
      log,
      s,
      teacher,
      cache,
      new MicroBatches(s.reader, config, s.tok, s.tokenWeights, teacher, cache),
    );
    run.openMetrics();
    return run;
  }

  /** The loop: update → metrics → validation when due → checkpoint when due → the stop checks. */
  async train(): Promise<TrainSummary> {
    const { opts, comm, config } = this;
    if (this.s.state && this.step >= this.s.schedule.total) {
      this.log(
        `the run in ${opts.runDir} is complete: ${this.step} of ${this.s.schedule.total} updates; nothing to do. To ` +
          `train it longer: ` +
          (`distill train --out ${opts.runDir} --resume --set ` +
            `max_steps=${this.step + Math.max(1, Math.round(this.step / 2))} (any number above ${this.step})`),
      );
    }
    let stopped = false;
    try {
      if (this.s.backend.name === 'wasm' && this.step < this.stopAt) {
        await rehearseLargestBatch({
          ...this.s,
          weights: this.s.tokenWeights,
          teacher: this.teacher,
          update: this.update,
          log: this.log,
        });
      }
      // A signal during the set-up: nothing trained, nothing to checkpoint.
      const early = opts.stopRequested?.();
      if (early && comm.size === 1) {
        throw new StoppedError(
          early,
          `stopped by ${early} before the first update of this start: nothing was trained`,
          opts.resume ? 'the run is as it was: --resume continues it' : 'start the run again when you wish',
        );
      }
      opts.onPhase?.('training');
      if (this.step < this.stopAt) this.batches.start();
      while (this.step < this.stopAt) {
        const { metrics, stopAsked } = await this.runUpdate();
        let stopNow = stopAsked;
        opts.onUpdate?.(metrics, this.s.schedule.total);
        if (this.s.validation && !stopNow && this.validationDue()) {
          await this.validate();
          if (comm.size === 1) stopNow = opts.stopRequested?.() !== undefined; // a signal during the validation
        }
        // No periodic checkpoint while the loss is abnormal: it would push good ones out.
        const every = config.checkpoint_every;
        if ((every > 0 && this.step % every === 0 && !this.guard.inStreak()) || this.step === this.stopAt || stopNow)
          await this.checkpoint();
        if (stopNow && this.step < this.stopAt) {
          stopped = true; // asked to stop: this update is checkpointed, the run continues with --resume
          break;
        }
      }
    } finally {
      await this.batches.settle();
      await this.teacher.close();
    }
    return this.finish(stopped);
  }

  /** One update: its micro-batches accumulated, the losses shared between ranks, the step applied, its metrics line. */
  private async runUpdate(): Promise<{ metrics: UpdateMetrics; stopAsked: boolean }> {
    const { config, comm } = this;
    const started = performance.now();
    const lr = config.lr * scheduleFactor(this.step, this.s.schedule);
    const sums = zeroLosses();
    let tokens = 0;
    for (let micro = 0; micro < config.grad_accum; micro++) {
      const { micro: mb, teacher } = await this.batches.take(
        micro === config.grad_accum - 1 && this.step + 1 >= this.stopAt,
      );
      if (!mb.lossRows || !teacher) continue; // nothing of this global batch falls to this rank
      const studentStarted = performance.now();
      const dropoutSeed = Rng.derive(config.seed, this.step, micro, DROPOUT_STREAM).nextUint32();
      if (this.opts.dumpBatches)
        dumpMicroBatch(this.opts.dumpBatches, this.step + 1, micro, comm.rank, mb, dropoutSeed);
      const input = objectiveInput({ ...mb, seqLen: mb.batch.seqLen, lossRows: mb.lossRows }, teacher, this.s.plan);
      const losses = lossesFromPacked(
        await this.update.accumulate(distillObjective(this.s.student, input, config, { training: true, dropoutSeed })),
      );
      addLosses(sums, losses, config.grad_accum);
      tokens += mb.lossRows.realRows.length;
      this.studentMs += performance.now() - studentStarted;
    }
    const shared = await this.shareAcrossRanks(sums, tokens);
    if (!Number.isFinite(sums.total)) {
      this.update.discard();
      this.guard.observe(this.step + 1, sums.total, NaN);
      throw this.diverged(
        `the loss is ${sums.total} at update ${this.step + 1}${
          config.precision === 'fp16-mixed'
            ? " (precision fp16-mixed: an operand of a product beyond f16's range, 65504, also gives NaN; " +
              'if a lower lr does not help, use precision "fp32")'
            : ''
        }`,
      );
    }
    // All-reduce of the gradients across ranks, clipping, AdamW.
    const scaleUsed = this.lossScale?.value;
    const { norm, skipped } = await this.update.apply(lr);
    this.step++;
    if (skipped) {
      // fp16-mixed: the gradients overflowed f16; nothing was applied and the scale halved (loss-scale.ts). The
      // update's batch is used up, as in PyTorch's GradScaler; the divergence guard does not judge it.
      this.log(
        `update ${this.step}: the gradients overflow f16 with loss_scale ${scaleUsed}: skipped (nothing applied); ` +
          `loss_scale now ${this.lossScale!.value}`,
      );
    } else {
      this.judge(sums.total, norm);
      this.tokens += shared.tokens;
    }
    this.lastLoss = sums.total;
    const metrics: UpdateMetrics = {
      step: this.step,
      lr,
      ...lossFields(sums, config),
      grad_norm: norm,
      ...(scaleUsed !== undefined ? { loss_scale: scaleUsed } : {}),
      ...(skipped ? { skipped: true as const } : {}),
      tokens: shared.tokens,
      tokens_per_s: shared.tokens / ((performance.now() - started) / 1000),
      elapsed_s: this.elapsedS(),
    };
    this.appendMetrics(metrics);
    return { metrics, stopAsked: shared.stopAsked };
  }

  /**
   * The event loop runs once (a signal's handler waits for it: the awaits of an update may all be settled already,
   * which never yields to it), then: was a stop asked? Under MPI each rank's losses are its share of the global means,
   * the global values their sums; a stop asked of any rank travels with them, so every rank stops after this update.
   */
  private async shareAcrossRanks(sums: Losses, tokens: number): Promise<{ tokens: number; stopAsked: boolean }> {
    const commStarted = performance.now();
    await new Promise<void>((resolveTurn) => setImmediate(resolveTurn));
    let stopAsked = this.opts.stopRequested?.() !== undefined;
    if (this.comm.size > 1) {
      const shared = Float64Array.from([...LOSS_ORDER.map((k) => sums[k]), tokens, stopAsked ? 1 : 0]);
      await this.comm.allreduceSum(shared);
      LOSS_ORDER.forEach((k, i) => {
        sums[k] = shared[i]!;
      });
      tokens = shared[LOSS_ORDER.length]!;
      stopAsked = shared[LOSS_ORDER.length + 1]! > 0;
    }
    this.commMs += performance.now() - commStarted;
    return { tokens, stopAsked };
  }

  /** The divergence guard's verdict on this update: three in a row far above the recent level stop the run. */
  private judge(loss: number, norm: number): void {
    const verdict = this.guard.observe(this.step, loss, norm);
    if (!verdict.diverged) return;
    const { config } = this;
    throw this.diverged(
      `the loss or the gradient norm stayed above ${config.divergence_factor}× its recent level for ` +
        `${config.divergence_patience} updates ` +
        (`(updates ${verdict.streakStart}–${this.step}: loss ${loss.toPrecision(4)} against a median of ` +
          `${verdict.medianLoss.toPrecision(4)}, `) +
        `gradient norm ${norm.toPrecision(4)} against ${verdict.medianGradNorm.toPrecision(4)})`,
    );
  }

  private diverged(message: string): TrainingDivergedError {
    return TrainingDivergedError.naming(
      message,
      this.guard.lastGood(),
      this.comm.rank === 0 ? this.opts.runDir : undefined,
    );
  }

  private validationDue(): boolean {
    const every = this.config.eval_every;
    return (every > 0 && this.step % every === 0) || this.step === this.s.schedule.total;
  }

  /**
   * The student and the teacher (its worker) on the validation set;
   * the val_* line; the lowest val_loss kept as checkpoints/best.
   */
  private async validate(): Promise<void> {
    const { opts, comm } = this;
    opts.onPhase?.('validating');
    let metrics;
    try {
      metrics = await evaluate(studentEvalModel(this.s.student), this.teacherOnValidation, this.s.validation!, {
        comm,
        stopRequested: () => opts.stopRequested?.() !== undefined,
      });
    } catch (e) {
      if (!(e instanceof EvaluationStopped)) throw e;
      this.log(`validation at update ${this.step} ${e.message}: dropped`);
      return;
    } finally {
      opts.onPhase?.('training');
    }
    this.appendMetrics({ step: this.step, ...metrics });
    const best = this.best;
    const improved = best === undefined || metrics.val_loss < best.val_loss;
    this.log(
      `validation at update ${this.step}: val_loss ${metrics.val_loss.toFixed(4)} (ppl ` +
        `${metrics.val_ppl.toFixed(2)}), accuracy ${metrics.val_acc.toFixed(4)}, ` +
        (`agreement with the teacher ${metrics.val_agree!.toFixed(4)}, KL ${metrics.val_kl!.toFixed(4)}, hidden ` +
          `cosine ${metrics.val_cos!.toFixed(4)}`) +
        `${improved ? ' (best so far)' : ` (best: ${best.val_loss.toFixed(4)} at update ${best.step})`}`,
    );
    if (!improved) return;
    this.best = { step: this.step, val_loss: metrics.val_loss };
    if (comm.rank !== 0) return;
    await this.bringWeightsHome();
    saveBestCheckpoint(opts.runDir, this.s.student, this.optimizer, this.trainerState(), this.config.teacher);
  }

  /** A checkpoint of this update (rank 0): never of weights that are not finite, let alone called good. */
  private async checkpoint(): Promise<void> {
    if (this.comm.rank !== 0) return;
    await this.bringWeightsHome();
    try {
      this.lastCheckpoint = saveCheckpoint(
        this.opts.runDir,
        this.s.student,
        this.optimizer,
        this.trainerState(),
        this.config.teacher,
        this.config.keep_checkpoints,
        this.opts.checkpointHooks,
        this.guard.lastGood(),
      );
    } catch (e) {
      if (e instanceof NonFiniteWeightsError) throw this.diverged(`${e.message} after update ${this.step}`);
      throw e;
    }
    this.guard.wroteCheckpoint(this.step, this.lastCheckpoint);
  }

  /** Checkpoints read the weights synchronously: bring them to the host first where reads are asynchronous. */
  private async bringWeightsHome(): Promise<void> {
    if (!readsSynchronously(this.s.backend.name))
      await prefetch([...this.s.student.variables(), ...this.optimizer.moments()]);
  }

  private trainerState(): TrainerState {
    const { config, comm } = this;
    return {
      format_version: CHECKPOINT_FORMAT,
      step: this.step,
      total_updates: this.s.schedule.total,
      schedule: this.s.schedule,
      cursor: this.batches.cursor,
      tokens: this.tokens,
      elapsed_s: this.elapsedS(),
      metrics_lines: this.metricsLines,
      config,
      world_size: comm.size,
      divergence_history: this.guard.history(),
      resumes: this.resumes,
      corpus_fingerprint: this.s.corpusFingerprint,
      ...(this.best ? { best: this.best } : {}),
      ...(this.lossScale ? { loss_scale: this.lossScale.state() } : {}),
    };
  }

  private elapsedS(): number {
    return (this.s.state?.elapsed_s ?? 0) + (performance.now() - this.started) / 1000;
  }

  /**
   * metrics.jsonl cut to the checkpoint's lines (updates after it are redone), config.json, and a resume that changed
   * the run recorded: in every later checkpoint's trainer_state.json, and as a line {"event":"resume",...}.
   */
  private openMetrics(): void {
    const { state, changed, config } = this.s;
    if (this.comm.rank === 0) {
      truncateMetrics(this.metricsPath, this.metricsLines);
      writeFileAtomic(join(this.opts.runDir, 'config.json'), JSON.stringify(config, null, 1) + '\n');
    }
    if (state && Object.keys(changed).length > 0) {
      const record: ResumeRecord = { step: state.step, time: new Date().toISOString(), changed };
      this.resumes.push(record);
      this.appendMetrics({ event: 'resume', ...record });
    }
  }

  private appendMetrics(line: object): void {
    if (this.comm.rank === 0) appendText(this.metricsPath, JSON.stringify(line) + '\n');
    this.metricsLines++;
  }

  private finish(stopped: boolean): TrainSummary {
    const wall = (performance.now() - this.started) / 1000;
    const { cache, comm } = this;
    const summary: TrainSummary = {
      run_dir: this.opts.runDir,
      steps: this.step,
      total_updates: this.s.schedule.total,
      final_loss: this.lastLoss,
      tokens: this.tokens,
      elapsed_s: this.elapsedS(),
      tokens_per_s: wall > 0 ? (this.tokens - (this.s.state?.tokens ?? 0)) / wall : 0,
      teacher_busy: this.teacher.busyMs / 1000 / Math.max(wall, 1e-9),
      student_busy: this.studentMs / 1000 / Math.max(wall, 1e-9),
      teacher_wait_s: this.batches.waitMs / 1000,
      backend: this.s.backend.name,
      checkpoint: this.lastCheckpoint,
      stopped,
      world_size: comm.size,
      comm_s_per_update:
        this.step > this.firstStep ? (this.commMs + this.update.allreduceMs) / 1000 / (this.step - this.firstStep) : 0,
      ...(cache ? { teacher_cache: { dir: cache.dir, hits: cache.hits, misses: cache.misses } } : {}),
    };
    if (cache)
      this.log(`teacher cache: ${cache.hits} batches read, ${cache.misses} computed and stored (${cache.dir})`);
    this.optimizer.dispose();
    this.s.student.dispose();
    return summary;
  }
}

/** --dump-batches: a new or empty folder, apart from what the run reads and writes. */
function claimDumpFolder(dir: string, others: NamedPath[]): void {
  const out: NamedPath = { path: dir, option: '--dump-batches' };
  assertApart(out, others);
  assertNotInsideRecognised(out);
  const r = recognise(dir);
  if (r.state !== 'missing' && r.state !== 'empty') {
    throw new InputError(
      `--dump-batches ${dir} already exists and holds ${describeRecognised(r)}`,
      'give --dump-batches a new or empty folder',
    );
  }
  makeDir(dir);
}

/** What a run reads: its output folder may be none of them, contain none, lie inside none. */
function runInputs(c: TrainConfig): NamedPath[] {
  return [
    { path: c.teacher, option: 'teacher (config)' },
    { path: c.corpus, option: 'corpus (config)' },
    ...(typeof c.student === 'string' ? [{ path: c.student, option: 'student (config)' }] : []),
    ...(c.valid_corpus !== null ? [{ path: c.valid_corpus, option: 'valid_corpus (config)' }] : []),
    ...(c.teacher_cache !== null ? [{ path: c.teacher_cache, option: 'teacher_cache (config)' }] : []),
    ...c.corpus_inputs
      .filter((p) => !p.startsWith('@stdlib/'))
      .map((path) => ({ path, option: 'corpus_inputs (config)' })),
  ];
}

/** One micro-batch as the student trains on it, and its dropout seed (TrainOptions.dumpBatches). */
function dumpMicroBatch(
  dir: string,
  update: number,
  micro: number,
  rank: number,
  b: MicroBatch,
  dropoutSeed: number,
): void {
  const shape = [b.rows, b.batch.seqLen];
  const name = `${String(update).padStart(4, '0')}-${micro}-r${rank}.safetensors`;
  writeSafetensors(
    join(dir, name),
    {
      masked_input_ids: { data: b.inputIds, shape, dtype: 'I32' },
      attention_mask: { data: b.attentionMask, shape, dtype: 'I32' },
      mlm_labels: { data: b.labels, shape, dtype: 'I32' },
    },
    { update: String(update), micro: String(micro), rank: String(rank), dropout_seed: String(dropoutSeed) },
  );
}

/** Keep the first `lines` lines of metrics.jsonl (updates after the checkpoint are redone on resume). */
function truncateMetrics(path: string, lines: number): void {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .slice(0, lines);
  writeFileAtomic(path, kept.map((l) => `${l}\n`).join(''));
}
