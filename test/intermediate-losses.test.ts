// The intermediate-layer losses (losses/attention.ts, value-relation.ts, hidden-mse.ts, relation.ts) on values
// worked by hand, and the layer map (losses/layer-map.ts). Their agreement with PyTorch over whole training runs
// is test/updates.ts's tiny-narrow and unseen-relations references, on every path.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { attentionLoss } from '../losses/attention.js';
import { hiddenMseLoss } from '../losses/hidden-mse.js';
import { valueRelationLoss } from '../losses/value-relation.js';
import { relationKl } from '../losses/relation.js';
import { intermediatePlan, uniformLayerMap } from '../losses/layer-map.js';

await tf.setBackend('cpu'); // hand-worked values; the replays of test/updates.ts run these losses on every backend

const value = (t: tf.Scalar): number => {
  const v = t.dataSync()[0]!;
  t.dispose();
  return v;
};

describe('relation KL and attention transfer', () => {
  // Teacher rows [0.5, 0.5] and [1, 0]; student rows [0.25, 0.75] and [0.5, 0.5]:
  // KL row 0 = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3); row 1 = 1·ln(1/0.5) + 0·ln 0 (= 0) = ln 2.
  const tProbs = (): tf.Tensor4D => tf.tensor4d([0.5, 0.5, 1, 0], [1, 1, 2, 2]);
  const sLog = (): tf.Tensor4D => tf.tensor4d([0.25, 0.75, 0.5, 0.5].map(Math.log), [1, 1, 2, 2]);

  it('is the mean over the real query rows of Σ p_t ln(p_t/p_s), with 0·ln 0 = 0', () => {
    expect(value(relationKl('t', tProbs(), sLog(), tf.tensor2d([1, 1], [1, 2])))).toBeCloseTo(
      (0.5 * Math.log(4 / 3) + Math.log(2)) / 2,
      6,
    );
    // A padding query row is left out of the mean.
    expect(value(relationKl('t', tProbs(), sLog(), tf.tensor2d([1, 0], [1, 2])))).toBeCloseTo(0.5 * Math.log(4 / 3), 6);
  });

  it("attentionLoss takes the student's scores: its gradient is (softmax(s) − p_t) / (heads · rows)", () => {
    const scores = sLog(); // log-probabilities are scores whose softmax is the student's rows
    const g = tf.grad((s: tf.Tensor) => attentionLoss([s as tf.Tensor4D], [tProbs()], tf.tensor2d([1, 1], [1, 2])))(
      scores,
    );
    const want = [0.25 - 0.5, 0.75 - 0.5, 0.5 - 1, 0.5 - 0].map((x) => x / 2);
    Array.from(g.dataSync()).forEach((x, i) => expect(x).toBeCloseTo(want[i]!, 6));
    expect(value(attentionLoss([scores, scores], [tProbs(), tProbs()], tf.tensor2d([1, 1], [1, 2])))).toBeCloseTo(
      (0.5 * Math.log(4 / 3) + Math.log(2)) / 2,
      6,
    );
  });

  it('refuses shapes that differ, naming the loss', () => {
    expect(() =>
      relationKl('loss_att', tProbs(), tf.zeros([1, 2, 2, 2]) as tf.Tensor4D, tf.ones([1, 2]) as tf.Tensor2D),
    ).toThrow(/loss_att: s_log_probs is \[1,2,2,2\] but t_probs is \[1,1,2,2\]/);
    expect(() => relationKl('loss_att', tProbs(), sLog(), tf.ones([1, 3]) as tf.Tensor2D)).toThrow(
      /query_mask is \[1,3\]/,
    );
  });
});

describe('value relations', () => {
  it('softmax(v·vᵀ/√d) of each side over the real keys, then the KL: worked for one head', () => {
    // Teacher values [[1, 0], [0, 1]] (d = 2): row 0 scores [1/√2, 0] → p = [σ, 1 − σ] with σ = 1/(1 + e^{−1/√2});
    // row 1 the mirror. Student values 0: uniform rows. KL per row = σ ln(2σ) + (1 − σ) ln(2(1 − σ)).
    const s = 1 / (1 + Math.exp(-1 / Math.SQRT2));
    const kl = s * Math.log(2 * s) + (1 - s) * Math.log(2 * (1 - s));
    expect(
      value(
        valueRelationLoss(
          tf.zeros([2, 2]) as tf.Tensor2D,
          tf.tensor2d([1, 0, 0, 1], [2, 2]),
          tf.tensor2d([1, 1], [1, 2]),
          1,
        ),
      ),
    ).toBeCloseTo(kl, 6);
    // A third, padding position changes nothing: its key gets probability 0, its query row is left out.
    expect(
      value(
        valueRelationLoss(
          tf.tensor2d([0, 0, 0, 0, 5, 5], [3, 2]),
          tf.tensor2d([1, 0, 0, 1, 9, 9], [3, 2]),
          tf.tensor2d([1, 1, 0], [1, 3]),
          1,
        ),
      ),
    ).toBeCloseTo(kl, 6);
  });

  it('the widths may differ; the relation heads must divide both', () => {
    expect(
      value(
        valueRelationLoss(
          tf.ones([2, 4]) as tf.Tensor2D,
          tf.ones([2, 2]) as tf.Tensor2D,
          tf.tensor2d([1, 1], [1, 2]),
          2,
        ),
      ),
    ).toBeCloseTo(0, 6);
    expect(() =>
      valueRelationLoss(tf.ones([2, 3]) as tf.Tensor2D, tf.ones([2, 2]) as tf.Tensor2D, tf.tensor2d([1, 1], [1, 2]), 2),
    ).toThrow(/width 3 is not a multiple of relation_heads 2/);
  });
});

describe('hidden-state MSE', () => {
  it('is the mean over the pairs of the mean squared difference', () => {
    // Pair 1: (1² + 2²)/2 = 2.5; pair 2: (1 + 1)/2 = 1.
    expect(
      value(
        hiddenMseLoss([tf.tensor2d([[1, 2]]), tf.tensor2d([[0, 0]])], [tf.tensor2d([[0, 0]]), tf.tensor2d([[1, 1]])]),
      ),
    ).toBeCloseTo(1.75, 6);
    expect(() => hiddenMseLoss([tf.tensor2d([[1, 2]])], [tf.tensor2d([[1, 2, 3]])])).toThrow(
      /loss_hidden: s_hidden\[0\] is \[1,2\] but t_hidden\[0\] is \[1,3\]/,
    );
  });
});

describe('layer map', () => {
  const off = { alpha_hidden: 0, alpha_attention: 0, alpha_value_relation: 0, layer_map: null, relation_heads: null };
  it('uniform: student layer i ↔ teacher layer ⌈(i+1)·Lt/Ls⌉ − 1', () => {
    expect(uniformLayerMap(6, 12)).toEqual([1, 3, 5, 7, 9, 11]);
    expect(uniformLayerMap(2, 4)).toEqual([1, 3]);
    expect(uniformLayerMap(4, 6)).toEqual([1, 2, 4, 5]);
  });

  it('asks the teacher only for what the losses set read', () => {
    const student = { layers: 2, hidden: 96, heads: 4 };
    const teacher = { layers: 4, hidden: 192, heads: 4 };
    expect(intermediatePlan(student, teacher, off)).toBeUndefined();
    const att = intermediatePlan(student, teacher, { ...off, alpha_attention: 1 })!;
    expect(att.attentionPerHead).toBe(true);
    expect(att.keys).toEqual(['attention.1', 'attention.3']);
    const hid = intermediatePlan(student, teacher, { ...off, alpha_hidden: 1 })!;
    expect(hid.hiddenPairs).toEqual([
      [0, 0],
      [1, 2],
      [2, 4],
    ]);
    expect(hid.keys).toEqual(['hidden.0', 'hidden.2', 'hidden.4']);
    const rel = intermediatePlan({ ...student, heads: 2 }, teacher, {
      ...off,
      alpha_attention: 1,
      alpha_value_relation: 1,
      layer_map: [0, 2],
    })!;
    expect(rel.attentionPerHead).toBe(false);
    expect(rel.keys).toEqual(['query.0', 'key.0', 'query.2', 'key.2', 'value.2']);
  });

  it('names the key when the map or the relation heads do not fit', () => {
    const student = { layers: 2, hidden: 96, heads: 4 };
    const teacher = { layers: 4, hidden: 192, heads: 4 };
    expect(() => intermediatePlan(student, teacher, { ...off, alpha_hidden: 1, layer_map: [1] }, 'run.json')).toThrow(
      /run.json: "layer_map" has 1 entries, the student has 2 layers/,
    );
    expect(() => intermediatePlan(student, teacher, { ...off, alpha_hidden: 1, layer_map: [1, 4] })).toThrow(
      /"layer_map" names teacher layer 4; the teacher has layers 0..3/,
    );
    expect(() => intermediatePlan(student, teacher, { ...off, alpha_value_relation: 1, relation_heads: 5 })).toThrow(
      /relation_heads does not divide the student's hidden size 96/,
    );
    expect(() =>
      intermediatePlan({ layers: 6, hidden: 96, heads: 4 }, teacher, { ...off, alpha_attention: 1 }),
    ).toThrow(/no uniform layer_map/);
  });
});
