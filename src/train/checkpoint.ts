// Checkpoints: everything needed to resume a run exactly.
//   RUN/checkpoints/step-00000100/
//     config.json, model.safetensors, tokenizer files   the student, a Hugging Face DistilBERT folder
//     optimizer.safetensors                              AdamW moments (exp_avg.NAME, exp_avg_sq.NAME; HF layout)
//     trainer_state.json                                 step, schedule, data cursor, RNG seed, run config (last)
//   RUN/checkpoints/best/                                the same, at the evaluation with the lowest val_loss so far
// A checkpoint is written into NAME.tmp-PID/ and renamed when complete: a folder without the .tmp suffix
// is always whole, and an interrupted write leaves only a .tmp folder, which is never loaded.

import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { DistillError, FileFormatError } from '../core/errors.js';
import { markFolder, verifyFolder } from '../core/folders.js';
import { makeDir, removePath, renamePath, tempNameFor, writeFileAtomic, writingTemp } from '../core/out.js';
import { readJsonObject } from '../core/model-dir.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../core/safetensors.js';
import type { TrainConfig } from '../config.js';
import type { AdamW, Schedule } from './adamw.js';
import type { GuardHistory } from './divergence.js';
import type { LossScaleState } from './loss-scale.js';
import type { Cursor } from '../../corpus/reader.js';
import type { DistilBertStudent } from '../../student/model.js';
import { transpose2d } from '../core/math.js';
import { copyTokenizerFiles, saveStudent } from '../../student/io.js';

export const CHECKPOINT_FORMAT = 1;

export interface TrainerState {
  format_version: number;
  /** Updates done. */
  step: number;
  /** Updates the schedule runs over (warm-up and decay are fractions of it). */
  total_updates: number;
  /**
   * The learning-rate schedule (absent in checkpoints written
   * before resumes could change it: warm-up from warmup_prop).
   */
  schedule?: Schedule;
  /** The divergence guard's recent normal levels, so a resumed run is judged against them. */
  divergence_history?: GuardHistory;
  /** What each resume changed (`--resume --set`), oldest first. */
  resumes?: ResumeRecord[];
  /**
   * Where the next micro-batch comes from. Every random draw (data order, masks, dropout) derives from (seed,
   * position), so this and the seed are the whole RNG state.
   */
  cursor: Cursor;
  /** Real tokens trained on so far (all ranks). */
  tokens: number;
  /** Training seconds so far. */
  elapsed_s: number;
  /** Lines of metrics.jsonl that belong to the updates up to `step`. */
  metrics_lines: number;
  config: TrainConfig;
  world_size: number;
  /** The evaluation with the lowest val_loss so far (checkpoints/best holds its weights). */
  best?: { step: number; val_loss: number };
  /** precision fp16-mixed: the loss scale reached (the next update's) and its count of finite updates. */
  loss_scale?: LossScaleState;
  /** SHA-256 of the corpus's meta.json (and the validation corpus's): a resume refuses a corpus that changed. */
  corpus_fingerprint?: string;
}

/** One resume that changed the run: at which update, and each changed key's old and new value. */
export interface ResumeRecord {
  step: number;
  time: string;
  changed: Record<string, { from: unknown; to: unknown }>;
}

export interface CheckpointHooks {
  /** Called after the weights are written, before the state file and the rename (tests simulate a crash here). */
  beforeCommit?: () => void;
}

function checkpointsDir(runDir: string): string {
  return join(runDir, 'checkpoints');
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

/** Complete checkpoints of a run, oldest first. */
export function listCheckpoints(runDir: string): string[] {
  const dir = checkpointsDir(runDir);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /^step-\d{8}$/.test(f) && existsSync(join(dir, f, 'trainer_state.json')))
    .sort()
    .map((f) => join(dir, f));
}

export function latestCheckpoint(runDir: string): string | undefined {
  return listCheckpoints(runDir).at(-1);
}

/**
 * The checkpoint --resume continues: the latest complete one
 * in the run folder (an error names the folder when none is).
 */
export function checkpointToResume(runDir: string): string {
  const checkpoint = latestCheckpoint(runDir);
  if (!checkpoint)
    throw new DistillError(
      `--resume: ${checkpointsDir(runDir)} holds no complete checkpoint`,
      'start without --resume, or point --out at the run folder',
    );
  return checkpoint;
}

/** The folder of the best checkpoint (the lowest val_loss so far). */
export function bestCheckpointDir(runDir: string): string {
  return join(checkpointsDir(runDir), 'best');
}

/** Remove folders left by interrupted checkpoint writes. */
export function removeIncompleteCheckpoints(runDir: string): void {
  const dir = checkpointsDir(runDir);
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) if (/\.tmp-\d+$/.test(f)) removePath(join(dir, f));
}

/**
 * Write the checkpoint of `state.step`, then prune to the newest `keep`, never removing `protect` (the last
 * checkpoint known to be good, while later ones are not yet).
 */
export function saveCheckpoint(
  runDir: string,
  student: DistilBertStudent,
  optimizer: AdamW,
  state: TrainerState,
  tokenizerDir: string,
  keep: number,
  hooks: CheckpointHooks = {},
  protect?: string,
): string {
  const final = writeCheckpointFolder(
    join(checkpointsDir(runDir), checkpointName(state.step)),
    student,
    optimizer,
    state,
    tokenizerDir,
    hooks,
  );
  const all = listCheckpoints(runDir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) if (old !== protect) removePath(old);
  return final;
}

/** Write checkpoints/best (replacing the one before): the state of the evaluation with the lowest val_loss. */
export function saveBestCheckpoint(
  runDir: string,
  student: DistilBertStudent,
  optimizer: AdamW,
  state: TrainerState,
  tokenizerDir: string,
): string {
  return writeCheckpointFolder(bestCheckpointDir(runDir), student, optimizer, state, tokenizerDir, {});
}

/**
 * Write one complete checkpoint folder at `final`, atomically: NAME.tmp-PID, marked with each file's size and
 * SHA-256 (checked on --resume), then renamed. A write that fails (a full disk) removes the temp; the checkpoints
 * before it are untouched.
 */
function writeCheckpointFolder(
  final: string,
  student: DistilBertStudent,
  optimizer: AdamW,
  state: TrainerState,
  tokenizerDir: string,
  hooks: CheckpointHooks,
): string {
  makeDir(join(final, '..'));
  const tmp = tempNameFor(final);
  removePath(tmp);
  return writingTemp(tmp, () => {
    saveStudent(student, tmp, { distill_step: String(state.step) });
    copyTokenizerFiles(tokenizerDir, tmp);
    const moments = new Map<string, TensorToWrite>();
    student.specs.forEach((spec, i) => {
      const toHf = (v: tf.Variable): Float32Array => {
        const data = v.dataSync() as Float32Array;
        return spec.linear ? transpose2d(data, spec.hfShape[1]!, spec.hfShape[0]!) : Float32Array.from(data);
      };
      moments.set(`exp_avg.${spec.name}`, { data: toHf(optimizer.expAvg[i]!), shape: spec.hfShape, dtype: 'F32' });
      moments.set(`exp_avg_sq.${spec.name}`, { data: toHf(optimizer.expAvgSq[i]!), shape: spec.hfShape, dtype: 'F32' });
    });
    writeSafetensors(join(tmp, 'optimizer.safetensors'), moments, { step: String(optimizer.step) });
    hooks.beforeCommit?.();
    writeFileAtomic(join(tmp, 'trainer_state.json'), JSON.stringify(state, null, 1) + '\n');
    markFolder(tmp, 'checkpoint', true);
    removePath(final);
    renamePath(tmp, final);
    return final;
  });
}

/**
 * Set aside (rename to step-N.diverged, never delete) every complete checkpoint written after `good` (all of
 * them when `good` is undefined), so that --resume continues from `good`. Returns the new paths.
 */
export function setAsideCheckpointsAfter(runDir: string, good: string | undefined): string[] {
  const moved: string[] = [];
  const all = listCheckpoints(runDir);
  const goodIndex = good ? all.indexOf(good) : -1;
  for (const path of all.slice(goodIndex + 1)) {
    renamePath(path, `${path}.diverged`);
    moved.push(`${path}.diverged`);
  }
  return moved;
}

/** A checkpoint whole and readable, but in a layout this version of distill does not read. */
class CheckpointVersionError extends FileFormatError {}

export function readTrainerState(checkpoint: string): TrainerState {
  const path = join(checkpoint, 'trainer_state.json');
  const state = readJsonObject(path) as unknown as TrainerState;
  if (state.format_version !== CHECKPOINT_FORMAT) {
    throw new CheckpointVersionError(
      path,
      `format_version ${state.format_version}, this distill reads ${CHECKPOINT_FORMAT}`,
      'the checkpoint was written by another version of distill: resume it with that version',
    );
  }
  return state;
}

/** Whether each file of `checkpoint` still has the size and SHA-256 recorded when it was written. */
function verifies(checkpoint: string): boolean {
  try {
    verifyFolder(checkpoint);
    return true;
  } catch {
    return false;
  }
}

/**
 * `read(checkpoint)`, the checkpoint a run resumes from. Checkpoints are written whole or not at all, so a file in one
 * that does not read, or whose checksum differs from the one recorded when it was written, was damaged afterwards (a
 * disk, a copy, a hand edit): the error names the file, and the hint says how to go on without it: from the last
 * earlier checkpoint whose files verify, or from the start.
 */
export function readingCheckpoint<T>(runDir: string, checkpoint: string, read: (checkpoint: string) => T): T {
  try {
    return read(checkpoint);
  } catch (e) {
    if (!(e instanceof FileFormatError) || e instanceof CheckpointVersionError) throw e;
    const all = listCheckpoints(runDir);
    const before = all.slice(0, all.indexOf(checkpoint)).reverse().find(verifies);
    throw new DistillError(
      e.message,
      before
        ? `the checkpoint is damaged: move it aside (mv ${checkpoint} ${checkpoint}.damaged) and --resume continues ` +
            `from ${before}, the last checkpoint whose files verify`
        : 'the checkpoint is damaged and the run has no earlier one that verifies: ' +
            'start over with --force (the run is moved aside, not deleted)',
    );
  }
}

/** Check each file of the checkpoint a run resumes from against the checksums recorded when it was written. */
export function verifyCheckpoint(runDir: string, checkpoint: string): void {
  readingCheckpoint(runDir, checkpoint, verifyFolder);
}

/** Put the saved AdamW moments and step into `optimizer` (whose params are `student`'s, in spec order). */
export function restoreOptimizer(checkpoint: string, student: DistilBertStudent, optimizer: AdamW): void {
  const file = SafetensorsFile.read(join(checkpoint, 'optimizer.safetensors'));
  student.specs.forEach((spec, i) => {
    const load = (name: string, v: tf.Variable): void => {
      const data = file.getFloat32(name, spec.hfShape);
      const values = spec.linear ? transpose2d(data, spec.hfShape[0]!, spec.hfShape[1]!) : data;
      tf.tidy(() => v.assign(tf.tensor(values, v.shape)));
    };
    load(`exp_avg.${spec.name}`, optimizer.expAvg[i]!);
    load(`exp_avg_sq.${spec.name}`, optimizer.expAvgSq[i]!);
  });
  optimizer.step = Number(file.metadata['step'] ?? '0');
}
