// Initialise a DistilBERT student from a BERT teacher, as the reference's extract_distilbert.py does:
// word + position embeddings, embedding LayerNorm, chosen teacher layers → student layers 0..n-1, and the
// MLM head (transform dense + LayerNorm, vocab bias; the projector is tied to the word embeddings).
// Token-type embeddings are dropped.

import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { FileFormatError, InputError } from '../src/core/errors.js';
import { SafetensorsFile } from '../src/core/safetensors.js';
import type { EncoderConfig } from '../src/core/model-dir.js';
import type { StudentConfig } from './config.js';
import { DistilBertStudent, studentParamSpecs, type ParamSpec } from './model.js';

/**
 * The evenly spaced layer choice of RECIPE.md: round_half_up(i·(Lt−1)/(Ls−1)) for i = 0..Ls−1.
 * 12 → 6 gives [0, 2, 4, 7, 9, 11]; 4 → 2 gives [0, 3].
 */
export function evenlySpacedLayers(teacherLayers: number, studentLayers: number): number[] {
  if (!Number.isInteger(studentLayers) || studentLayers < 1 || studentLayers > teacherLayers) {
    throw new InputError(`a student of ${studentLayers} layers cannot be taken from a teacher of ${teacherLayers}`);
  }
  if (studentLayers === 1) return [0];
  const num = teacherLayers - 1;
  const den = studentLayers - 1;
  // round_half_up(i*num/den) in integers: floor((2*i*num + den) / (2*den)).
  return Array.from({ length: studentLayers }, (_, i) => Math.floor((2 * i * num + den) / (2 * den)));
}

/** DistilBERT halves the depth. */
export function defaultStudentLayers(teacherLayers: number): number[] {
  return evenlySpacedLayers(teacherLayers, Math.max(1, Math.floor(teacherLayers / 2)));
}

/**
 * BERT checkpoints name tensors with or without the `bert.` prefix,
 * and old ones call LayerNorm's weight/bias gamma/beta.
 */
function teacherLookup(file: SafetensorsFile): (key: string, shape: number[]) => Float32Array {
  return (key, shape) => {
    const candidates = [key, `bert.${key}`];
    if (key.endsWith('LayerNorm.weight')) candidates.push(...candidates.map((k) => k.replace(/weight$/, 'gamma')));
    if (key.endsWith('LayerNorm.bias')) candidates.push(...candidates.map((k) => k.replace(/bias$/, 'beta')));
    for (const c of candidates) if (file.has(c)) return file.getFloat32(c, shape);
    throw new FileFormatError(
      file.path,
      `missing tensor "bert.${key}"`,
      'the teacher must be a BertForMaskedLM checkpoint (save_pretrained ' +
        'of the masked-LM model, with its cls.predictions head)',
    );
  };
}

export function studentConfigFromTeacher(teacher: EncoderConfig, layers: number[], padTokenId: number): StudentConfig {
  return {
    vocab_size: teacher.vocabSize,
    dim: teacher.hiddenSize,
    n_layers: layers.length,
    n_heads: teacher.numHeads,
    hidden_dim: teacher.intermediateSize,
    max_position_embeddings: teacher.maxPositions,
    dropout: 0.1,
    attention_dropout: 0.1,
    activation: 'gelu',
    pad_token_id: padTokenId,
    initializer_range: 0.02,
  };
}

export interface StudentWeights {
  config: StudentConfig;
  /** HF parameter name → values in transformers' layout. */
  weights: Map<string, Float32Array>;
}

/** The student's initial weights, read from the teacher's model.safetensors (host arrays, no tfjs). */
export function studentWeightsFromTeacher(
  teacherDir: string,
  teacher: EncoderConfig,
  layers: number[],
  padTokenId: number,
  source = '--layers',
): StudentWeights {
  for (const l of layers) {
    if (!Number.isInteger(l) || l < 0 || l >= teacher.numLayers) {
      throw new InputError(
        `${source}: teacher layer ${l} does not exist (the teacher has layers 0..${teacher.numLayers - 1})`,
        `give layers of this teacher, e.g. [${defaultStudentLayers(teacher.numLayers).join(', ')}] ` +
          '(half its depth, evenly spaced: the default)',
      );
    }
  }
  const path = join(teacherDir, 'model.safetensors');
  if (!existsSync(path)) {
    throw new FileFormatError(
      path,
      'missing',
      "the student is initialised from the teacher's PyTorch weights: save_pretrained writes model.safetensors",
    );
  }
  const file = SafetensorsFile.read(path);
  const get = teacherLookup(file);
  const config = studentConfigFromTeacher(teacher, layers, padTokenId);
  const LAYER_MAP: Record<string, string> = {
    'attention.q_lin': 'attention.self.query',
    'attention.k_lin': 'attention.self.key',
    'attention.v_lin': 'attention.self.value',
    'attention.out_lin': 'attention.output.dense',
    sa_layer_norm: 'attention.output.LayerNorm',
    'ffn.lin1': 'intermediate.dense',
    'ffn.lin2': 'output.dense',
    output_layer_norm: 'output.LayerNorm',
  };
  const read = (name: string, shape: number[]): Float32Array => {
    if (name.startsWith('distilbert.embeddings.'))
      return get(`embeddings.${name.slice('distilbert.embeddings.'.length)}`, shape);
    const m = /^distilbert\.transformer\.layer\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
    if (m) return get(`encoder.layer.${layers[Number(m[1])]}.${LAYER_MAP[m[2]!]}.${m[3]}`, shape);
    // The MLM head lives outside the `bert.` prefix; the vocab bias may sit on the decoder instead.
    const head =
      name === 'vocab_projector.bias'
        ? file.has('cls.predictions.bias')
          ? 'cls.predictions.bias'
          : 'cls.predictions.decoder.bias'
        : name
            .replace(/^vocab_transform\./, 'cls.predictions.transform.dense.')
            .replace(/^vocab_layer_norm\./, 'cls.predictions.transform.LayerNorm.');
    if (!file.has(head))
      throw new FileFormatError(
        path,
        `missing tensor "${head}"`,
        'the teacher must be a BertForMaskedLM checkpoint with its cls.predictions head',
      );
    return file.getFloat32(head, shape);
  };
  const weights = new Map<string, Float32Array>();
  for (const spec of studentParamSpecs(config)) weights.set(spec.name, read(spec.name, spec.hfShape));
  return { config, weights };
}

export function initStudentFromTeacher(
  teacherDir: string,
  teacher: EncoderConfig,
  layers: number[],
  padTokenId: number,
): DistilBertStudent {
  const { config, weights } = studentWeightsFromTeacher(teacherDir, teacher, layers, padTokenId);
  return DistilBertStudent.fromHfWeights(config, (name) => weights.get(name)!);
}

/**
 * Random weights for a student of `config`, as transformers initialises DistilBERT (_init_weights): every
 * matrix and embedding normal(0, initializer_range), the padding row of the word embeddings 0, biases 0,
 * LayerNorm weight 1 and bias 0. Seeded: the same seed gives the same weights (the ablation's "random
 * initialisation" baseline, beside the teacher-layer initialisation
 * of DistilBERT). `only`: draw these parameters alone.
 */
export function randomStudentWeights(
  config: StudentConfig,
  seed: number,
  only: (spec: ParamSpec) => boolean = () => true,
): StudentWeights {
  let state = seed >>> 0;
  const uniform = (): number => {
    // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296; // (0, 1)
  };
  const normal = (): number => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()); // Box–Muller
  const weights = new Map<string, Float32Array>();
  for (const spec of studentParamSpecs(config).filter(only)) {
    const size = spec.hfShape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(size);
    if (/(LayerNorm|layer_norm)\.weight$/.test(spec.name)) values.fill(1);
    else if (!spec.name.endsWith('.bias'))
      for (let i = 0; i < size; i++) values[i] = normal() * config.initializer_range;
    if (spec.name === 'distilbert.embeddings.word_embeddings.weight')
      values.fill(0, config.pad_token_id * config.dim, (config.pad_token_id + 1) * config.dim);
    weights.set(spec.name, values);
  }
  return { config, weights };
}

/**
 * A student of any shape (the `student` config key as an object): `layers` transformer layers of width
 * `hidden`, `heads` attention heads and feed-forward size `intermediate`. With `teacher_layers` (only where the
 * shape is the teacher's own) it starts from those teacher layers; otherwise from random weights (seeded).
 */
export interface StudentArchitecture {
  layers: number;
  hidden: number;
  heads: number;
  intermediate: number;
  teacher_layers?: number[];
}

/**
 * The initial weights of a run's student: teacher layers (a list, or null for the recipe's choice), or an
 * architecture. A student narrower than the teacher gets the learned hidden-state projection (projection_dim),
 * drawn from `seed` with the rest of its random weights.
 */
export function initialStudentWeights(
  teacherDir: string,
  teacher: EncoderConfig,
  spec: number[] | StudentArchitecture | null,
  padTokenId: number,
  seed: number,
  source = 'student',
): StudentWeights {
  if (spec === null || Array.isArray(spec)) {
    const layers = spec ?? defaultStudentLayers(teacher.numLayers);
    return studentWeightsFromTeacher(teacherDir, teacher, layers, padTokenId, source);
  }
  const { layers, hidden, heads, intermediate, teacher_layers: fromLayers } = spec;
  if (hidden % heads !== 0)
    throw new InputError(
      `${source}: "hidden" ${hidden} is not a multiple of "heads" ${heads}`,
      `e.g. hidden ${heads * Math.max(1, Math.round(hidden / heads))}`,
    );
  if (fromLayers !== undefined) {
    const own = { hidden: teacher.hiddenSize, heads: teacher.numHeads, intermediate: teacher.intermediateSize };
    const differs = (Object.keys(own) as (keyof typeof own)[]).filter((k) => spec[k] !== own[k]);
    if (differs.length > 0) {
      throw new InputError(
        `${source}: "teacher_layers" copies teacher layers, but ` +
          `${differs.map((k) => `"${k}" ${spec[k]} differs from the teacher's ${own[k]}`).join(', ')}`,
        'leave out "teacher_layers" to start this shape from random weights, or give the teacher\'s own shape',
      );
    }
    if (fromLayers.length !== layers)
      throw new InputError(`${source}: "teacher_layers" lists ${fromLayers.length} layers, "layers" is ${layers}`);
    return studentWeightsFromTeacher(teacherDir, teacher, fromLayers, padTokenId, `${source}: "teacher_layers"`);
  }
  const config: StudentConfig = {
    ...studentConfigFromTeacher(teacher, [], padTokenId),
    dim: hidden,
    n_layers: layers,
    n_heads: heads,
    hidden_dim: intermediate,
    ...(hidden !== teacher.hiddenSize ? { projection_dim: teacher.hiddenSize } : {}),
  };
  return randomStudentWeights(config, seed);
}

/**
 * A student narrower than its teacher, loaded without a projection (a folder from init-student or another
 * tool): the same weights plus a new projection to `teacherHidden` (normal(0, initializer_range), bias 0, from `seed`).
 */
export function withNewProjection(student: DistilBertStudent, teacherHidden: number, seed: number): DistilBertStudent {
  const config: StudentConfig = { ...student.config, projection_dim: teacherHidden };
  const fresh = randomStudentWeights(config, seed, (spec) => spec.aux === true).weights; // the projection alone
  const own = student.hfWeights();
  student.dispose();
  return DistilBertStudent.fromHfWeights(config, (name) => own.get(name)?.data ?? fresh.get(name)!);
}
