// A model folder laid out like a Hugging Face export: config.json, a tokenizer (tokenizer.json and/or
// vocab.txt + tokenizer_config.json), an ONNX graph (model.onnx, model-hidden.onnx or onnx/model.onnx) and
// optionally model.safetensors. This file reads config.json into one shape for BERT and DistilBERT.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FileFormatError } from './errors.js';
import { describeRecognised, recognise, verifyFolder } from './folders.js';

/** The architecture numbers of a BERT-family encoder, whatever config.json calls them. */
export interface EncoderConfig {
  /** "bert" or "distilbert" (config.json `model_type`). */
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  maxPositions: number;
  /** BERT's token-type vocabulary (2); 0 for DistilBERT, which has none. */
  typeVocabSize: number;
  layerNormEps: number;
  /** Hidden activation: "gelu" (erf) for BERT and DistilBERT. */
  activation: string;
}

type Json = Record<string, unknown>;

export function readJsonObject(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new FileFormatError(path, `cannot read: ${(e as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(path, `not valid JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new FileFormatError(path, 'expected a JSON object');
  return v as Json;
}

/**
 * A model folder as an option names it: it exists, is a folder, is not a run, corpus or task folder (each named, with
 * what to give instead), and, when distill wrote it, each file still has the size and SHA-256 it was written with.
 */
export function assertModelDir(dir: string, option: string): void {
  if (!existsSync(dir))
    throw new FileFormatError(
      dir,
      `no such folder (given as ${option})`,
      `${option} takes a model folder with config.json, a tokenizer and an ONNX file`,
    );
  if (!statSync(dir).isDirectory())
    throw new FileFormatError(
      dir,
      `not a folder (given as ${option})`,
      `${option} takes the folder that holds config.json, not a file in it`,
    );
  const r = recognise(dir);
  if (r.state === 'distill' && r.kind === 'run') {
    const best = join(dir, 'checkpoints', 'best');
    const steps = existsSync(join(dir, 'checkpoints'))
      ? readdirSync(join(dir, 'checkpoints'))
          .filter((f) => /^step-\d+$/.test(f))
          .sort()
      : [];
    throw new FileFormatError(
      dir,
      `is a training run, not a model (given as ${option})`,
      existsSync(best)
        ? `give its best checkpoint: ${option} ${best} (the lowest ` +
            `val_loss)${steps.length ? `, or its latest: ${join(dir, 'checkpoints', steps.at(-1)!)}` : ''}`
        : steps.length
          ? `give one of its checkpoints, e.g. the latest: ${option} ${join(dir, 'checkpoints', steps.at(-1)!)}`
          : 'the run has no checkpoint yet',
    );
  }
  if ((r.state === 'distill' && (r.kind === 'corpus' || r.kind === 'tasks')) || r.state === 'tasks') {
    throw new FileFormatError(
      dir,
      `is ${describeRecognised(r)}, not a model (given as ${option})`,
      `${option} takes a model folder: config.json, a tokenizer, and model.onnx or model.safetensors`,
    );
  }
  verifyFolder(dir);
}

export function readEncoderConfig(dir: string): EncoderConfig {
  const path = join(dir, 'config.json');
  if (!existsSync(path)) {
    throw new FileFormatError(path, 'missing', 'a model folder needs the config.json that save_pretrained writes');
  }
  const c = readJsonObject(path);
  const modelType = typeof c['model_type'] === 'string' ? c['model_type'] : 'bert';
  const num = (keys: string[], dflt?: number): number => {
    for (const k of keys) {
      const v = c[k];
      if (v === undefined || v === null) continue;
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw new FileFormatError(path, `field "${k}" is ${JSON.stringify(v)}, expected a number`);
      return v;
    }
    if (dflt !== undefined) return dflt;
    throw new FileFormatError(
      path,
      `field "${keys[0]}" is missing`,
      `a ${modelType} config.json has ${keys.join(' or ')}`,
    );
  };
  if (modelType === 'distilbert') {
    return {
      modelType,
      vocabSize: num(['vocab_size']),
      hiddenSize: num(['dim']),
      numLayers: num(['n_layers']),
      numHeads: num(['n_heads']),
      intermediateSize: num(['hidden_dim']),
      maxPositions: num(['max_position_embeddings']),
      typeVocabSize: 0,
      layerNormEps: 1e-12,
      activation: typeof c['activation'] === 'string' ? c['activation'] : 'gelu',
    };
  }
  const cfg: EncoderConfig = {
    modelType,
    vocabSize: num(['vocab_size']),
    hiddenSize: num(['hidden_size']),
    numLayers: num(['num_hidden_layers']),
    numHeads: num(['num_attention_heads']),
    intermediateSize: num(['intermediate_size']),
    maxPositions: num(['max_position_embeddings']),
    typeVocabSize: num(['type_vocab_size'], 2),
    layerNormEps: num(['layer_norm_eps'], 1e-12),
    activation: typeof c['hidden_act'] === 'string' ? c['hidden_act'] : 'gelu',
  };
  if (cfg.hiddenSize % cfg.numHeads !== 0) {
    throw new FileFormatError(
      path,
      `hidden_size ${cfg.hiddenSize} is not a multiple of num_attention_heads ${cfg.numHeads}`,
    );
  }
  return cfg;
}

/**
 * The ONNX graph of a model folder: model-hidden.onnx first when
 * hidden states are wanted, else model.onnx, onnx/model.onnx.
 */
export function findOnnxFile(dir: string, wantHiddenStates: boolean): string {
  const candidates = wantHiddenStates
    ? ['model-hidden.onnx', 'model.onnx', 'onnx/model.onnx']
    : ['model.onnx', 'onnx/model.onnx', 'model-hidden.onnx'];
  for (const c of candidates) {
    const p = join(dir, c);
    if (existsSync(p)) return p;
  }
  // A student folder (init-student's output, a training checkpoint) has weights but no ONNX until exported.
  const isStudent =
    existsSync(join(dir, 'model.safetensors')) &&
    existsSync(join(dir, 'config.json')) &&
    readJsonObject(join(dir, 'config.json'))['model_type'] === 'distilbert';
  throw new FileFormatError(
    join(dir, 'model.onnx'),
    'missing (and so are model-hidden.onnx and onnx/model.onnx)',
    isStudent
      ? `this is a student folder (a checkpoint or init-student's output): export it first with \`distill export ` +
          `--student ${dir} --out ${dir}-onnx\`, then use ${dir}-onnx`
      : 'export the teacher to ONNX: `optimum-cli export onnx --model NAME --task fill-mask DIR`, or ' +
          'torch.onnx.export of BertForMaskedLM',
  );
}

/** Whether `dir` holds an ONNX graph onnxruntime can run. */
function hasOnnx(dir: string): boolean {
  return ['model.onnx', 'model-hidden.onnx', join('onnx', 'model.onnx')].some((f) => existsSync(join(dir, f)));
}

/** A student folder without ONNX (a checkpoint, or init-student's output): run in tfjs rather than onnxruntime. */
export function isTfjsStudentFolder(dir: string): boolean {
  return (
    !hasOnnx(dir) && existsSync(join(dir, 'model.safetensors')) && readEncoderConfig(dir).modelType === 'distilbert'
  );
}
