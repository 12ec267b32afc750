// What a run takes (TrainOptions) and gives (TrainSummary, one UpdateMetrics per line of metrics.jsonl).

import type { LossMetrics } from '../../losses/record.js';
import type { TrainConfig } from '../config.js';
import type { Communicator } from '../parallel/communicator.js';
import type { CheckpointHooks } from './checkpoint.js';

/**
 * One line of metrics.jsonl: the update's losses (loss, loss_ce, loss_mlm, loss_cos, loss_mse; any other loss of
 * losses/record.ts when its weight is above 0) and the rest.
 */
export interface UpdateMetrics extends LossMetrics {
  step: number;
  lr: number;
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

/** What a run is doing: setting up, preparing its corpus, training, or validating. */
export type TrainPhase = 'setup' | 'preparing' | 'training' | 'validating';
