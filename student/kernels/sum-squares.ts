// The kernel of Σ x² over up to four tensors in one dispatch (the op: student/ops/sum-squares.ts), on `webgpu`: 64
// workgroups of 256 invocations stride over the four inputs and each workgroup writes one partial sum, so the output is
// [64] partial sums to be added up by the caller. tfjs's ops take a Square and a Sum (itself one or more dispatches)
// per tensor; with a hundred parameters that was a tenth of a bert-base update's dispatches (distill bench --profile).
// The order of the additions differs from tfjs's: the norm agrees to float32 rounding (test/webgpu.test.ts).

import * as tf from '@tensorflow/tfjs';
import { WgslProgram, type WebGpuBackendLike } from './wgsl-program.js';
import { SUM_SQUARES_INPUTS as NAMES, SUM_SQUARES_KERNEL } from '../ops/sum-squares.js';
import type { BackendKernels } from './kinds.js';

/** Partial sums per dispatch (workgroups). */
const SUM_SQUARES_PARTS = 64;
const THREADS = 256;

class SumSquaresProgram extends WgslProgram {
  readonly uniforms: string;

  constructor(private readonly count: number) {
    // One output per workgroup: SUM_SQUARES_PARTS workgroups of THREADS invocations.
    super(
      NAMES.slice(0, count) as unknown as string[],
      [SUM_SQUARES_PARTS],
      `distill_sum_squares_${count}`,
      THREADS,
      THREADS * SUM_SQUARES_PARTS,
    );
    this.uniforms = NAMES.slice(0, count)
      .map((n) => `size${n} : i32,`)
      .join(' ');
  }

  getUserCode(): string {
    const loops = NAMES.slice(0, this.count)
      .map(
        (n) => `
        for (var i = start; i < uniforms.size${n}; i = i + stride) { let v = ${n}[i]; s = s + v * v; }`,
      )
      .join('');
    return `
      var<workgroup> partial : array<f32, ${THREADS}>;
      fn main(index : i32) {
        let stride = ${THREADS * SUM_SQUARES_PARTS};
        let start = i32(workgroupId.x) * ${THREADS} + i32(localIndex);
        var s = 0.0;${loops}
        partial[localIndex] = s;
        workgroupBarrier();
        for (var half = ${THREADS / 2}u; half > 0u; half = half / 2u) {
          if (localIndex < half) { partial[localIndex] = partial[localIndex] + partial[localIndex + half]; }
          workgroupBarrier();
        }
        if (localIndex == 0u) { setOutputAtIndex(i32(workgroupId.x), partial[0]); }
      }`;
  }
}

function sumSquaresWebgpu({
  inputs,
  backend,
}: {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
}): tf.TensorInfo {
  const list = NAMES.map((n) => inputs[n]).filter((t): t is tf.TensorInfo => t !== undefined);
  const program = new SumSquaresProgram(list.length);
  return (backend as unknown as WebGpuBackendLike).runWebGPUProgram(
    program,
    list,
    'float32',
    list.map((t) => ({ type: 'int32' as const, data: [t.shape.reduce((a, b) => a * b, 1)] })),
  );
}

/** DistillSumSquares (student/ops/sum-squares.ts) on webgpu. */
export const SUM_SQUARES: BackendKernels<'webgpu'> = {
  webgpu: [
    { kernelName: SUM_SQUARES_KERNEL, backendName: 'webgpu', kernelFunc: sumSquaresWebgpu as unknown as tf.KernelFunc },
  ],
};
