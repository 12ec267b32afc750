// Divergence caught before NaN. Each update's loss and gradient norm are compared with their medians over the
// normal updates before it (the last 20); beyond `factor` times either, for `patience` updates in a row, the
// run is diverging. A checkpoint is known to be good once the update after it (whose loss its weights gave)
// was normal: the guard names that one,
// and the run sets later checkpoints aside so that --resume continues from it.

const WINDOW = 20;

export interface Verdict {
  /** This update is beyond the factor (or not finite). */
  abnormal: boolean;
  /** The run has diverged: `patience` abnormal updates in a row, or a loss that is not finite. */
  diverged: boolean;
  /** The first update of the abnormal streak. */
  streakStart: number;
  /** The medians the update was compared with. */
  medianLoss: number;
  medianGradNorm: number;
}

/** The recent levels a guard compares with. */
export interface GuardHistory {
  losses: number[];
  grad_norms: number[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
}

export class DivergenceGuard {
  private readonly losses: number[] = [];
  private readonly norms: number[] = [];
  private streak = 0;
  private streakStart = 0;
  private pending: { step: number; path: string } | undefined;
  private good: string | undefined;

  /**
   * `factor` 0 turns the comparison off (a non-finite loss still diverges). `resumedFrom`: known good, with the
   * recent levels recorded in its checkpoint (`history()` then), so a resumed run judges its first updates too.
   */
  constructor(
    private readonly factor: number,
    private readonly patience: number,
    resumedFrom?: string,
    history?: GuardHistory,
  ) {
    this.good = resumedFrom;
    if (history) {
      this.losses.push(...history.losses.slice(-WINDOW));
      this.norms.push(...history.grad_norms.slice(-WINDOW));
    }
  }

  /** The normal updates' recent losses and gradient norms (saved in checkpoints). */
  history(): GuardHistory {
    return { losses: [...this.losses], grad_norms: [...this.norms] };
  }

  /** The loss and gradient norm of update `step` (computed with the weights after update step − 1). */
  observe(step: number, loss: number, gradNorm: number): Verdict {
    const medianLoss = median(this.losses);
    const medianGradNorm = median(this.norms);
    const finite = Number.isFinite(loss) && Number.isFinite(gradNorm);
    const beyond =
      this.factor > 0 &&
      this.losses.length >= 2 &&
      (loss > this.factor * medianLoss || gradNorm > this.factor * medianGradNorm);
    const abnormal = !finite || beyond;
    // The checkpoint of the weights this update ran on is good if the update was normal, and never otherwise.
    if (this.pending && this.pending.step === step - 1) {
      if (!abnormal) this.good = this.pending.path;
      this.pending = undefined;
    }
    if (abnormal) {
      if (this.streak === 0) this.streakStart = step;
      this.streak++;
    } else {
      this.streak = 0;
      this.losses.push(loss);
      this.norms.push(gradNorm);
      if (this.losses.length > WINDOW) {
        this.losses.shift();
        this.norms.shift();
      }
    }
    return {
      abnormal,
      diverged: !finite || this.streak >= this.patience,
      streakStart: this.streakStart,
      medianLoss,
      medianGradNorm,
    };
  }

  /** A checkpoint was written after update `step` (good if update step + 1, which runs on its weights, is normal). */
  wroteCheckpoint(step: number, path: string): void {
    this.pending = { step, path };
  }

  /** The newest checkpoint known to be good. */
  lastGood(): string | undefined {
    return this.good;
  }

  /** Whether the current update is part of an abnormal streak (no checkpoint is written then). */
  inStreak(): boolean {
    return this.streak > 0;
  }
}
