// distill export: the student as ONNX, equal to the tfjs student, usable as a model folder.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Teacher } from '../teacher/teacher.js';
import { selectBackend } from '../student/backend.js';
import { loadStudent } from '../student/io.js';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { runCli } from './cli-helpers.js';
import { GOLDEN, TINY, maxAbsDiff } from './helpers.js';

const work = mkdtempSync(join(tmpdir(), 'distill-export-'));
const ref = SafetensorsFile.read(join(GOLDEN, 'reference.safetensors'));
const [B, T] = ref.shapeOf('masked_input_ids') as [number, number];

describe('distill export --format onnx', () => {
  it(
    'writes a model folder whose logits and hidden states ' + 'equal the tfjs student (and PyTorch) within 1e-4',
    async () => {
      const student = join(work, 'student');
      const exported = join(work, 'onnx');
      expect(runCli(['init-student', '--teacher', TINY, '--out', student]).status).toBe(0);
      const r = runCli(['export', '--student', student, '--format', 'onnx', '--out', exported]);
      expect(r.status, r.stderr).toBe(0);

      const onnx = await Teacher.load(exported, { optionName: '--model' });
      expect(onnx.surgery).toBe(false); // hidden_states.* are graph outputs
      expect(onnx.config.modelType).toBe('distilbert');
      const ids = ref.getInt32('masked_input_ids');
      const mask = ref.getInt32('attention_mask');
      const out = await onnx.forward({ inputIds: ids, attentionMask: mask, batchSize: B, seqLen: T });
      await onnx.release();

      await selectBackend('wasm');
      const s = loadStudent(student);
      const [logits, hidden] = tf.tidy(() => {
        const o = s.forward(tf.tensor2d(ids, [B, T], 'int32'), tf.tensor2d(mask, [B, T], 'int32'), { training: false });
        return [o.logits.dataSync() as Float32Array, o.hiddenStates.map((h) => h.dataSync() as Float32Array)] as const;
      });
      s.dispose();
      expect(maxAbsDiff(out.logits, logits)).toBeLessThan(1e-4);
      expect(maxAbsDiff(out.logits, ref.getFloat32('student_logits'))).toBeLessThan(1e-4);
      expect(out.hiddenStates.length).toBe(3);
      out.hiddenStates.forEach((h, i) => expect(maxAbsDiff(h, hidden[i]!)).toBeLessThan(1e-4));
    },
  );

  it('serves fill-mask like any model folder', () => {
    const r = runCli([
      'fill-mask',
      '--model',
      join(work, 'onnx'),
      '--text',
      'The President of the United [MASK] delivered the address.',
      '--scores',
      '--top-k',
      '3',
    ]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { token: string; score: number }[][];
    expect(out[0]!.length).toBe(3);
    expect(out[0]![0]!.score).toBeGreaterThan(out[0]![1]!.score);
  });

  it(
    'a student folder without ONNX (a checkpoint) works as fill-mask --model, ' +
      "run with tfjs: the exported folder's predictions",
    () => {
      const student = join(work, 'student-no-onnx');
      expect(runCli(['init-student', '--teacher', TINY, '--out', student, '--no-onnx']).status).toBe(0);
      const text = [
        '--text',
        'The President of the United [MASK] delivered the address.',
        'It was the [MASK] of times.',
        '--scores',
        '--top-k',
        '5',
      ];
      const viaTfjs = runCli(['fill-mask', '--model', student, ...text]);
      expect(viaTfjs.status, viaTfjs.stderr).toBe(0);
      expect(viaTfjs.stderr).toContain(
        "holds a student without ONNX (a checkpoint or init-student's folder): running it with tfjs",
      );
      const viaOnnx = runCli(['fill-mask', '--model', join(work, 'onnx'), ...text]); // the same weights, exported above
      type Ranked = { token_id: number; score: number }[][]; // per input (one mask each): the ranked tokens
      const a = JSON.parse(viaTfjs.stdout) as Ranked;
      const b = JSON.parse(viaOnnx.stdout) as Ranked;
      expect(a).toHaveLength(2);
      expect(a.map((r) => r.map((p) => p.token_id))).toEqual(b.map((r) => r.map((p) => p.token_id)));
      // Logits agree within 1e-4 (the test above); a softmax probability moves by at most that much times itself.
      a.forEach((r, i) => r.forEach((p, k) => expect(Math.abs(p.score - b[i]![k]!.score)).toBeLessThan(1e-4)));
    },
  );

  it('a student folder given where an ONNX teacher is needed: the hint names distill export', () => {
    const config = join(work, 'student-as-teacher.json');
    writeFileSync(
      config,
      JSON.stringify({ teacher: join(work, 'student-no-onnx'), corpus: join(work, 'no-corpus'), max_steps: 1 }),
    );
    const r = runCli(['train', '--config', config, '--out', join(work, 'run-student-teacher')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/student-no-onnx\/model\.onnx: missing/);
    expect(r.stderr).toMatch(
      /hint: this is a student folder \(a checkpoint or init-student's output\): export it first with `distill export --student .*student-no-onnx --out .*student-no-onnx-onnx`/,
    );
  });

  it('names the missing weights file', () => {
    const r = runCli(['export', '--student', TINY, '--out', join(work, 'nope')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/config\.json: field "model_type" is "bert", expected "distilbert"/);
  });
});
