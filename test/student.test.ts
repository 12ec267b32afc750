// Golden tests of the student, its initialisation and the losses against PyTorch's numbers
// (test/fixtures/tiny-bert-cased/reference.*), on the `wasm` and the `cpu` backends.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { readEncoderConfig } from '../src/core/model-dir.js';
import { selectBackend } from '../student/backend.js';
import type { BackendName } from '../student/backend-names.js';
import { initStudentFromTeacher, evenlySpacedLayers, defaultStudentLayers } from '../student/init.js';
import { loadStudent, saveStudent } from '../student/io.js';
import type { DistilBertStudent } from '../student/model.js';
import { transpose2d } from '../src/core/math.js';
import { distillLosses, RECIPE_LOSS_WEIGHTS } from '../losses/total.js';
import { teacherSoftTargets } from '../src/core/soft-targets.js';
import { GOLDEN, TINY, maxAbsDiff, relDiff, tidy } from './helpers.js';
import {
  B,
  H,
  T,
  V,
  attention,
  expectGoldenGradients,
  goldenGradients,
  maskedIds,
  ref,
  rows,
  targets,
  teacherLast,
  teacherLogits,
} from './golden.js';
import { expectGradientsMatch, referenceGradients } from './gradient-check.js';
import reference from './fixtures/tiny-bert-cased/reference.json' with { type: 'json' };

it('chooses teacher layers by the evenly spaced rule', () => {
  expect(evenlySpacedLayers(12, 6)).toEqual([0, 2, 4, 7, 9, 11]);
  expect(evenlySpacedLayers(4, 2)).toEqual([0, 3]);
  expect(defaultStudentLayers(12)).toEqual([0, 2, 4, 7, 9, 11]);
  expect(defaultStudentLayers(4)).toEqual(reference.student_layers_from_teacher);
  expect(evenlySpacedLayers(24, 12)).toEqual([0, 2, 4, 6, 8, 10, 13, 15, 17, 19, 21, 23]);
});

for (const backend of ['wasm', 'cpu'] as BackendName[]) {
  describe(`student on ${backend}`, () => {
    let student: DistilBertStudent;
    beforeAll(async () => {
      await selectBackend(backend);
      student = initStudentFromTeacher(TINY, readEncoderConfig(TINY), defaultStudentLayers(4), 0);
    });
    afterAll(() => student.dispose());

    it('runs on the requested backend', () => expect(tf.getBackend()).toBe(backend));

    it("logits and hidden states equal PyTorch's within 1e-4", () => {
      const [logits, hidden] = tf.tidy(() => {
        const out = student.forward(tf.tensor2d(maskedIds, [B, T], 'int32'), tf.tensor2d(attention, [B, T], 'int32'), {
          training: false,
        });
        return [
          out.logits.dataSync() as Float32Array,
          out.hiddenStates.map((h) => h.dataSync() as Float32Array),
        ] as const;
      });
      expect(maxAbsDiff(logits, ref.getFloat32('student_logits'))).toBeLessThan(1e-4);
      const refHidden = ref.getFloat32('student_hidden_states');
      expect(hidden.length).toBe(3);
      hidden.forEach((h, i) =>
        expect(maxAbsDiff(h, refHidden.subarray(i * B * T * H, (i + 1) * B * T * H))).toBeLessThan(1e-4),
      );
    });

    for (const fused of [true, false]) {
      const path = fused ? 'fused host pass' : 'tfjs ops';
      it(`each loss is within 1e-4 relative of the reference (${path})`, () => {
        const values = tidy(() =>
          distillLosses(
            student,
            tf.tensor2d(maskedIds, [B, T], 'int32'),
            tf.tensor2d(attention, [B, T], 'int32'),
            rows,
            targets,
            RECIPE_LOSS_WEIGHTS,
            { training: false },
            { fused },
          ).values(),
        );
        expect(relDiff(values.ce, reference.loss_ce)).toBeLessThan(1e-4);
        expect(relDiff(values.mlm, reference.loss_mlm)).toBeLessThan(1e-4);
        expect(relDiff(values.cos, reference.loss_cos)).toBeLessThan(1e-4);
        expect(relDiff(values.total, reference.loss_total)).toBeLessThan(1e-4);
        const restricted = tf.tidy(
          () =>
            distillLosses(
              student,
              tf.tensor2d(maskedIds, [B, T], 'int32'),
              tf.tensor2d(attention, [B, T], 'int32'),
              rows,
              targets,
              { ...RECIPE_LOSS_WEIGHTS, restrict_ce_to_mask: true },
              { training: false },
              { fused },
            ).values().ce,
        );
        expect(relDiff(restricted, reference.loss_ce_restrict_to_mask)).toBeLessThan(1e-4);
      });
    }

    it("the tfjs-op losses from the teacher's soft targets (no logits) equal the reference within 1e-4", () => {
      const soft = teacherSoftTargets(teacherLogits, rows.realRows, V, 2, false);
      const values = tidy(() =>
        distillLosses(
          student,
          tf.tensor2d(maskedIds, [B, T], 'int32'),
          tf.tensor2d(attention, [B, T], 'int32'),
          rows,
          { lastHidden: teacherLast, soft },
          RECIPE_LOSS_WEIGHTS,
          { training: false },
          { fused: false },
        ).values(),
      );
      expect(relDiff(values.ce, reference.loss_ce)).toBeLessThan(1e-4);
      expect(relDiff(values.total, reference.loss_total)).toBeLessThan(1e-4);
      // One temperature: soft targets made at τ = 2 are refused by a loss at τ = 3, on both routes.
      for (const fused of [true, false]) {
        expect(() =>
          tidy(() =>
            distillLosses(
              student,
              tf.tensor2d(maskedIds, [B, T], 'int32'),
              tf.tensor2d(attention, [B, T], 'int32'),
              rows,
              { lastHidden: teacherLast, soft },
              { ...RECIPE_LOSS_WEIGHTS, temperature: 3 },
              { training: false },
              { fused },
            ),
          ),
        ).toThrow(/teacher soft targets are at temperature 2, the loss is at 3/);
      }
    });

    for (const fused of [true, false])
      it(
        `gradient norm within 1e-3 relative, and every per-parameter norm ` +
          `(${fused ? 'fused host pass' : 'tfjs ops'})`,
        () => {
          expectGoldenGradients(goldenGradients(student, false, fused));
        },
      );

    it(
      'the gradient check sees a zeroed, a random-direction and a ' +
        'transposed gradient, on the largest tensor and a square one',
      () => {
        const { tensors } = goldenGradients(student);
        const reference = referenceGradients(GOLDEN);
        expect(() => expectGradientsMatch(tensors, reference)).not.toThrow();
        const wrong = (name: string, g: Float32Array): Map<string, Float32Array> => new Map(tensors).set(name, g);
        const emb = 'distilbert.embeddings.word_embeddings.weight';
        const g = tensors.get(emb)!;
        // A random direction of the same norm.
        const random = Float32Array.from({ length: g.length }, (_, i) => (Math.sin(i * 12.9898) * 43758.5453) % 1);
        const gNorm = Math.sqrt(g.reduce((s, x) => s + x * x, 0));
        const rNorm = Math.sqrt(random.reduce((s, x) => s + x * x, 0));
        for (let i = 0; i < random.length; i++) random[i] = (random[i]! * gNorm) / rNorm;
        for (const [what, bad] of [
          ['zeroed', new Float32Array(g.length)],
          ['random', random],
          ['transposed', transpose2d(g, V, H)],
        ] as const) {
          expect(() => expectGradientsMatch(wrong(emb, bad), reference), `${what} word_embeddings`).toThrow(
            /word_embeddings\.weight: ‖g − g_ref‖/,
          );
        }
        const q = 'distilbert.transformer.layer.0.attention.q_lin.weight';
        expect(() => expectGradientsMatch(wrong(q, transpose2d(tensors.get(q)!, H, H)), reference)).toThrow(
          /q_lin\.weight: ‖g − g_ref‖/,
        );
      },
    );

    it('keeps tf.memory().numTensors flat over 10 forward/backward steps', () => {
      goldenGradients(student);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 10; i++) goldenGradients(student);
      expect(tf.memory().numTensors).toBe(before);
    });

    it('saves as a DistilBERT folder and loads back the same weights', () => {
      const dir = mkdtempSync(join(tmpdir(), 'distill-student-'));
      saveStudent(student, dir);
      const again = loadStudent(dir);
      const a = student.hfWeights();
      const b = again.hfWeights();
      for (const [name, t] of a) expect(maxAbsDiff(t.data, b.get(name)!.data), name).toBe(0);
      again.dispose();
    });
  });
}
