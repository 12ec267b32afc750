// Paths and small helpers shared by the tests.
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';
import type { SafetensorsFile } from '../src/io/safetensors.js';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The embedded tiny teacher (a copy of ../shared/fixtures/tiny-bert-cased without the golden numbers). */
export const TINY = join(REPO, 'teacher', 'tiny-bert-cased');
/** Golden numbers of one distillation step (reference.json, reference.safetensors). */
export const GOLDEN = join(REPO, 'test', 'fixtures', 'tiny-bert-cased');
/** The shared fixture folder, present in the workplace and in CI, absent in a user's fresh clone. */
export const SHARED_TINY = join(REPO, '..', 'shared', 'fixtures', 'tiny-bert-cased');
export const HAVE_SHARED = existsSync(join(SHARED_TINY, 'model-hidden.onnx'));

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function relDiff(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
}

/** The golden batch (reference.safetensors) and the teacher's outputs on it. */
export function goldenBatch(ref: SafetensorsFile): {
  B: number; T: number; maskedIds: Int32Array; attention: Int32Array; labels: Int32Array; teacherLogits: Float32Array; teacherLast: Float32Array;
} {
  const [B, T] = ref.shapeOf('masked_input_ids') as [number, number];
  const hidden = ref.getFloat32('teacher_hidden_states'); // [L+1, B, T, H]
  const layerSize = hidden.length / ref.shapeOf('teacher_hidden_states')[0]!;
  return {
    B, T,
    maskedIds: ref.getInt32('masked_input_ids'),
    attention: ref.getInt32('attention_mask'),
    labels: ref.getInt32('mlm_labels'),
    teacherLogits: ref.getFloat32('teacher_logits'),
    teacherLast: hidden.subarray(hidden.length - layerSize),
  };
}
