// Graph layers of a BERT-family encoder read from PyTorch-layout weights by name, shared by the student's
// ONNX export (student/export-onnx.ts) and the random BERT teacher of make-teacher (teacher/make-teacher.ts).

import type { OnnxGraphBuilder } from './onnx-writer.js';
import { transpose2d } from './math.js';

/** Weights in transformers' layout (linear weights [out, in]). */
export type HfWeights = Map<string, Float32Array>;

/** Graph layers reading PyTorch-layout weights by name: linear (W [out, in]), LayerNorm, and the raw getter. */
export function torchLayers(
  g: OnnxGraphBuilder,
  weights: HfWeights,
  who: string,
  eps: number,
  quantize = false,
): {
  w: (name: string) => Float32Array;
  linear: (x: string, name: string, out: number, inp: number) => string;
  layerNorm: (x: string, name: string) => string;
} {
  const w = (name: string): Float32Array => {
    const v = weights.get(name);
    if (!v) throw new Error(`${who}: no weights for ${name}`);
    return v;
  };
  return {
    w,
    /** x @ Wᵀ + b with W [out, in] stored transposed as [in, out] (int8 with `quantize`: OnnxGraphBuilder.linear). */
    linear: (x, name, out, inp) =>
      g.linear(x, name, transpose2d(w(`${name}.weight`), out, inp), w(`${name}.bias`), inp, out, quantize),
    layerNorm: (x, name) => g.layerNorm(x, name, w(`${name}.weight`), w(`${name}.bias`), eps),
  };
}
