// The loss scale of precision "fp16-mixed" (student/kernels/matmul-webgpu.ts), dynamic as PyTorch's GradScaler:
//
//   the loss is multiplied by `scale` (a power of 2) before the backward pass, so that small gradients keep
//   f16's precision in the products (its normal range starts at 6.1e-5); the gradients stay scaled and the norm,
//   the clipping and AdamW take 1/scale as a factor (exact: a power of 2; src/train/step.ts).
//   an update whose gradients are not finite (an operand beyond f16's 65504) is skipped: nothing applied, not
//     the weights, not AdamW's moments or step; the scale halves.
//   after `growthInterval` finite updates in a row the scale doubles (up to MAX_LOSS_SCALE), to find again the
//     highest scale that fits.
//
// growthInterval 0 keeps the scale static: an overflow stops the run instead (HalfPrecisionOverflow names the
// fix). An overflow at scale 1 stops it too: the activations themselves, not the scaled gradients, overflow.
// The state (scale, finite updates since the last change) is saved in every checkpoint, so a resumed run goes
// on with the scale it had reached.

/** The highest scale (the config's schema maximum): 2²⁴ times a gradient of 2⁻²⁴, f16's smallest, is 1. */
export const MAX_LOSS_SCALE = 2 ** 24;

/** What a checkpoint keeps (trainer_state.json's `loss_scale`). */
export interface LossScaleState {
  /** The scale the next update uses. */
  scale: number;
  /** Finite updates in a row since the scale last changed. */
  finite_updates: number;
}

export class LossScale {
  private current: number;
  private finiteInARow: number;

  /**
   * `scale`: a power of 2 in [1, MAX_LOSS_SCALE]; `growthInterval` 0:
   * static. `state`: a checkpoint's, to continue from.
   */
  constructor(
    scale: number,
    readonly growthInterval: number,
    state?: LossScaleState,
  ) {
    const start = state?.scale ?? scale;
    if (!(start >= 1 && start <= MAX_LOSS_SCALE) || 2 ** Math.round(Math.log2(start)) !== start) {
      throw new RangeError(`LossScale: ${start} is not a power of 2 in [1, 2^24]`);
    }
    if (!(Number.isInteger(growthInterval) && growthInterval >= 0))
      throw new RangeError(`LossScale: growth interval ${growthInterval} is not an integer ≥ 0`);
    this.current = start;
    this.finiteInARow = state?.finite_updates ?? 0;
  }

  get value(): number {
    return this.current;
  }

  get dynamic(): boolean {
    return this.growthInterval > 0;
  }

  /** An update with finite gradients was applied. Returns true when the scale doubled after it. */
  finite(): boolean {
    if (!this.dynamic) return false;
    this.finiteInARow++;
    if (this.finiteInARow < this.growthInterval || this.current >= MAX_LOSS_SCALE) return false;
    this.current *= 2;
    this.finiteInARow = 0;
    return true;
  }

  /**
   * The gradients of an update overflowed. Returns true when the update may be skipped with the scale halved;
   * false when the run must stop (a static scale, or scale 1 already).
   */
  overflow(): boolean {
    if (!this.dynamic || this.current <= 1) return false;
    this.current /= 2;
    this.finiteInARow = 0;
    return true;
  }

  state(): LossScaleState {
    return { scale: this.current, finite_updates: this.finiteInARow };
  }
}
