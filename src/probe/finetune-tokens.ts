// Fine-tuning the student to tag words (token classification): a linear head on every position's last hidden
// state, trained on each word's first piece (its other pieces, [CLS], [SEP] and padding ignored: -100 in
// transformers' example), with the training loop's update step; dev tagged at the first pieces, scored as seqeval.

import * as tf from '@tensorflow/tfjs';
import { Rng } from '../../corpus/rng.js';
import { encodeWords, padBatch } from './features.js';
import { finetuneSetup, type FinetuneOptions } from './finetune.js';
import type { Metrics } from './metrics.js';
import { nerMetrics, type NerTask } from './ner.js';

interface Encoded {
  ids: number[];
  first: (number | undefined)[];
}

/** A padded batch as tensors, and its length T. */
function batchOf(rows: Encoded[], padId: number): { ids: tf.Tensor2D; mask: tf.Tensor2D; T: number } {
  const { ids, mask, T } = padBatch(
    rows.map((r) => r.ids),
    padId,
  );
  return { ids: tf.tensor2d(ids, [rows.length, T], 'int32'), mask: tf.tensor2d(mask, [rows.length, T], 'int32'), T };
}

/** Fine-tune a copy of the student with a tag head on train (AdamW, linear decay), tag dev, score as seqeval. */
export async function finetuneTagger(
  dir: string,
  task: NerTask,
  o: FinetuneOptions,
): Promise<{ metrics: Metrics; losses: number[] }> {
  const C = task.tags.length;
  const { student, tok, headW, headB, optimizer, update } = await finetuneSetup(dir, C, o);
  const H = student.config.dim;
  const classOf = new Map(task.tags.map((t, i) => [t, i]));
  const encode = (s: { words: string[] }): Encoded => encodeWords(tok, s.words, student.config.max_position_embeddings);
  const train = task.train.map(encode);
  const dev = task.dev.map(encode);
  /** Tag scores at every position of a batch, [B·T, C]. */
  const scores = (
    b: { ids: tf.Tensor2D; mask: tf.Tensor2D; T: number },
    training: boolean,
    seed: number,
  ): tf.Tensor2D => {
    const hidden = student.encode(b.ids, b.mask, { training, dropoutSeed: seed });
    const flat = tf.reshape(hidden[hidden.length - 1]!, [-1, H]) as tf.Tensor2D; // [B·T, H]
    return tf.add(tf.matMul(flat, headW), headB) as tf.Tensor2D; // [B·T, C]
  };
  const steps = o.epochs * Math.ceil(train.length / o.batchSize);
  const losses: number[] = [];
  let step = 0;
  for (let epoch = 0; epoch < o.epochs; epoch++) {
    const order = train.map((_, i) => i);
    Rng.derive(o.seed, epoch).shuffle(order);
    for (let s = 0; s < order.length; s += o.batchSize) {
      const rows = order.slice(s, s + o.batchSize);
      const b = batchOf(
        rows.map((i) => train[i]!),
        tok.padId,
      );
      const at: number[] = []; // rows of [B·T] with a label
      const labels: number[] = [];
      rows.forEach((i, r) =>
        train[i]!.first.forEach((t, w) => {
          if (t === undefined) return;
          at.push(r * b.T + t);
          labels.push(classOf.get(task.train[i]!.tags[w]!)!);
        }),
      );
      const [loss] = await update.accumulate(() => {
        const logits = tf.gather(scores(b, true, o.seed * 1000 + step), tf.tensor1d(at, 'int32')); // [N, C]
        const l = tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d(labels, 'int32'), C), logits) as tf.Scalar;
        return { loss: l, report: tf.reshape(l, [1]) as tf.Tensor1D };
      });
      tf.dispose([b.ids, b.mask]);
      await update.apply(o.lr * (1 - step / steps));
      losses.push(loss!);
      step++;
      o.onProgress?.(step, steps);
    }
  }
  const majority = classOf.get('O') ?? 0;
  const predicted: number[][] = [];
  for (let s = 0; s < dev.length; s += o.batchSize) {
    const rows = dev.slice(s, s + o.batchSize);
    const b = batchOf(rows, tok.padId);
    const out = tf.tidy(() => tf.argMax(scores(b, false, 0), 1));
    const best = (await out.data()) as Int32Array;
    tf.dispose([out, b.ids, b.mask]);
    rows.forEach((r, i) => predicted.push(r.first.map((t) => (t === undefined ? majority : best[i * b.T + t]!))));
  }
  optimizer.dispose();
  tf.dispose([headW, headB]);
  student.dispose();
  return { metrics: nerMetrics(task, predicted), losses };
}
