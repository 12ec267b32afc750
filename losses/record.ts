// The losses of a micro-batch or an update, by name: from the objective (one tensor, read at once) to the update's
// sums, to metrics.jsonl (loss, loss_ce, ...). The one place that says in what order the packed tensor holds them.

/** The weighted total and each loss of the objective. */
export interface Losses {
  total: number;
  ce: number;
  mlm: number;
  cos: number;
  mse: number;
  hidden: number;
  att: number;
  vr: number;
}

/** The order of the losses in the objective's packed tensor (losses/total.ts `packed`). */
export const LOSS_ORDER = [
  'total',
  'ce',
  'mlm',
  'cos',
  'mse',
  'hidden',
  'att',
  'vr',
] as const satisfies readonly (keyof Losses)[];

export function zeroLosses(): Losses {
  return { total: 0, ce: 0, mlm: 0, cos: 0, mse: 0, hidden: 0, att: 0, vr: 0 };
}

/** The packed tensor's values, by name. */
export function lossesFromPacked(v: ArrayLike<number>): Losses {
  const out = zeroLosses();
  LOSS_ORDER.forEach((k, i) => {
    out[k] = v[i]!;
  });
  return out;
}

/** sum += part / divisor, loss by loss (the update's means: each micro-batch's divided by grad_accum). */
export function addLosses(sum: Losses, part: Losses, divisor = 1): void {
  for (const k of LOSS_ORDER) sum[k] += part[k] / divisor;
}

/** As metrics.jsonl and eval-batch name them: loss, loss_ce, ...; the intermediate-layer losses when a run has them. */
export function lossFields(l: Losses, intermediate: boolean): Record<string, number> {
  return {
    loss: l.total,
    loss_ce: l.ce,
    loss_mlm: l.mlm,
    loss_cos: l.cos,
    loss_mse: l.mse,
    ...(intermediate ? { loss_hidden: l.hidden, loss_att: l.att, loss_vr: l.vr } : {}),
  };
}
