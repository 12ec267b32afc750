// The golden distillation step (test/fixtures/tiny-bert-cased/reference.*, from PyTorch) and its checks,
// shared by the test files that run it under different backends and kernels.
import { expect } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { join } from 'node:path';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { hfNameOfVariable, type DistilBertStudent } from '../student/model.js';
import { distillLosses, RECIPE_LOSS_WEIGHTS } from '../losses/total.js';
import { lossRows } from '../losses/rows.js';
import { GOLDEN, goldenBatch, relDiff } from './helpers.js';
import reference from './fixtures/tiny-bert-cased/reference.json' with { type: 'json' };

export const ref = SafetensorsFile.read(join(GOLDEN, 'reference.safetensors'));
export const { B, T, maskedIds, attention, labels, teacherLogits, teacherLast } = goldenBatch(ref);
export const H = 192;
export const V = 6144;
export const rows = lossRows(attention, labels, B, T, V);
export const targets = { logits: teacherLogits, lastHidden: teacherLast };

/** The loss and each parameter's gradient norm (by Hugging Face name) on the golden batch. */
export function goldenGradients(student: DistilBertStudent, restrict = false, fused = true): { loss: number; grads: Map<string, number> } {
  return tf.tidy(() => {
    const ids = tf.tensor2d(maskedIds, [B, T], 'int32');
    const mask = tf.tensor2d(attention, [B, T], 'int32');
    const { value, grads } = tf.variableGrads(() => distillLosses(student, ids, mask, rows, targets,
      { ...RECIPE_LOSS_WEIGHTS, restrict_ce_to_mask: restrict }, { training: false }, { fused }).loss, student.variables());
    const norms = new Map<string, number>();
    for (const [name, g] of Object.entries(grads)) norms.set(hfNameOfVariable(name), Math.sqrt(tf.sum(tf.square(g)).dataSync()[0]!));
    return { loss: value.dataSync()[0]!, grads: norms };
  });
}

/** The total loss within 1e-4 relative, every per-parameter gradient norm and the global one within 1e-3. */
export function expectGoldenGradients({ loss, grads }: { loss: number; grads: Map<string, number> }): void {
  expect(relDiff(loss, reference.loss_total)).toBeLessThan(1e-4);
  const refByParam = reference.student_grad_norm_by_param as Record<string, number>;
  expect([...grads.keys()].sort()).toEqual(Object.keys(refByParam).sort());
  let total = 0;
  for (const [name, norm] of grads) {
    total += norm * norm;
    const expected = refByParam[name]!;
    // Relative 1e-3, or absolute 1e-3 for gradients that are rounding noise (the k_lin biases: ~1e-7).
    expect(Math.abs(norm - expected), name).toBeLessThan(Math.max(1e-3 * expected, 1e-3));
  }
  expect(relDiff(Math.sqrt(total), reference.student_grad_norm)).toBeLessThan(1e-3);
}
