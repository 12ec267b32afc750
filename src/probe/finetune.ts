// Fine-tuning the student with a head (the teacher, an ONNX graph, stays frozen and is probed linearly), with
// the training loop's update step.

import * as tf from '@tensorflow/tfjs';
import { loadStudent } from '../../student/io.js';
import type { DistilBertStudent } from '../../student/model.js';
import { selectBackend } from '../../student/backend.js';
import type { BackendName } from '../../student/backend-names.js';
import { WordPieceTokenizer } from '../../corpus/tokenizer.js';
import { Rng } from '../../corpus/rng.js';
import { UpdateStep } from '../train/step.js';
import { AdamW } from '../train/adamw.js';
import { encodeExample, padBatch, type Pooling } from './features.js';
import { scoreMetrics, type Metrics } from './metrics.js';
import type { Task } from './tasks.js';

export interface FinetuneOptions {
  epochs: number;
  lr: number;
  batchSize: number;
  pooling: Pooling;
  seed: number;
  backend?: BackendName;
  onProgress?: (done: number, total: number) => void;
}

/** The student with a new linear head [H, C] and the optimizer over both (the MLM head takes no part). */
export interface FinetuneSetup {
  student: DistilBertStudent;
  tok: WordPieceTokenizer;
  headW: tf.Variable;
  headB: tf.Variable;
  optimizer: AdamW;
  update: UpdateStep;
}

export async function finetuneSetup(dir: string, C: number, o: FinetuneOptions): Promise<FinetuneSetup> {
  await selectBackend(o.backend);
  const student = loadStudent(dir);
  const tok = WordPieceTokenizer.fromDir(dir);
  const H = student.config.dim;
  const rng = new Rng(o.seed);
  // The head's variables hold their memory alone (the initial tensors are freed:
  // no leak, and AdamW may update in place).
  const ownedVariable = (initial: tf.Tensor, name: string): tf.Variable => {
    const v = tf.variable(initial, true, name);
    initial.dispose();
    return v;
  };
  const headW = ownedVariable(
    tf.tensor2d(
      Float32Array.from({ length: H * C }, () => (rng.next() - 0.5) * 0.04),
      [H, C],
    ),
    `probe_head_w_${o.seed}_${Date.now()}`,
  );
  const headB = ownedVariable(tf.zeros([C]), `probe_head_b_${o.seed}_${Date.now()}`);
  // The encoder and the new head: the MLM head (vocab_*) takes no part in classification.
  const encoderVars = student.specs.flatMap((spec, i) =>
    spec.name.startsWith('vocab_') ? [] : [student.variables()[i]!],
  );
  const params = [...encoderVars, headW, headB];
  const optimizer = new AdamW(
    params,
    params.map(() => true),
    { betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 },
  );
  const update = new UpdateStep(params, optimizer, { gradAccum: 1, maxGradNorm: 0 });
  return { student, tok, headW, headB, optimizer, update };
}

/** Fine-tune a copy of the student with a linear head on train (AdamW, linear decay), score dev. */
export async function finetuneStudent(
  dir: string,
  task: Task,
  o: FinetuneOptions,
): Promise<{ metrics: Metrics; tokensPerS: number; losses: number[] }> {
  const regression = task.spec.kind === 'regression';
  const C = regression ? 1 : task.classes.length;
  const { student, tok, headW, headB, optimizer, update } = await finetuneSetup(dir, C, o);
  const classOf = new Map(task.classes.map((c, i) => [c, i]));
  const encodeAll = (examples: { texts: string[] }[]): number[][] =>
    examples.map((e) => encodeExample(tok, e.texts, student.config.max_position_embeddings));
  const trainIds = encodeAll(task.train);
  const devIds = encodeAll(task.dev);
  const batchOf = (rows: number[][]): { ids: tf.Tensor2D; mask: tf.Tensor2D; weights: tf.Tensor3D } => {
    const { ids, mask, T: t } = padBatch(rows, tok.padId);
    // The pooling weights (the mask as floats) are made from the host's values, not by a cast on the device: on
    // webgpu (tfjs 4.22) the gradient through a cast int32 mask builds a Transpose shader that fails to compile.
    return {
      ids: tf.tensor2d(ids, [rows.length, t], 'int32'),
      mask: tf.tensor2d(mask, [rows.length, t], 'int32'),
      weights: tf.tensor3d(Float32Array.from(mask), [rows.length, t, 1]), // [B, T, 1]
    };
  };
  const pooled = (
    { ids, mask, weights }: { ids: tf.Tensor2D; mask: tf.Tensor2D; weights: tf.Tensor3D },
    training: boolean,
    seed: number,
  ): tf.Tensor2D => {
    const hidden = student.encode(ids, mask, { training, dropoutSeed: seed });
    const last = hidden[hidden.length - 1]!; // [B, T, H]
    if (o.pooling === 'cls') return tf.squeeze(tf.slice(last, [0, 0, 0], [-1, 1, -1]), [1]) as tf.Tensor2D;
    return tf.div(tf.sum(tf.mul(last, weights), 1), tf.sum(weights, 1)) as tf.Tensor2D;
  };
  const steps = o.epochs * Math.ceil(trainIds.length / o.batchSize);
  let step = 0;
  let tokens = 0;
  let ms = 0;
  /** The training loss of each fine-tuning update. */
  const losses: number[] = [];
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const order = trainIds.map((_, i) => i);
    Rng.derive(o.seed, epoch).shuffle(order);
    for (let s = 0; s < order.length; s += o.batchSize) {
      const rows = order.slice(s, s + o.batchSize);
      const t0 = performance.now();
      // The training loop's update step (src/train/step.ts): forward + backward, then AdamW (no clipping).
      const [loss] = await update.accumulate(() => {
        const out = tf.add(
          tf.matMul(pooled(batchOf(rows.map((i) => trainIds[i]!)), true, o.seed * 1000 + step), headW),
          headB,
        ); // [B, C]
        const loss = regression
          ? tf.losses.meanSquaredError(
              tf.tensor2d(
                rows.map((i) => Number(task.train[i]!.label)),
                [rows.length, 1],
              ),
              out,
            )
          : tf.losses.softmaxCrossEntropy(
              tf.oneHot(
                tf.tensor1d(
                  rows.map((i) => classOf.get(task.train[i]!.label)!),
                  'int32',
                ),
                C,
              ),
              out,
            );
        return { loss: loss as tf.Scalar, report: tf.reshape(loss, [1]) as tf.Tensor1D };
      });
      await update.apply(o.lr * (1 - step / steps));
      losses.push(loss!);
      ms += performance.now() - t0;
      tokens += rows.reduce((n, i) => n + trainIds[i]!.length, 0);
      step++;
      o.onProgress?.(step, steps);
    }
  }
  const predictions: number[][] = [];
  for (let s = 0; s < devIds.length; s += o.batchSize) {
    const rows = devIds.slice(s, s + o.batchSize);
    const scores = tf.tidy(() => {
      return tf.add(tf.matMul(pooled(batchOf(rows), false, 0), headW), headB);
    });
    predictions.push(...((await scores.array()) as number[][]));
    scores.dispose();
  }
  optimizer.dispose();
  tf.dispose([headW, headB]);
  student.dispose();
  const gold = task.dev.map((e) => e.label);
  const predicted = regression
    ? predictions.map((p) => p[0]!)
    : predictions.map((p) => task.classes[p.indexOf(Math.max(...p))]!);
  return { metrics: scoreMetrics(task, predicted, gold), tokensPerS: tokens / (ms / 1000), losses };
}
