// Fine-tuning the student for extractive QA: a linear head [H, 2] gives start and end scores at every position;
// the cross-entropy of the gold start and end over [CLS] and the window's context positions (the others masked
// out), with the training loop's update step; dev answered as src/probe/qa-probe.ts answers, scored as SQuAD.

import * as tf from '@tensorflow/tfjs';
import { Rng } from '../../corpus/rng.js';
import { finetuneSetup, type FinetuneOptions } from './finetune.js';
import { padBatch } from './features.js';
import type { Metrics } from './metrics.js';
import { encodeQa, goldRows, predictAnswers, qaMetrics, scoredPositions, type QaInput } from './qa-probe.js';
import type { QaTask } from './qa.js';

/** A padded batch of windows and, per window, the additive mask of the positions its head scores ([B, T]). */
function batchOf(rows: QaInput[], padId: number): { ids: tf.Tensor2D; mask: tf.Tensor2D; allowed: tf.Tensor2D } {
  const { ids, mask, T } = padBatch(
    rows.map((r) => r.ids),
    padId,
  );
  const allowed = new Float32Array(rows.length * T).fill(-1e9);
  rows.forEach((r, i) => {
    for (const t of scoredPositions(r)) allowed[i * T + t] = 0;
  });
  return {
    ids: tf.tensor2d(ids, [rows.length, T], 'int32'),
    mask: tf.tensor2d(mask, [rows.length, T], 'int32'),
    allowed: tf.tensor2d(allowed, [rows.length, T]),
  };
}

/** Fine-tune a copy of the student with a span head on train (AdamW, linear decay), answer dev, score as SQuAD. */
export async function finetuneReader(
  dir: string,
  task: QaTask,
  o: FinetuneOptions,
): Promise<{ metrics: Metrics; losses: number[] }> {
  const { student, tok, headW, headB, optimizer, update } = await finetuneSetup(dir, 2, o);
  const H = student.config.dim;
  const P = student.config.max_position_embeddings;
  const train = encodeQa(tok, task.train, P);
  const dev = encodeQa(tok, task.dev, P);
  /** Start and end scores [B, T] each, the unscored positions at −1e9. */
  const scores = (b: ReturnType<typeof batchOf>, training: boolean, seed: number): [tf.Tensor2D, tf.Tensor2D] => {
    const hidden = student.encode(b.ids, b.mask, { training, dropoutSeed: seed });
    const last = hidden[hidden.length - 1]!; // [B, T, H]
    const [B, T] = b.ids.shape;
    const both = tf.reshape(tf.add(tf.matMul(tf.reshape(last, [-1, H]), headW), headB), [B, T, 2]); // [B, T, 2]
    const pick = (k: number): tf.Tensor2D =>
      tf.add(tf.reshape(tf.slice(both, [0, 0, k], [-1, -1, 1]), [B, T]), b.allowed) as tf.Tensor2D;
    return [pick(0), pick(1)];
  };
  const steps = o.epochs * Math.ceil(train.inputs.length / o.batchSize);
  const losses: number[] = [];
  let step = 0;
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const order = train.inputs.map((_, i) => i);
    Rng.derive(o.seed, epoch).shuffle(order);
    for (let s = 0; s < order.length; s += o.batchSize) {
      const rows = order.slice(s, s + o.batchSize).map((i) => train.inputs[i]!);
      const b = batchOf(rows, tok.padId);
      const T = b.ids.shape[1];
      // The gold rows of scoredPositions, as positions of the padded sequence.
      const gold = rows.map((r) => goldRows(r).map((g) => scoredPositions(r)[g]!));
      const [loss] = await update.accumulate(() => {
        const [start, end] = scores(b, true, o.seed * 1000 + step);
        const ce = (logits: tf.Tensor2D, k: number): tf.Scalar =>
          tf.losses.softmaxCrossEntropy(
            tf.oneHot(
              tf.tensor1d(
                gold.map((g) => g[k]!),
                'int32',
              ),
              T,
            ),
            logits,
          ) as tf.Scalar;
        const l = tf.div(tf.add(ce(start, 0), ce(end, 1)), 2) as tf.Scalar;
        return { loss: l, report: tf.reshape(l, [1]) as tf.Tensor1D };
      });
      tf.dispose([b.ids, b.mask, b.allowed]);
      await update.apply(o.lr * (1 - step / steps));
      losses.push(loss!);
      step++;
      o.onProgress?.(step, steps);
    }
  }
  const perWindow: { start: Float32Array; end: Float32Array }[] = [];
  for (let s = 0; s < dev.inputs.length; s += o.batchSize) {
    const rows = dev.inputs.slice(s, s + o.batchSize);
    const b = batchOf(rows, tok.padId);
    const [start, end] = tf.tidy(() => scores(b, false, 0));
    const [sv, ev] = [(await start.data()) as Float32Array, (await end.data()) as Float32Array];
    const T = b.ids.shape[1];
    tf.dispose([start, end, b.ids, b.mask, b.allowed]);
    rows.forEach((r, i) => {
      const at = scoredPositions(r).map((t) => i * T + t);
      perWindow.push({ start: Float32Array.from(at, (k) => sv[k]!), end: Float32Array.from(at, (k) => ev[k]!) });
    });
  }
  optimizer.dispose();
  tf.dispose([headW, headB]);
  student.dispose();
  return { metrics: qaMetrics(task, predictAnswers(dev, task.dev.length, perWindow)), losses };
}
