// The student's architecture: a DistilBERT (DistilBertForMaskedLM). Field names follow transformers'
// DistilBertConfig so that config.json round-trips.

import { join } from 'node:path';
import { FileFormatError } from '../src/core/errors.js';
import { readJsonObject } from '../src/core/model-dir.js';

export interface StudentConfig {
  /** Vocabulary size (rows of the word embeddings and of the tied projector). */
  vocab_size: number;
  /** Hidden size H (the teacher's hidden size: the student is initialised from it). */
  dim: number;
  /** Number of transformer layers (DistilBERT: half the teacher's). */
  n_layers: number;
  /** Attention heads; dim must be a multiple of it. */
  n_heads: number;
  /** Feed-forward inner size (BERT's intermediate_size). */
  hidden_dim: number;
  /** Learned position embeddings: the longest sequence the student takes. */
  max_position_embeddings: number;
  /** Dropout on embeddings, attention output and FFN output while training (0.1). */
  dropout: number;
  /** Dropout on the attention probabilities while training (0.1). */
  attention_dropout: number;
  /** Hidden activation: "gelu" (erf form), as BERT. */
  activation: 'gelu';
  /** [PAD] id (written to config.json for transformers). */
  pad_token_id: number;
  /** Initialiser std for weights not copied from the teacher (0.02, as transformers). */
  initializer_range: number;
  /**
   * Training only: the teacher's hidden size when it differs from `dim` and a loss compares hidden states
   * (alpha_hidden, alpha_cos). The student then holds a learned projection [dim → projection_dim]
   * (`distill.hidden_projection.*`, saved beside the model in distill_projection.safetensors, dropped at export).
   * Written to config.json as `distill_projection_dim`; absent: no projection.
   */
  projection_dim?: number;
}

/** LayerNorm epsilon of DistilBERT (fixed in transformers' DistilBERT code). */
export const LAYER_NORM_EPS = 1e-12;

export function validateStudentConfig(c: StudentConfig, source: string): StudentConfig {
  const positive = ['vocab_size', 'dim', 'n_layers', 'n_heads', 'hidden_dim', 'max_position_embeddings'] as const;
  for (const k of positive) {
    if (!Number.isInteger(c[k]) || c[k] <= 0)
      throw new FileFormatError(source, `field "${k}" is ${JSON.stringify(c[k])}, expected a positive whole number`);
  }
  if (c.dim % c.n_heads !== 0)
    throw new FileFormatError(source, `field "dim" ${c.dim} is not a multiple of "n_heads" ${c.n_heads}`);
  for (const k of ['dropout', 'attention_dropout'] as const) {
    if (typeof c[k] !== 'number' || c[k] < 0 || c[k] >= 1)
      throw new FileFormatError(source, `field "${k}" is ${JSON.stringify(c[k])}, expected a number in [0, 1)`);
  }
  if (c.projection_dim !== undefined && (!Number.isInteger(c.projection_dim) || c.projection_dim <= 0)) {
    throw new FileFormatError(
      source,
      `field "distill_projection_dim" is ${JSON.stringify(c.projection_dim)}, expected a positive whole number`,
    );
  }
  if (c.activation !== 'gelu')
    throw new FileFormatError(
      source,
      `field "activation" is ${JSON.stringify(c.activation)}; only "gelu" is supported`,
    );
  return c;
}

/** Read a DistilBERT config.json (as transformers writes it). */
export function readStudentConfig(dir: string): StudentConfig {
  const path = join(dir, 'config.json');
  const j = readJsonObject(path);
  if (j['model_type'] !== 'distilbert') {
    throw new FileFormatError(
      path,
      `field "model_type" is ${JSON.stringify(j['model_type'])}, expected "distilbert"`,
      'a student folder is what `distill init-student` or a checkpoint writes; for a BERT teacher folder use --teacher',
    );
  }
  const num = (k: string, dflt?: number): number => {
    const v = j[k] ?? dflt;
    if (typeof v !== 'number')
      throw new FileFormatError(
        path,
        `field "${k}" is ${v === undefined ? 'missing' : JSON.stringify(v)}, expected a number`,
      );
    return v;
  };
  return validateStudentConfig(
    {
      vocab_size: num('vocab_size'),
      dim: num('dim'),
      n_layers: num('n_layers'),
      n_heads: num('n_heads'),
      hidden_dim: num('hidden_dim'),
      max_position_embeddings: num('max_position_embeddings'),
      dropout: num('dropout', 0.1),
      attention_dropout: num('attention_dropout', 0.1),
      activation: (j['activation'] ?? 'gelu') as 'gelu',
      pad_token_id: num('pad_token_id', 0),
      initializer_range: num('initializer_range', 0.02),
      ...(j['distill_projection_dim'] !== undefined ? { projection_dim: num('distill_projection_dim') } : {}),
    },
    path,
  );
}

/**
 * config.json for transformers' DistilBertForMaskedLM. `distill_projection_dim` (a key transformers keeps and
 * ignores) is written while training; `forExport` leaves it out, as export leaves out the projection.
 */
export function studentConfigJson(c: StudentConfig, forExport = false): Record<string, unknown> {
  return {
    architectures: ['DistilBertForMaskedLM'],
    model_type: 'distilbert',
    activation: c.activation,
    attention_dropout: c.attention_dropout,
    dim: c.dim,
    dropout: c.dropout,
    hidden_dim: c.hidden_dim,
    initializer_range: c.initializer_range,
    max_position_embeddings: c.max_position_embeddings,
    n_heads: c.n_heads,
    n_layers: c.n_layers,
    pad_token_id: c.pad_token_id,
    qa_dropout: 0.1,
    seq_classif_dropout: 0.2,
    sinusoidal_pos_embds: false,
    tie_weights_: true,
    tie_word_embeddings: true,
    vocab_size: c.vocab_size,
    dtype: 'float32',
    ...(c.projection_dim !== undefined && !forExport ? { distill_projection_dim: c.projection_dim } : {}),
  };
}
