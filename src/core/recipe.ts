// The DistilBERT recipe's values (the reference recipe: the DistilBERT release, not the reference code's
// defaults), written once. The run config's defaults (src/config.ts), the losses' weights
// (losses/total.ts RECIPE_LOSS_WEIGHTS) and the masking split (corpus/masking.ts RECIPE_MASKING) read them here.
export const RECIPE = {
  /** Softmax temperature τ of the distillation KL. */
  temperature: 2.0,
  /** Weight of the distillation KL (τ²·KL(softmax(t/τ) ‖ softmax(s/τ)), mean over rows). */
  alpha_ce: 5.0,
  /** Weight of the masked-LM cross-entropy. */
  alpha_mlm: 2.0,
  /** Weight of the cosine loss between the last hidden states. */
  alpha_cos: 1.0,
  /** Weight of the logit MSE (off in the recipe). */
  alpha_mse: 0.0,
  /** The KL over every real token, not only the masked ones. */
  restrict_ce_to_mask: false,
  /** Share of real tokens chosen as MLM targets. */
  mlm_mask_prop: 0.15,
  /** Targets drawn with weight max(count, 1)^-mlm_smoothing. */
  mlm_smoothing: 0.7,
  /** Of the targets: replaced by [MASK] ... */
  word_mask: 0.8,
  /** ... kept as they are ... */
  word_keep: 0.1,
  /** ... replaced by a random token. */
  word_rand: 0.1,
  /** Sequences per GPU per micro-batch. */
  batch_size: 5,
  /** Micro-batches per update (5 × 50 × 8 GPUs = 2000 sequences an update). */
  grad_accum: 50,
  /** AdamW's peak learning rate. */
  lr: 5e-4,
  /** AdamW's betas. */
  betas: [0.9, 0.98] as [number, number],
  /** AdamW's epsilon. */
  eps: 1e-6,
  /** AdamW's decoupled weight decay. */
  weight_decay: 0.0,
  /** Share of the updates spent warming up. */
  warmup_prop: 0.05,
  /** Passes over the corpus. */
  epochs: 3,
  /** Gradient clipping at this global norm. */
  max_grad_norm: 5.0,
  /** The seed of every random draw. */
  seed: 56,
  /** The student's dropout (DistilBERT's config). */
  dropout: 0.1,
};
