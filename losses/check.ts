// Shape checks run before the maths of every loss.
import type * as tf from '@tensorflow/tfjs';
import { ShapeError } from '../src/core/errors.js';

export function expectRank(loss: string, name: string, t: tf.Tensor, rank: number): void {
  if (t.rank !== rank) throw new ShapeError(`${loss}: ${name} has shape [${t.shape}], expected rank ${rank}`);
}

export function expectSameShape(loss: string, a: [string, tf.Tensor], b: [string, tf.Tensor]): void {
  if (a[1].rank !== b[1].rank || a[1].shape.some((d, i) => d !== b[1].shape[i])) {
    throw new ShapeError(`${loss}: ${a[0]} is [${a[1].shape}] but ${b[0]} is [${b[1].shape}]`);
  }
}
