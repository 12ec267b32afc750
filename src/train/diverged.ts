// The error that stops a diverging run (src/train/divergence.ts judges it).

import { DistillError } from '../core/errors.js';
import { setAsideCheckpointsAfter } from './checkpoint.js';

/** The run diverged: the message says how, the hint which checkpoint is good and how to go on. */
export class TrainingDivergedError extends DistillError {
  /**
   * The error for `message`, naming `good`, the last checkpoint known to be good; with `runDir` (rank 0), the
   * checkpoints written after it are set aside first (step-N.diverged,
   * not deleted), so that --resume continues from it.
   */
  static naming(message: string, good: string | undefined, runDir: string | undefined): TrainingDivergedError {
    const setAside = runDir ? setAsideCheckpointsAfter(runDir, good) : [];
    const aside =
      setAside.length > 0
        ? ` (${setAside.length} later checkpoint${setAside.length > 1 ? 's' : ''} set aside as *.diverged, not deleted)`
        : '';
    return new TrainingDivergedError(
      `${message}: training stopped`,
      good
        ? `the last checkpoint known to be good is ${good}${aside}; --resume continues from it, or start over with a ` +
            `lower lr or a longer warmup_prop (--force moves this run aside)`
        : `no checkpoint was written before it${aside}; ` +
            `start over with a lower lr or a longer warmup_prop (--force moves this run aside)`,
    );
  }
}
