// The losses of the objective, by name: the one list that says which there are, the config key of each one's
// weight, the order of the packed tensor (the kernel's and the objective's output, read at once) and the names
// metrics.jsonl gives them (loss, loss_ce, ...). Adding a loss: its file in losses/ (and its test), one line here,
// its line in losses/total.ts's `terms`, its weight in src/config.ts's CONFIG_SPEC (the compiler asks for both),
// then `npm run schema` (configs/schema.json, docs/config.md) and the formula in docs/training.md.

/** Each loss of the objective and the key of its weight (src/config.ts), in the packed tensor's order. */
export const LOSS_WEIGHTS = {
  ce: 'alpha_ce',
  mlm: 'alpha_mlm',
  cos: 'alpha_cos',
  mse: 'alpha_mse',
  hidden: 'alpha_hidden',
  att: 'alpha_attention',
  vr: 'alpha_value_relation',
} as const;

export type LossName = keyof typeof LOSS_WEIGHTS;
/** alpha_ce, alpha_mlm, ...: the config keys of the weights. */
export type LossWeightKey = (typeof LOSS_WEIGHTS)[LossName];
/** Every loss's weight, by its config key. */
export type LossWeightValues = Record<LossWeightKey, number>;

/** The weighted total and each loss of the objective. */
export type Losses = Record<'total' | LossName, number>;

/** The order of the losses in the objective's packed tensor (losses/total.ts `packed`): the total, then the losses. */
export const LOSS_ORDER = ['total', ...(Object.keys(LOSS_WEIGHTS) as LossName[])] as const;

/** The config keys of the weights, in LOSS_ORDER. */
export const LOSS_WEIGHT_KEYS: readonly LossWeightKey[] = Object.values(LOSS_WEIGHTS);

/** The recipe's losses: metrics.jsonl always reports them; any other loss only when its weight is above 0. */
const ALWAYS_REPORTED = ['ce', 'mlm', 'cos', 'mse'] as const satisfies readonly LossName[];
type ReportedLoss = (typeof ALWAYS_REPORTED)[number];

/** The loss fields of a metrics line: loss, loss_ce, ...; `loss_${name}` for every loss. */
export type LossMetrics = { loss: number } & Record<`loss_${ReportedLoss}`, number> &
  Partial<Record<`loss_${Exclude<LossName, ReportedLoss>}`, number>>;

/** Every weight 0: a loss beyond the recipe is off unless a config sets its weight. */
export function zeroWeights(): LossWeightValues {
  return Object.fromEntries(LOSS_WEIGHT_KEYS.map((k) => [k, 0])) as LossWeightValues;
}

export function zeroLosses(): Losses {
  return Object.fromEntries(LOSS_ORDER.map((k) => [k, 0])) as Losses;
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

/**
 * As metrics.jsonl and eval-batch name them: loss, loss_ce, ...: the recipe's four always, any other loss when
 * its weight in `weights` is above 0 (every loss when `weights` is absent).
 */
export function lossFields(l: Losses, weights?: LossWeightValues): LossMetrics {
  const fields: Record<string, number> = { loss: l.total };
  for (const name of Object.keys(LOSS_WEIGHTS) as LossName[]) {
    const always = (ALWAYS_REPORTED as readonly LossName[]).includes(name);
    if (always || weights === undefined || weights[LOSS_WEIGHTS[name]] > 0) fields[`loss_${name}`] = l[name];
  }
  return fields as LossMetrics;
}
