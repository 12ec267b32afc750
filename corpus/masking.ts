// DistilBERT's dynamic masking (the reference distiller's prepare_batch_mlm), per batch:
// - targets: ceil(mlm_mask_prop · real tokens in the batch) positions, drawn without replacement over the
//   whole batch, each weighted by max(count[token], 1)^-mlm_smoothing; special tokens weigh 0 (never targets);
// - each target: word_mask → [MASK], word_keep → kept, word_rand → a uniform random id;
// - labels: the original id at targets, -100 elsewhere.

import { RECIPE } from '../src/core/recipe.js';
import { IGNORE_INDEX } from '../src/core/labels.js';
import type { Rng } from './rng.js';

export interface MaskingConfig {
  /** Share of the batch's real tokens that become targets (0.15). */
  mlm_mask_prop: number;
  /** Smoothing power: a token's weight is max(count, 1)^-mlm_smoothing (0.7). */
  mlm_smoothing: number;
  /** Of the targets: replaced by [MASK] (0.8), kept (0.1), replaced by a random id (0.1). Sum 1. */
  word_mask: number;
  word_keep: number;
  word_rand: number;
}

/** The recipe's masking (src/core/recipe.ts). */
export const RECIPE_MASKING: MaskingConfig = {
  mlm_mask_prop: RECIPE.mlm_mask_prop,
  mlm_smoothing: RECIPE.mlm_smoothing,
  word_mask: RECIPE.word_mask,
  word_keep: RECIPE.word_keep,
  word_rand: RECIPE.word_rand,
};

/** Per-id sampling weights: max(count, 1)^-smoothing, 0 for special ids. */
export function tokenWeights(counts: ArrayLike<number>, specialIds: Iterable<number>, smoothing: number): Float64Array {
  const w = Float64Array.from({ length: counts.length }, (_, i) => Math.max(counts[i]!, 1) ** -smoothing);
  for (const id of specialIds) if (id >= 0 && id < w.length) w[id] = 0;
  return w;
}

export interface MaskedBatch {
  /** [B, T] input ids with the targets replaced. */
  maskedInputIds: Int32Array;
  /** [B, T] original id at targets, -100 elsewhere. */
  mlmLabels: Int32Array;
  /** Number of targets drawn. */
  targets: number;
}

/**
 * Mask a padded batch. `inputIds`, `attentionMask`: [B, T] row-major. Draws from `rng` (its state moves on).
 * Sampling without replacement with weights uses Efraimidis–Spirakis keys u^(1/w): the k largest keys are a
 * draw with the same law as k successive weighted draws without replacement (torch.multinomial's).
 */
export function maskBatch(
  inputIds: Int32Array,
  attentionMask: Int32Array,
  weights: Float64Array,
  maskId: number,
  vocabSize: number,
  config: MaskingConfig,
  rng: Rng,
): MaskedBatch {
  const n = inputIds.length;
  let real = 0;
  for (let i = 0; i < n; i++) real += attentionMask[i] === 1 ? 1 : 0;
  const wanted = Math.ceil(config.mlm_mask_prop * real);
  // Keys for every eligible position: log(u)/w, larger is picked first.
  const keys: { pos: number; key: number }[] = [];
  for (let i = 0; i < n; i++) {
    const u = rng.next();
    if (attentionMask[i] !== 1) continue;
    const w = weights[inputIds[i]!] ?? 0;
    if (w <= 0) continue;
    keys.push({ pos: i, key: Math.log(u === 0 ? Number.MIN_VALUE : u) / w });
  }
  const k = Math.min(wanted, keys.length);
  keys.sort((a, b) => b.key - a.key || a.pos - b.pos);
  const maskedInputIds = Int32Array.from(inputIds);
  const mlmLabels = new Int32Array(n).fill(IGNORE_INDEX);
  const targets = keys
    .slice(0, k)
    .map((x) => x.pos)
    .sort((a, b) => a - b);
  for (const pos of targets) {
    mlmLabels[pos] = inputIds[pos]!;
    const r = rng.next();
    const randomId = rng.int(vocabSize);
    if (r < config.word_mask) maskedInputIds[pos] = maskId;
    else if (r < config.word_mask + config.word_keep) maskedInputIds[pos] = inputIds[pos]!;
    else maskedInputIds[pos] = randomId;
  }
  return { maskedInputIds, mlmLabels, targets: k };
}
