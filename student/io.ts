// A student on disk is a Hugging Face DistilBertForMaskedLM folder: config.json, model.safetensors (HF
// parameter names, float32; the tied projector weight omitted as save_pretrained omits it) and the
// tokenizer files, so that transformers' from_pretrained loads it unchanged. A student narrower than its teacher
// trained with a hidden-state loss also holds its learned projection (training only) in
// distill_projection.safetensors beside them; export leaves it out.

import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FileFormatError } from '../src/core/errors.js';
import { SafetensorsFile, writeFileAtomic, writeSafetensors, type TensorToWrite } from '../src/core/safetensors.js';
import { readStudentConfig, studentConfigJson, type StudentConfig } from './config.js';
import { DistilBertStudent, studentParamSpecs } from './model.js';

export const TOKENIZER_FILES = ['tokenizer.json', 'vocab.txt', 'tokenizer_config.json', 'special_tokens_map.json'] as const;

/** Copy whichever tokenizer files `fromDir` has into `toDir`. */
export function copyTokenizerFiles(fromDir: string, toDir: string): string[] {
  const copied: string[] = [];
  for (const f of TOKENIZER_FILES) {
    if (existsSync(join(fromDir, f))) {
      copyFileSync(join(fromDir, f), join(toDir, f));
      copied.push(f);
    }
  }
  return copied;
}

export const PROJECTION_FILE = 'distill_projection.safetensors';

export function loadStudent(dir: string): DistilBertStudent {
  const config = readStudentConfig(dir);
  const path = join(dir, 'model.safetensors');
  if (!existsSync(path)) throw new FileFormatError(path, 'missing', 'a student folder holds model.safetensors: make one with `distill init-student`');
  const file = SafetensorsFile.read(path);
  const projectionPath = join(dir, PROJECTION_FILE);
  if (config.projection_dim !== undefined && !existsSync(projectionPath)) {
    throw new FileFormatError(projectionPath, `missing: ${join(dir, 'config.json')} gives distill_projection_dim ${config.projection_dim}`,
      'a checkpoint writes both; remove "distill_projection_dim" from config.json to start a new projection');
  }
  const projection = config.projection_dim !== undefined ? SafetensorsFile.read(projectionPath) : undefined;
  const specs = new Map(studentParamSpecs(config).map((s) => [s.name, s]));
  return DistilBertStudent.fromHfWeights(config, (name, shape) => (specs.get(name)?.aux ? projection! : file).getFloat32(name, shape));
}

/** Write config.json and model.safetensors (atomically each) into `dir`, from weights in transformers' layout. */
export function writeStudentFolder(config: StudentConfig, weights: Map<string, Float32Array>, dir: string, metadata: Record<string, string> = {}): void {
  mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, TensorToWrite>();
  const aux = new Map<string, TensorToWrite>();
  for (const spec of studentParamSpecs(config)) {
    const data = weights.get(spec.name);
    if (!data) throw new FileFormatError(join(dir, spec.aux ? PROJECTION_FILE : 'model.safetensors'), `no values for parameter ${spec.name}`);
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
