// The golden distillation step (test/fixtures/tiny-bert-cased/reference.*, from PyTorch) and its checks,
// shared by the test files that run it under different backends and kernels.
import { expect } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { join } from 'node:path';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { hfNameOfVariable, type DistilBertStudent } from '../student/model.js';
import { transpose2d } from '../src/core/math.js';
import { distillLosses, RECIPE_LOSS_WEIGHTS, type TeacherTargets } from '../losses/total.js';
import { lossRows, type LossRows } from '../losses/rows.js';
import { GOLDEN, goldenBatch, relDiff, tidy } from './helpers.js';
import { expectGradientsMatch, referenceGradients } from './gradient-check.js';
import reference from './fixtures/tiny-bert-cased/reference.json' with { type: 'json' };

export const ref = SafetensorsFile.read(join(GOLDEN, 'reference.safetensors'));
export const { B, T, maskedIds, attention, labels, teacherLogits, teacherLast } = goldenBatch(ref);
export const H = 192;
export const V = 6144;
export const rows = lossRows(attention, labels, B, T, V);
export const targets = { logits: teacherLogits, lastHidden: teacherLast };

/** A golden batch: [B, T] ids and mask, the rows of each loss, and the teacher's outputs from PyTorch. */
export interface GoldenBatch {
  B: number;
  T: number;
  maskedIds: Int32Array;
  attention: Int32Array;
  rows: LossRows;
  targets: TeacherTargets;
}

const TINY_BATCH: GoldenBatch = { B, T, maskedIds, attention, rows, targets };

/**
 * The loss and each parameter's gradient (transformers' layout) and its norm, by Hugging Face name, on a golden batch
 * (default: the tiny teacher's).
 */
export function goldenGradients(
  student: DistilBertStudent,
  restrict = false,
  fused = true,
  batch: GoldenBatch = TINY_BATCH,
): { loss: number; grads: Map<string, number>; tensors: Map<string, Float32Array> } {
  return tidy(() => {
    const ids = tf.tensor2d(batch.maskedIds, [batch.B, batch.T], 'int32');
    const mask = tf.tensor2d(batch.attention, [batch.B, batch.T], 'int32');
    const { value, grads } = tf.variableGrads(
      () =>
        distillLosses(
          student,
          ids,
          mask,
          batch.rows,
          batch.targets,
          { ...RECIPE_LOSS_WEIGHTS, restrict_ce_to_mask: restrict },
          { training: false },
          { fused },
        ).loss,
      student.variables(),
    );
    const norms = new Map<string, number>();
    const tensors = new Map<string, Float32Array>();
    for (const [variable, g] of Object.entries(grads)) {
      const name = hfNameOfVariable(variable);
      const spec = student.specs.find((s) => s.name === name)!;
      const data = g.dataSync() as Float32Array;
      // Linear weights are held [in, out]; transformers' layout (and PyTorch's gradient) is [out, in].
      tensors.set(name, spec.linear ? transpose2d(data, spec.hfShape[1]!, spec.hfShape[0]!) : Float32Array.from(data));
      norms.set(name, Math.sqrt(tf.sum(tf.square(g)).dataSync()[0]!));
    }
    return { loss: value.dataSync()[0]!, grads: norms, tensors };
  });
}

/**
 * The total loss within 1e-4 relative, every per-parameter gradient norm and the global one within 1e-3, and
 * every gradient as a whole tensor against PyTorch's (gradient-check.ts).
 */
export function expectGoldenGradients({
  loss,
  grads,
  tensors,
}: {
  loss: number;
  grads: Map<string, number>;
  tensors: Map<string, Float32Array>;
}): void {
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
  expectGradientsMatch(tensors, referenceGradients(GOLDEN));
}
