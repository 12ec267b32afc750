// Gradients compared as whole tensors: each parameter's gradient against PyTorch's on the same golden batch
// (gradients.safetensors beside it, made by test/fixtures/make_update_references.py), ‖g − g_ref‖ ≤ 1e-3·‖g_ref‖.
// A zeroed, a random-direction or a transposed gradient is off by about ‖g_ref‖ or more (test/student.test.ts shows
// each failing), where float32 arithmetic in another summation order stays near 1e-6 of it.
import { expect } from 'vitest';
import { join } from 'node:path';
import { SafetensorsFile } from '../src/core/safetensors.js';

/** PyTorch's gradient of the golden batch in `dir`, every parameter (transformers' names and layouts). */
export function referenceGradients(dir: string): Map<string, Float32Array> {
  const file = SafetensorsFile.read(join(dir, 'gradients.safetensors'));
  return new Map(file.names().map((n) => [n, file.getFloat32(n)]));
}

function norm(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s);
}

/**
 * Every parameter's gradient within `rel` (1e-3, the golden tests' bound) of PyTorch's, as a tensor:
 * ‖g − g_ref‖ ≤ rel·‖g_ref‖. The gradients that are rounding noise on both sides (the k_lin biases: softmax ignores
 * a shift of the scores, so they are 0 in exact arithmetic and ~1e-7 in float32) are held to an absolute floor of
 * rel·1e-3, a thousandth of the bound of the smallest real gradient here (~1e-3 in norm).
 */
export function expectGradientsMatch(
  grads: Map<string, Float32Array>,
  reference: Map<string, Float32Array>,
  rel = 1e-3,
): void {
  expect([...grads.keys()].sort()).toEqual([...reference.keys()].sort());
  for (const [name, g] of grads) {
    const r = reference.get(name)!;
    expect(g.length, name).toBe(r.length);
    const diff = new Float64Array(g.length);
    for (let i = 0; i < g.length; i++) diff[i] = g[i]! - r[i]!;
    const bound = Math.max(rel * norm(r), rel * 1e-3);
    expect(norm(diff), `${name}: ‖g − g_ref‖ (‖g_ref‖ = ${norm(r).toExponential(3)})`).toBeLessThanOrEqual(bound);
  }
}
