// A student on disk is a Hugging Face DistilBertForMaskedLM folder: config.json, model.safetensors (HF
// parameter names, float32; the tied projector weight omitted as save_pretrained omits it) and the
// tokenizer files, so that transformers' from_pretrained loads it unchanged. A student narrower than its teacher
// trained with a hidden-state loss also holds its learned projection (training only) in
// distill_projection.safetensors beside them; export leaves it out.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DistillError, FileFormatError } from '../src/core/errors.js';
import { copyFileTo, makeDir } from '../src/core/out.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../src/core/safetensors.js';
import { writeFileAtomic } from '../src/core/out.js';
import { readStudentConfig, studentConfigJson, type StudentConfig } from './config.js';
import { DistilBertStudent, studentParamSpecs } from './model.js';

export const TOKENIZER_FILES = [
  'tokenizer.json',
  'vocab.txt',
  'tokenizer_config.json',
  'special_tokens_map.json',
] as const;

/** Copy whichever tokenizer files `fromDir` has into `toDir`. */
export function copyTokenizerFiles(fromDir: string, toDir: string): string[] {
  const copied: string[] = [];
  for (const f of TOKENIZER_FILES) {
    if (existsSync(join(fromDir, f))) {
      copyFileTo(join(fromDir, f), join(toDir, f));
      copied.push(f);
    }
  }
  return copied;
}

export const PROJECTION_FILE = 'distill_projection.safetensors';

/** Weights that are NaN or infinite: never written as a model or a checkpoint. */
export class NonFiniteWeightsError extends DistillError {
  constructor(
    readonly parameter: string,
    index: number,
    value: number,
  ) {
    super(
      `the student's weights are not finite: ${parameter}[${index}] is ${value}`,
      'a model with such weights computes nothing but NaN: train from an earlier checkpoint, with a lower lr',
    );
  }
}

/** The index of the first value that is NaN or infinite, if any. */
function firstNonFinite(data: Float32Array): number | undefined {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return i;
  return undefined;
}

/** A weight read from `file`, checked finite (a damaged or diverged file is named, not loaded). */
export function finiteWeight(file: SafetensorsFile, name: string, shape: number[]): Float32Array {
  const data = file.getFloat32(name, shape);
  const bad = firstNonFinite(data);
  if (bad !== undefined) {
    throw new FileFormatError(
      file.path,
      `tensor "${name}" holds ${data[bad]} at index ${bad}: the weights are not finite`,
      'the model diverged or the file is damaged: use an earlier checkpoint',
    );
  }
  return data;
}

export function loadStudent(dir: string): DistilBertStudent {
  const config = readStudentConfig(dir);
  const path = join(dir, 'model.safetensors');
  if (!existsSync(path))
    throw new FileFormatError(
      path,
      'missing',
      'a student folder holds model.safetensors: make one with `distill init-student`',
    );
  const file = SafetensorsFile.read(path);
  const projectionPath = join(dir, PROJECTION_FILE);
  if (config.projection_dim !== undefined && !existsSync(projectionPath)) {
    throw new FileFormatError(
      projectionPath,
      `missing: ${join(dir, 'config.json')} gives distill_projection_dim ${config.projection_dim}`,
      'a checkpoint writes both; remove "distill_projection_dim" from config.json to start a new projection',
    );
  }
  const projection = config.projection_dim !== undefined ? SafetensorsFile.read(projectionPath) : undefined;
  const specs = new Map(studentParamSpecs(config).map((s) => [s.name, s]));
  return DistilBertStudent.fromHfWeights(config, (name, shape) =>
    finiteWeight(specs.get(name)?.aux ? projection! : file, name, shape),
  );
}

/** Write config.json and model.safetensors (atomically each) into `dir`, from weights in transformers' layout. */
export function writeStudentFolder(
  config: StudentConfig,
  weights: Map<string, Float32Array>,
  dir: string,
  metadata: Record<string, string> = {},
): void {
  makeDir(dir);
  const tensors = new Map<string, TensorToWrite>();
  const aux = new Map<string, TensorToWrite>();
  for (const spec of studentParamSpecs(config)) {
    const data = weights.get(spec.name);
    if (!data)
      throw new FileFormatError(
        join(dir, spec.aux ? PROJECTION_FILE : 'model.safetensors'),
        `no values for parameter ${spec.name}`,
      );
    const bad = firstNonFinite(data);
    if (bad !== undefined) throw new NonFiniteWeightsError(spec.name, bad, data[bad]!);
    (spec.aux ? aux : tensors).set(spec.name, { data, shape: spec.hfShape, dtype: 'F32' });
  }
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt', ...metadata });
  if (aux.size > 0) writeSafetensors(join(dir, PROJECTION_FILE), aux, { format: 'pt', ...metadata });
  writeFileAtomic(join(dir, 'config.json'), JSON.stringify(studentConfigJson(config), null, 2) + '\n');
}

export function saveStudent(student: DistilBertStudent, dir: string, metadata: Record<string, string> = {}): void {
  const weights = new Map([...student.hfWeights()].map(([name, t]) => [name, t.data]));
  writeStudentFolder(student.config, weights, dir, metadata);
}

export type { StudentConfig };
