// A BERT unlike the tiny fixture (test/fixtures/make_unseen_bert.py): 6 layers × 96, 6 heads, an uncased
// vocab.txt-only tokenizer of 5730 tokens, a logits-only opset-14 ONNX export (LayerNorm decomposed) without
// token_type_ids, and PyTorch's numbers for one distillation step. Nothing in the code is tuned to either.
import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Teacher } from '../teacher/teacher.js';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { runCli } from './cli-helpers.js';
import { REPO, goldenBatch, maxAbsDiff, relDiff } from './helpers.js';
import { goldenGradients } from './golden.js';
import { expectGradientsMatch, referenceGradients } from './gradient-check.js';
import { readEncoderConfig } from '../src/core/model-dir.js';
import { selectBackend } from '../student/backend.js';
import { initStudentFromTeacher } from '../student/init.js';
import { lossRows } from '../losses/rows.js';
import golden from './fixtures/unseen-bert-uncased/golden.json' with { type: 'json' };

const DIR = join(REPO, 'test', 'fixtures', 'unseen-bert-uncased');
const ref = SafetensorsFile.read(join(DIR, 'golden.safetensors'));
const [B, T] = ref.shapeOf('masked_input_ids') as [number, number];
const H = 96;

describe('an unseen BERT export', () => {
  it(
    'teacher: logits and all 7 hidden states by surgery ' + 'on decomposed LayerNorms equal PyTorch within 1e-4',
    async () => {
      const teacher = await Teacher.load(DIR);
      expect(teacher.surgery).toBe(true);
      expect(teacher.tokenizer.info).toMatchObject({ lowercase: true, stripAccents: true });
      const out = await teacher.forward({
        inputIds: ref.getInt32('masked_input_ids'),
        attentionMask: ref.getInt32('attention_mask'),
        batchSize: B,
        seqLen: T,
      });
      expect(maxAbsDiff(out.logits, ref.getFloat32('teacher_logits'))).toBeLessThan(1e-4);
      const hidden = ref.getFloat32('teacher_hidden_states');
      expect(out.hiddenStates.length).toBe(7);
      out.hiddenStates.forEach((h, i) =>
        expect(maxAbsDiff(h, hidden.subarray(i * B * T * H, (i + 1) * B * T * H)), `hidden ${i}`).toBeLessThan(1e-4),
      );
      await teacher.release();
    },
  );

  it('init-student takes layers [0, 3, 5]; eval-batch reproduces PyTorch on wasm and cpu', () => {
    const student = join(mkdtempSync(join(tmpdir(), 'distill-unseen-')), 'student');
    const init = runCli(['init-student', '--teacher', DIR, '--out', student]);
    expect(init.status, init.stderr).toBe(0);
    expect((JSON.parse(init.stdout) as { teacher_layers: number[] }).teacher_layers).toEqual(
      golden.student_layers_from_teacher,
    );
    for (const backend of ['wasm', 'cpu']) {
      const r = runCli([
        'eval-batch',
        '--teacher',
        DIR,
        '--student',
        student,
        '--batch',
        join(DIR, 'golden.safetensors'),
        '--backend',
        backend,
      ]);
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as Record<string, number>;
      for (const k of ['loss_ce', 'loss_mlm', 'loss_cos'] as const)
        expect(relDiff(out[k]!, golden[k]), `${k} on ${backend}`).toBeLessThan(1e-4);
      expect(relDiff(out['loss_total']!, golden.loss_total)).toBeLessThan(1e-4);
      expect(relDiff(out['grad_norm']!, golden.student_grad_norm)).toBeLessThan(1e-3);
    }
  });

  it("every gradient tensor equals PyTorch's (‖g − g_ref‖ ≤ 1e-3·‖g_ref‖), on wasm", async () => {
    await selectBackend('wasm');
    const student = initStudentFromTeacher(DIR, readEncoderConfig(DIR), golden.student_layers_from_teacher, 0);
    const batch = goldenBatch(ref);
    const rows = lossRows(batch.attention, batch.labels, B, T, student.config.vocab_size);
    const { loss, tensors } = goldenGradients(student, false, true, {
      B,
      T,
      maskedIds: batch.maskedIds,
      attention: batch.attention,
      rows,
      targets: { logits: batch.teacherLogits, lastHidden: batch.teacherLast },
    });
    student.dispose();
    expect(relDiff(loss, golden.loss_total)).toBeLessThan(1e-4);
    expectGradientsMatch(tensors, referenceGradients(DIR));
  });

  it('fill-mask works on the uncased model with [MASK] and [mask]', () => {
    const upper = runCli(['fill-mask', '--model', DIR, '--text', 'The [MASK] of the UNITED States.']);
    const lower = runCli(['fill-mask', '--model', DIR, '--text', 'the [mask] of the united states.']);
    expect(upper.status, upper.stderr).toBe(0);
    expect(upper.stdout).toBe(lower.stdout);
  });
});
