// Gradients compared as whole tensors, not only as norms: the dot product of a gradient (in transformers'
// layout) with a fixed pseudo-random probe tensor, which PyTorch's side computes the same way
// (test/fixtures/make_update_references.py, gradient_probes.json). A transposed or permuted gradient has the
// same norm but another dot product.
import { expect } from 'vitest';

/** probe(n)[i] = ((i+1)·2654435761 mod 2^32) / 2^32 − 1/2: exact in float64 ((i+1)·2654435761 < 2^53 for n < 3·10^6). */
export function probe(n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = ((i + 1) * 2654435761) % 2 ** 32 / 2 ** 32 - 0.5;
  return out;
}

export function dotWithProbe(g: ArrayLike<number>): number {
  const r = probe(g.length);
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i]! * r[i]!;
  return s;
}

function norm(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s);
}

/** |⟨g, r⟩ − ⟨g_ref, r⟩| allowed when ‖g − g_ref‖ ≤ rel·‖g_ref‖: by Cauchy–Schwarz, rel·‖g_ref‖·‖r‖. */
export function probeBound(refNorm: number, n: number, rel: number): number {
  return rel * refNorm * norm(probe(n));
}

export interface ProbeReference { dot: number; norm: number }

/**
 * Every parameter's gradient (transformers' layout, by name) against PyTorch's probe and norm. `rel` is the
 * relative error of the whole gradient tensor that float32 arithmetic in another summation order allows
 * (1e-3: the golden tests' bound); the dot-product bound follows from it by Cauchy–Schwarz, plus an absolute
 * floor of `rel` for gradients that are rounding noise (the k_lin biases: ~1e-7 in norm).
 */
export function expectGradientProbes(grads: Map<string, Float32Array>, reference: Record<string, ProbeReference>, rel = 1e-3): void {
  expect([...grads.keys()].sort()).toEqual(Object.keys(reference).sort());
  for (const [name, g] of grads) {
    const ref = reference[name]!;
    const bound = Math.max(probeBound(ref.norm, g.length, rel), rel);
    expect(Math.abs(dotWithProbe(g) - ref.dot), `${name}: gradient · probe`).toBeLessThan(bound);
  }
}
