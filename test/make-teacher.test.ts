// The BERT graph written by teacher/make-teacher.ts: the embedded tiny teacher rebuilt from its weights
// gives its transformers export's logits and hidden states; a random teacher folder is usable as a teacher
// and as the source of a student.
import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { readEncoderConfig } from '../src/core/model-dir.js';
import { Teacher } from '../teacher/teacher.js';
import {
  BERT_SHAPES,
  bertConfigJson,
  bertParamShapes,
  bertToOnnx,
  syntheticVocab,
  writeRandomTeacher,
} from '../teacher/make-teacher.js';
import { copyTokenizerFiles } from '../student/io.js';
import { selectBackend } from '../student/backend.js';
import { initStudentFromTeacher } from '../student/init.js';
import { runCli } from './cli-helpers.js';
import { GOLDEN, TINY, maxAbsDiff } from './helpers.js';

const ref = SafetensorsFile.read(join(GOLDEN, 'reference.safetensors'));
const [B, T] = ref.shapeOf('masked_input_ids') as [number, number];
const request = {
  inputIds: ref.getInt32('masked_input_ids'),
  attentionMask: ref.getInt32('attention_mask'),
  batchSize: B,
  seqLen: T,
};

describe('make-teacher', () => {
  it(
    'rebuilds the tiny teacher from its weights: ' +
      'logits and all hidden states equal its transformers export within 1e-4',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'distill-rebuilt-'));
      const file = SafetensorsFile.read(join(TINY, 'model.safetensors'));
      const shapes = bertParamShapes(BERT_SHAPES.tiny);
      const weights = new Map([...shapes].map(([name, shape]) => [name, file.getFloat32(name, shape)]));
      writeFileSync(join(dir, 'model.onnx'), bertToOnnx(BERT_SHAPES.tiny, weights));
      copyFileSync(join(TINY, 'config.json'), join(dir, 'config.json'));
      copyTokenizerFiles(TINY, dir);
      const original = await Teacher.load(TINY, { hiddenStates: 'all' });
      const rebuilt = await Teacher.load(dir, { hiddenStates: 'all' });
      const a = await original.forward(request);
      const b = await rebuilt.forward(request);
      await Promise.all([original.release(), rebuilt.release()]);
      expect(b.logits.length).toBe(B * T * 6144);
      expect(maxAbsDiff(b.logits, a.logits)).toBeLessThan(1e-4);
      expect(b.hiddenStates.length).toBe(5); // found by graph surgery in our graph as in transformers'
      b.hiddenStates.forEach((h, i) =>
        expect(maxAbsDiff(h, a.hiddenStates[i]!), `hidden_states.${i}`).toBeLessThan(1e-4),
      );
    },
  );

  it('writes a random teacher folder that loads as a teacher and initialises a student', async () => {
    const shape = { vocabSize: 300, hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, maxPositions: 64 };
    const dir = join(mkdtempSync(join(tmpdir(), 'distill-random-')), 'teacher');
    const made = writeRandomTeacher(dir, shape, 7);
    const expected = [...bertParamShapes(shape).values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
    expect(made.parameters).toBe(expected);
    expect(readEncoderConfig(dir)).toMatchObject({ vocabSize: 300, hiddenSize: 32, numLayers: 2 });
    expect(readFileSync(join(dir, 'vocab.txt'), 'utf8').trim().split('\n').length).toBe(300);
    const words = SafetensorsFile.read(join(dir, 'model.safetensors')).getFloat32(
      'bert.embeddings.word_embeddings.weight',
      [300, 32],
    );
    const std = Math.sqrt(words.reduce((s, v) => s + v * v, 0) / words.length);
    expect(Math.abs(std - 0.02)).toBeLessThan(0.002);
    const teacher = await Teacher.load(dir, { hiddenStates: 'last' });
    const ids = Int32Array.from([101, 200, 250, 102, 101, 150, 102, 0]);
    const out = await teacher.forward({
      inputIds: ids,
      attentionMask: Int32Array.from(ids, (t, i) => (i === 7 ? 0 : 1)),
      batchSize: 2,
      seqLen: 4,
    });
    await teacher.release();
    expect(out.logits.length).toBe(2 * 4 * 300);
    expect(out.logits.every(Number.isFinite)).toBe(true);
    await selectBackend('wasm');
    const student = initStudentFromTeacher(dir, readEncoderConfig(dir), [0], 0);
    expect(student.config).toMatchObject({ dim: 32, n_layers: 1, vocab_size: 300 });
    const logits = tf.tidy(() =>
      student
        .forward(tf.tensor2d(ids, [2, 4], 'int32'), tf.ones([2, 4], 'int32') as tf.Tensor2D, { training: false })
        .logits.dataSync(),
    );
    expect(logits.length).toBe(2 * 4 * 300);
    student.dispose();
  });

  it('lays out the vocabulary as bert-base-cased and the config as transformers', () => {
    const v = syntheticVocab(28996);
    expect(v.length).toBe(28996);
    expect(new Set(v).size).toBe(28996);
    expect([v[0], v[100], v[101], v[102], v[103]]).toEqual(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
    expect(bertConfigJson(BERT_SHAPES.base)).toMatchObject({
      model_type: 'bert',
      hidden_size: 768,
      num_hidden_layers: 12,
      vocab_size: 28996,
      intermediate_size: 3072,
    });
  });

  it('the CLI names a bad shape', () => {
    const r = runCli(['make-teacher', '--shape', 'huge', '--out', join(tmpdir(), 'never')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/--shape.*huge/);
  });
});
