// Σ x² over up to four tensors per call, as [64] partial sums (the global gradient norm, src/train/adamw.ts
// sumOfSquares): the kernel DistillSumSquares where a backend has it (webgpu: student/kernels/sum-squares.ts), else
// undefined and the caller sums with tfjs ops.

import * as tf from '@tensorflow/tfjs';

export const SUM_SQUARES_KERNEL = 'DistillSumSquares';
/** The kernel's inputs, in order: up to four tensors. */
export const SUM_SQUARES_INPUTS = ['A', 'B', 'C', 'D'] as const;

/** Σ x² over `tensors` (four per dispatch) where the kernel is registered: [64] partial sums per group of four. */
export function sumSquaresPartials(tensors: tf.Tensor[]): tf.Tensor[] | undefined {
  if (!tf.getKernel(SUM_SQUARES_KERNEL, tf.getBackend()) || tensors.some((t) => t.dtype !== 'float32'))
    return undefined;
  const out: tf.Tensor[] = [];
  for (let i = 0; i < tensors.length; i += 4) {
    const group = tensors.slice(i, i + 4);
    out.push(
      tf
        .engine()
        .runKernel(
          SUM_SQUARES_KERNEL,
          Object.fromEntries(group.map((t, j) => [SUM_SQUARES_INPUTS[j]!, t])),
          {},
        ) as tf.Tensor,
    );
  }
  return out;
}
