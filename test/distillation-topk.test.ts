// The KL on top-k soft targets (losses/distillation-topk.ts), on cases worked by hand; its 8-update PyTorch
// reference (unseen-topk8) runs in the updates-*.test.ts files.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { distillationLossTopK } from '../losses/distillation-topk.js';
import { distillationLossFromSoft } from '../losses/distillation.js';
import { bucketNegEntropy, topkOfSoftTargets } from '../src/core/soft-targets.js';
import { tidy } from './helpers.js';

await tf.setBackend('cpu');

/** The student's logits [N, V], as a variable (the loss's gradient is taken with respect to it). */
let student: tf.Variable<tf.Rank.R2> | undefined;
function setStudent(s: number[][]): tf.Tensor2D {
  student?.dispose();
  student = tf.variable(tf.tensor2d(s));
  return student;
}

/** The loss on the current student and its gradient with respect to the student's logits. */
function lossAndGrad(probs: number[][], ids: number[][], tau: number): { loss: number; grad: number[][] } {
  const negEntropy = probs.map((row) => bucketNegEntropy(Float32Array.from(row), 0, row.length));
  return tidy(() => {
    const { value, grads } = tf.variableGrads(
      () =>
        distillationLossTopK(
          student!,
          tf.tensor2d(probs),
          tf.tensor2d(ids, undefined, 'int32'),
          tf.tensor1d(negEntropy),
          tau,
        ),
      [student!],
    );
    return { loss: value.dataSync()[0]!, grad: grads[student!.name]!.arraySync() as number[][] };
  });
}

describe('loss_ce on top-k soft targets (one bucket for the tail)', () => {
  it('a hand-worked row: V = 4, k = 2, τ = 2', () => {
    // Teacher p = [0.5, 0.3, 0.15, 0.05]: top 2 = tokens 0, 1; tail 0.2. Student z = s/τ = [0, 0, 0, ln 2]:
    // q = [0.2, 0.2, 0.2, 0.4], q_tail = 0.6.
    // KL = 0.5 ln(0.5/0.2) + 0.3 ln(0.3/0.2) + 0.2 ln(0.2/0.6); loss = τ² KL.
    // ∂loss/∂s = τ (q − p̃), p̃ = [0.5, 0.3, 0.2·0.2/0.6, 0.2·0.4/0.6] (the tail's mass in q's proportions).
    setStudent([[0, 0, 0, 2 * Math.log(2)]]);
    const { loss, grad } = lossAndGrad([[0.5, 0.3]], [[0, 1]], 2);
    const kl = 0.5 * Math.log(0.5 / 0.2) + 0.3 * Math.log(0.3 / 0.2) + 0.2 * Math.log(0.2 / 0.6);
    expect(loss).toBeCloseTo(4 * kl, 5);
    const want = [0.2 - 0.5, 0.2 - 0.3, 0.2 - (0.2 * 0.2) / 0.6, 0.4 - (0.2 * 0.4) / 0.6].map((g) => 2 * g);
    grad[0]!.forEach((g, j) => expect(g).toBeCloseTo(want[j]!, 5));
  });

  it('ids are per row, in any order: two rows with different top-k sets, the second given in reverse', () => {
    // Row 0 as above; row 1: teacher top 2 = tokens 3 (0.6) and 2 (0.1), tail 0.3; student z = 0: q = 1/4 each.
    setStudent([
      [0, 0, 0, 2 * Math.log(2)],
      [0, 0, 0, 0],
    ]);
    const a = lossAndGrad(
      [
        [0.5, 0.3],
        [0.6, 0.1],
      ],
      [
        [0, 1],
        [3, 2],
      ],
      2,
    );
    const b = lossAndGrad(
      [
        [0.3, 0.5],
        [0.1, 0.6],
      ],
      [
        [1, 0],
        [2, 3],
      ],
      2,
    );
    const kl0 = 0.5 * Math.log(0.5 / 0.2) + 0.3 * Math.log(0.3 / 0.2) + 0.2 * Math.log(0.2 / 0.6);
    const kl1 = 0.6 * Math.log(0.6 / 0.25) + 0.1 * Math.log(0.1 / 0.25) + 0.3 * Math.log(0.3 / 0.5);
    expect(a.loss).toBeCloseTo((4 * (kl0 + kl1)) / 2, 5); // batchmean over the 2 rows
    expect(b.loss).toBeCloseTo(a.loss, 6);
    // Row 1's gradient, /2 for the mean: τ (q − p̃)/2 with p̃ = [0.3·0.5, 0.3·0.5, 0.1, 0.6].
    const want1 = [0.25 - 0.15, 0.25 - 0.15, 0.25 - 0.1, 0.25 - 0.6].map((g) => (2 * g) / 2);
    a.grad[1]!.forEach((g, j) => expect(g).toBeCloseTo(want1[j]!, 5));
    b.grad[1]!.forEach((g, j) => expect(g).toBeCloseTo(want1[j]!, 5));
  });

  it('equals the full KL when the teacher puts no mass outside its top k', () => {
    setStudent([[0.3, -1.2, 2.0, 0.5, -0.1]]);
    const probs = [[0.7, 0.25, 0.05]];
    const top = lossAndGrad(probs, [[2, 0, 4]], 1.5).loss;
    const dense = Float32Array.from([0.25, 0, 0.7, 0, 0.05]);
    const negEntropy = 0.7 * Math.log(0.7) + 0.25 * Math.log(0.25) + 0.05 * Math.log(0.05);
    const full = tidy(
      () =>
        distillationLossFromSoft(student!, tf.tensor2d(dense, [1, 5]), tf.tensor1d([negEntropy]), 1.5).dataSync()[0]!,
    );
    expect(top).toBeCloseTo(full, 5);
  });

  it(
    'never exceeds the full KL (merging outcomes cannot raise a divergence), ' +
      'and is 0 when the student matches the teacher',
    () => {
      const s = [[1.0, -0.5, 0.25, 2.0, -1.0, 0.0]];
      setStudent(s);
      const t = [0.3, 1.2, -0.7, 0.1, 0.9, -2.0];
      const z = t.map((x) => Math.exp(x / 2));
      const p = Float32Array.from(z.map((x) => x / z.reduce((a, b) => a + b, 0)));
      const negEntropy = p.reduce((a, x) => a + x * Math.log(x), 0);
      const full = tidy(
        () => distillationLossFromSoft(student!, tf.tensor2d(p, [1, 6]), tf.tensor1d([negEntropy]), 2).dataSync()[0]!,
      );
      for (const k of [1, 2, 3, 5]) {
        const top = topkOfSoftTargets({ temperature: 2, probs: p, negEntropy: Float64Array.of(negEntropy) }, 6, k);
        const loss = lossAndGrad([Array.from(top.probs)], [Array.from(top.topkIds!)], 2).loss;
        expect(loss).toBeGreaterThanOrEqual(-1e-6);
        expect(loss).toBeLessThanOrEqual(full + 1e-6);
      }
      setStudent([t]); // the student's logits are the teacher's: KL 0 on any support
      const top = topkOfSoftTargets({ temperature: 2, probs: p, negEntropy: Float64Array.of(negEntropy) }, 6, 2);
      expect(Math.abs(lossAndGrad([Array.from(top.probs)], [Array.from(top.topkIds!)], 2).loss)).toBeLessThan(1e-6);
    },
  );

  it('rejects k ≥ V, ids that are not int32 and rows that do not match', () => {
    setStudent([[0, 0, 0]]);
    expect(() =>
      tidy(() =>
        distillationLossTopK(
          student!,
          tf.tensor2d([[0.5, 0.3, 0.2]]),
          tf.tensor2d([[0, 1, 2]], undefined, 'int32'),
          tf.tensor1d([0]),
          2,
        ),
      ),
    ).toThrow(/top-k of 3 for a vocabulary of 3/);
    expect(() =>
      tidy(() => distillationLossTopK(student!, tf.tensor2d([[0.5]]), tf.tensor2d([[0]]), tf.tensor1d([0]), 2)),
    ).toThrow(/must be int32/);
    expect(() =>
      tidy(() =>
        distillationLossTopK(
          student!,
          tf.tensor2d([[0.5], [0.4]]),
          tf.tensor2d([[0], [1]], undefined, 'int32'),
          tf.tensor1d([0, 0]),
          2,
        ),
      ),
    ).toThrow(/for 1 student rows/);
  });
});
