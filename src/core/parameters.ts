// How many parameters a model folder holds: its model.safetensors' values when it has one (transformers' files
// hold each tied matrix once), else its ONNX graph's initializers.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from './safetensors.js';
import { readOnnx } from './onnx.js';
import { findOnnxFile } from './model-dir.js';

export function modelParameters(dir: string): number {
  const st = join(dir, 'model.safetensors');
  if (existsSync(st)) {
    const f = SafetensorsFile.read(st);
    return f.names().reduce((n, k) => n + f.shapeOf(k).reduce((a, b) => a * b, 1), 0);
  }
  const model = readOnnx(findOnnxFile(dir, false)).model;
  return (model.graph?.initializer ?? []).reduce(
    (n, t) => n + (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1),
    0,
  );
}
