// Paths and small helpers shared by the tests.
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';

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
