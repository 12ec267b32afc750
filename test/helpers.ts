// Paths and small helpers shared by the tests.
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import { dirname, join, relative } from 'node:path';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { SafetensorsFile } from '../src/core/safetensors.js';
import { selectBackend } from '../student/backend.js';
import { publicDomainParagraphs } from '../corpus/public-domain.js';
import { Rng } from '../corpus/rng.js';
import { OnnxGraphBuilder } from '../src/core/onnx-writer.js';
import { appendToGraph } from '../src/core/onnx.js';
import { softTargetNodes } from '../teacher/soft-targets.js';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The embedded tiny teacher (the workplace's tiny-bert-cased fixture without the golden numbers). */
export const TINY = join(REPO, 'teacher', 'tiny-bert-cased');
/**
 * Golden numbers of one distillation step (reference.json, reference.safetensors, gradients.safetensors), and the
 * teacher exported with every hidden state (model-hidden.onnx).
 */
export const GOLDEN = join(REPO, 'test', 'fixtures', 'tiny-bert-cased');

/**
 * Whether a group of tests that needs a system component (OpenBLAS, OpenMPI, a Vulkan driver, root for mounts) can run:
 * `missing` says why not, or is undefined. On a developer's machine a missing component skips the group, saying so
 * (console.warn). Under CI=true it is an error instead: .ci/run installs every component, so a skip there would hide
 * a broken install (the second pass leaves out by name, with --exclude, what it does not run).
 */
export function canRun(file: string, missing: string | undefined): boolean {
  if (missing === undefined) return true;
  if (process.env['CI'] === 'true')
    throw new Error(`${file}: ${missing}: CI installs it (.ci/run), so these tests must run, not skip`);
  console.warn(`${file}: skipped: ${missing}`);
  return false;
}

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
  B: number;
  T: number;
  maskedIds: Int32Array;
  attention: Int32Array;
  labels: Int32Array;
  teacherLogits: Float32Array;
  teacherLast: Float32Array;
} {
  const [B, T] = ref.shapeOf('masked_input_ids') as [number, number];
  const hidden = ref.getFloat32('teacher_hidden_states'); // [L+1, B, T, H]
  const layerSize = hidden.length / ref.shapeOf('teacher_hidden_states')[0]!;
  return {
    B,
    T,
    maskedIds: ref.getInt32('masked_input_ids'),
    attention: ref.getInt32('attention_mask'),
    labels: ref.getInt32('mlm_labels'),
    teacherLogits: ref.getFloat32('teacher_logits'),
    teacherLast: hidden.subarray(hidden.length - layerSize),
  };
}

/**
 * Why WebGPU cannot run here, or undefined when it starts: only "not installed" (the optional packages) and
 * "no adapter" (no Vulkan driver) are reasons to skip; any other error is thrown, so the test fails.
 */
export async function webgpuUnavailable(): Promise<string | undefined> {
  try {
    await selectBackend('webgpu');
    return undefined;
  } catch (e) {
    const message = (e as Error).message;
    if (/the webgpu backend is not installed|found no adapter/.test(message))
      return `${message} (.ci/run installs Mesa 25's software Vulkan driver)`;
    throw e;
  }
}

/** A student folder's (or checkpoint's) weights by name, as stored (transformers' layout). */
export function folderWeights(dir: string): Map<string, Float32Array> {
  const file = SafetensorsFile.read(join(dir, 'model.safetensors'));
  return new Map(file.names().map((n) => [n, file.getFloat32(n)]));
}

export interface WeightDifference {
  /** Largest |w − w_ref| over all weights, in units of `lr`. */
  maxAbsInLr: number;
  /** Root mean square of w − w_ref over all weights, in units of `lr`. */
  rmsInLr: number;
}

/** How far two sets of weights (same names and sizes) lie apart, in units of a learning rate. */
export function weightDifference(
  weights: Map<string, Float32Array>,
  reference: Map<string, Float32Array>,
  lr: number,
): WeightDifference {
  const names = [...reference.keys()].sort();
  if (JSON.stringify([...weights.keys()].sort()) !== JSON.stringify(names))
    throw new Error(`parameter names differ: ${[...weights.keys()].sort().join(',')} vs ${names.join(',')}`);
  let max = 0;
  let sq = 0;
  let n = 0;
  for (const name of names) {
    const w = weights.get(name)!;
    const r = reference.get(name)!;
    if (w.length !== r.length) throw new Error(`${name}: ${w.length} values vs ${r.length}`);
    for (let i = 0; i < w.length; i++) {
      const d = Math.abs(w[i]! - r[i]!);
      if (d > max) max = d;
      sq += d * d;
    }
    n += w.length;
  }
  return { maxAbsInLr: max / lr, rmsInLr: Math.sqrt(sq / n) / lr };
}

/**
 * Final weights of two runs that should agree up to float32 rounding, in units of lr, after updates with
 * learning rates `lrs`. AdamW moves a weight by lr_t·m̂/(√v̂ + eps) per update, and |m̂/√v̂| ≤ 1 in the first
 * updates (exactly 1 at the first: g/|g|) whatever the size of the gradient. Where a gradient element is
 * float32 rounding noise (another summation order, another product blocking: another CPU, BLAS kernel,
 * backend or number of ranks), its sign may differ and that weight may move the other way: the two runs may
 * then lie up to 2·Σ_t lr_t apart there, and no further: a sound bound on any machine, but too loose to see a
 * wrong step. So the aggregate is held too: the root mean square difference within 0.05·lr, i.e. at most
 * 0.05²/(2·Σ lr_t/lr)² of the weights (3.9e-5 of them after 8 updates of the reference's schedule) may flip
 * all the way. A wrong step (stale weights, a dropped gradient term, a transposed gradient, a wrong
 * schedule) moves most weights differently by a sizeable fraction of lr each: stale weights measured 0.67 to
 * 0.97 lr RMS after the reference's 8 updates, where the paths measured here stay below 3e-4 lr RMS. The PyTorch
 * replays pass a tighter RMS bound of their own, set from the measured noise (test/updates.ts, WEIGHT_RMS_BOUND).
 */
export function expectWeightsAgree(d: WeightDifference, lrs: number[], lr: number, rmsBound = 0.05): void {
  const sum = lrs.reduce((a, b) => a + b, 0);
  if (!(d.maxAbsInLr <= (2 * sum) / lr))
    throw new Error(`largest weight difference ${d.maxAbsInLr} lr exceeds 2·Σ lr_t = ${(2 * sum) / lr} lr`);
  if (!(d.rmsInLr < rmsBound))
    throw new Error(`root mean square weight difference ${d.rmsInLr} lr exceeds ${rmsBound} lr`);
}

/** A digest of every file under `dir` (names and bytes): equal digests, nothing changed. */
export function folderDigest(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else h.update(relative(dir, p)).update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}

/**
 * tf.tidy for any result: tensors made inside are freed except those the result holds (tf.tidy does this for
 * objects at run time; its types accept only tensor containers, not the numbers and records tests return).
 */
export function tidy<T>(fn: () => T): T {
  return tf.tidy(fn as unknown as () => tf.TensorContainer) as unknown as T;
}

/**
 * A small training run on the tiny teacher in a new scratch folder: 60 paragraphs of Moby-Dick as the corpus
 * text, sequences of 32, batches of 4, with `keys` on top. Returns the folder and the config file's path.
 */
export function tinyRunConfig(name: string, keys: Record<string, unknown>): { work: string; configPath: string } {
  const work = mkdtempSync(join(tmpdir(), `distill-${name}-`));
  const text = join(work, 'moby.txt');
  writeFileSync(text, publicDomainParagraphs('moby-dick').slice(0, 60).join('\n') + '\n');
  const configPath = join(work, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      teacher: TINY,
      corpus: join(work, 'corpus'),
      corpus_inputs: [text],
      max_length: 32,
      batch_size: 4,
      grad_accum: 1,
      ...keys,
    }),
  );
  return { work, configPath };
}

/**
 * The soft-target nodes alone as a model on an input `logits` [1, N, V] (teacher/soft-targets.ts), with top-k in one
 * stage (topkGroup Infinity) or in two stages over groups of `topkGroup` (with `webgpu`,
 * the WebGPU provider's form of log p).
 */
export function softTargetModel(
  n: number,
  v: number,
  k: number,
  topkGroup: number,
  opset = 17,
  webgpu = false,
): Uint8Array {
  const builder = new OnnxGraphBuilder();
  builder.input('logits', 'float', [1, n, v]);
  return appendToGraph(
    builder.encode('soft_targets', opset, 'distill-test'),
    softTargetNodes('logits', v, 2, { topk: k, opset, topkGroup, webgpu }),
  );
}

/**
 * Logits [n, v] that hold exact ties spread over the row: steps of 1/400 from 0 to 10 (4001 values, about 1.5
 * copies of each in a row of 6144), so equal probabilities meet in most rows' top k, and the largest lie anywhere.
 */
export function tiedLogits(n: number, v: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n * v }, () => rng.int(4001) / 400);
}

/**
 * Logits [n, v] whose softmax at τ = 2 spans the float32 range: per row one token at 0, a spread from −2 to −40, and
 * a third of the row at −400, whose exp(−200) underflows to p = 0 (where a naive p·log p is 0·(−∞) = NaN).
 */
export function underflowingLogits(n: number, v: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n * v }, (_, i) =>
    i % v === 0 ? 0 : i % 3 === 0 ? -400 : -2 - rng.int(3801) / 100,
  );
}

/**
 * A bound on |computed − exact| for Σ_v p log p computed in float32 (u = 2^-24), worst case over summation orders:
 * each p = exp(s − max)/Z has a relative error under (v + 2)u (Z summed over v terms: (v − 1)u; exp, within
 * 2 ulps; the division: u), which moves Σ p log p by at most (v + 2)u·Σ p|1 + log p|; log p and the product p·log p
 * add 2u·Σ|p log p|, and summing v terms (v − 1)u·Σ|p log p|. In all, under (2v + 4)u·Σ(|p log p| + p), taken
 * from the row's float32 probabilities `probs`.
 */
export function negEntropyBound(probs: ArrayLike<number>, from: number, v: number): number {
  let s = 0;
  for (let j = 0; j < v; j++) {
    const p = probs[from + j]!;
    if (p > 0) s += Math.abs(p * Math.log(p)) + p;
  }
  return (2 * v + 4) * 2 ** -24 * s;
}
