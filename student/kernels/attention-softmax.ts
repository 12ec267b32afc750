// The kernels of the attention softmax with its mask (the op: student/ops/attention-softmax.ts):
//   y = softmax(s + m)          s: the scores q·kᵀ/√d [B, A, T, T]; m: the mask's bias [B, T] (0 or −1e9 per key)
//   ∂s = y · (∂y − Σ_keys ∂y·y)   (per row; the bias gets no gradient: it is not learned)
// In tfjs ops this is an Add and a Softmax forward (tfjs's Softmax is itself a max, a subtraction, an exp, a sum
// and a division on some backends) and about five kernels backward. On `webgpu` it is one WGSL program each way
// (DistillMaskedSoftmax, DistillMaskedSoftmaxGrad), one invocation per row of keys: in a GPU step the host's cost
// per dispatch bounds the time (distill bench --profile). Each row's max and sum are taken in order, in float32;
// tfjs sums in another order, so the two agree to float32 rounding (test/webgpu.test.ts). Elsewhere the tfjs
// ops run (maskedSoftmaxOps), unchanged.

import * as tf from '@tensorflow/tfjs';
import type { KernelArgs } from './backend-internals.js';
import { WgslProgram, type WebGpuBackendLike } from './wgsl-program.js';
import { MASKED_SOFTMAX_GRAD_KERNEL, MASKED_SOFTMAX_KERNEL } from '../ops/attention-softmax.js';
import type { BackendKernels } from './kinds.js';

class MaskedSoftmaxProgram extends WgslProgram {
  readonly uniforms = 'rows : i32, width : i32, rowsPerBatch : i32,';

  constructor(
    private readonly gradient: boolean,
    rows: number,
    width: number,
  ) {
    // Forward: X scores [rows, T], M bias [B, T]. Backward:
    // Y softmax [rows, T], D dy [rows, T]. One invocation per row.
    super(
      gradient ? ['Y', 'D'] : ['X', 'M'],
      [rows, width],
      gradient ? 'distill_masked_softmax_grad' : 'distill_masked_softmax',
      64,
      rows,
    );
  }

  getUserCode(): string {
    const body = this.gradient
      ? `
          var s = 0.0;
          for (var j = 0; j < W; j = j + 1) { s = s + D[base + j] * Y[base + j]; }
          for (var j = 0; j < W; j = j + 1) { setOutputAtIndex(base + j, Y[base + j] * (D[base + j] - s)); }`
      : `
          let m = (row / uniforms.rowsPerBatch) * W;
          var mx = -3.4e38;
          for (var j = 0; j < W; j = j + 1) { mx = max(mx, X[base + j] + M[m + j]); }
          var s = 0.0;
          for (var j = 0; j < W; j = j + 1) { s = s + exp(X[base + j] + M[m + j] - mx); }
          for (var j = 0; j < W; j = j + 1) { setOutputAtIndex(base + j, exp(X[base + j] + M[m + j] - mx) / s); }`;
    return `
      fn main(index : i32) {
        let row = index;
        let W = uniforms.width;
        if (row < uniforms.rows) {
          let base = row * W;${body}
        }
      }`;
  }
}

function webgpuKernel(gradient: boolean) {
  return ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo => {
    const first = gradient ? inputs['y']! : inputs['x']!;
    const [rows, width] = first.shape as [number, number];
    const program = new MaskedSoftmaxProgram(gradient, rows, width);
    const ins = gradient ? [first, inputs['dy']!] : [first, inputs['bias']!];
    return (backend as unknown as WebGpuBackendLike).runWebGPUProgram(program, ins, 'float32', [
      { type: 'int32', data: [rows] },
      { type: 'int32', data: [width] },
      { type: 'int32', data: [gradient ? 1 : Number(attrs?.['rowsPerBatch'])] },
    ]);
  };
}

/** DistillMaskedSoftmax and its gradient (student/ops/attention-softmax.ts): one WGSL program each way on webgpu. */
export const MASKED_SOFTMAX: BackendKernels<'webgpu'> = {
  webgpu: [
    {
      kernelName: MASKED_SOFTMAX_KERNEL,
      backendName: 'webgpu',
      kernelFunc: webgpuKernel(false) as unknown as tf.KernelFunc,
    },
    {
      kernelName: MASKED_SOFTMAX_GRAD_KERNEL,
      backendName: 'webgpu',
      kernelFunc: webgpuKernel(true) as unknown as tf.KernelFunc,
    },
  ],
};
