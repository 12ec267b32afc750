// The run folder: one owner (src/core/lock.ts), and what a new run may start in. A fresh run starts in a new or
// empty folder, or in a run folder whose earlier start failed before its first update (nothing to lose there); a
// folder that holds a run is continued (--resume) or, with --force, moved aside (never deleted). A folder that is
// not a run (a teacher, a corpus, a model, anything distill did not make) is refused, and never offered --force.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DistillError, InputError } from '../core/errors.js';
import {
  assertApart,
  assertNotInsideRecognised,
  describeRecognised,
  markFolder,
  moveAside,
  recognise,
  type NamedPath,
} from '../core/folders.js';
import { acquireFolderLock } from '../core/lock.js';
import { makeDir, removePath, renamePath } from '../core/out.js';

/** Whether `runDir` holds a run: updates in its metrics, or checkpoints. */
export function holdsRun(runDir: string): boolean {
  const metrics = join(runDir, 'metrics.jsonl');
  if (existsSync(metrics) && statSync(metrics).size > 0) return true;
  const checkpoints = join(runDir, 'checkpoints');
  return existsSync(checkpoints) && readdirSync(checkpoints).length > 0;
}

/** --resume names a run folder: else the error says what the folder holds and how to go on. */
export function assertRunToResume(runDir: string): void {
  const r = recognise(runDir);
  if (r.state === 'distill' && r.kind === 'run') return;
  throw new DistillError(
    r.state === 'missing' || r.state === 'empty'
      ? `--resume: ${runDir} holds no run to continue`
      : `--resume: ${runDir} is not a run folder: it holds ${describeRecognised(r)}`,
    'point --out at the folder of the run to continue (the --out it was started with), or start a run without --resume',
  );
}

export interface RunFolder {
  /** Releases the lock; removes the folder too when this start made it and no update was recorded (a failed start). */
  release(): void;
  /** Where --force moved the old run. */
  movedAside?: string;
}

/**
 * Claim `runDir` for a run (rank 0): checked against the run's inputs, locked, and made ready as --resume or --force
 * asks. Throws before anything is changed when the folder is not the run's to use.
 */
export function claimRunFolder(
  runDir: string,
  o: { resume: boolean; force: boolean; inputs: NamedPath[]; log: (line: string) => void },
): RunFolder {
  const out: NamedPath = { path: runDir, option: '--out' };
  assertApart(out, o.inputs);
  assertNotInsideRecognised(out);
  const r = recognise(runDir);
  const isRun = r.state === 'distill' && r.kind === 'run';
  if (o.resume) assertRunToResume(runDir);
  if (!isRun && r.state !== 'missing' && r.state !== 'empty') {
    throw new InputError(
      r.state === 'file'
        ? `--out ${runDir} is a file, where the run folder goes`
        : `--out ${runDir} already exists and holds ${describeRecognised(r)}, not a run`,
      'choose a new or empty folder for --out: distill never moves or overwrites a folder it did not make',
    );
  }
  const created = r.state === 'missing';
  const wasEmpty = r.state === 'empty';
  makeDir(runDir);
  // The lock first: a live run in the folder is named before anything is moved.
  let releaseLock = acquireFolderLock(runDir, 'train', o.log);
  let movedAside: string | undefined;
  if (isRun && !o.resume && holdsRun(runDir)) {
    if (!o.force) {
      releaseLock();
      throw new DistillError(
        `${runDir} already holds a run (its metrics or checkpoints)`,
        'continue it with --resume, start over with --force (the old ' +
          'run is moved aside, not deleted), or choose another --out',
      );
    }
    releaseLock();
    movedAside = moveAside(runDir);
    o.log(`--force: the run in ${runDir} was moved to ${movedAside}`);
    makeDir(runDir);
    releaseLock = acquireFolderLock(runDir, 'train', o.log);
  }
  if (!o.resume) markFolder(runDir, 'run', false);
  return {
    release: () => {
      releaseLock();
      if (holdsRun(runDir)) return;
      // A start that failed before its first update: the folder goes back to what it was.
      if (created) removePath(runDir);
      if (wasEmpty) for (const f of readdirSync(runDir)) removePath(join(runDir, f));
      if (movedAside) {
        removePath(runDir);
        renamePath(movedAside, runDir);
      }
    },
    ...(movedAside ? { movedAside } : {}),
  };
}
