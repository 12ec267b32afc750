// The attention softmax with its mask, as one op with its own gradient:
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

export const MASKED_SOFTMAX_KERNEL = 'DistillMaskedSoftmax';
const MASKED_SOFTMAX_GRAD_KERNEL = 'DistillMaskedSoftmaxGrad';

/** softmax(scores + the mask's bias) in tfjs ops: scores [B, A, T, T], maskBias [B, 1, 1, T]. */
export function maskedSoftmaxOps(scores: tf.Tensor4D, maskBias: tf.Tensor4D): tf.Tensor4D {
  return tf.softmax(tf.add(scores, maskBias), -1) as tf.Tensor4D;
}

/** softmax(scores + maskBias) over the keys: one WGSL program each way where registered (webgpu), else tfjs ops. */
export function maskedSoftmax(scores: tf.Tensor4D, maskBias: tf.Tensor4D): tf.Tensor4D {
  if (!tf.getKernel(MASKED_SOFTMAX_KERNEL, tf.getBackend()) || scores.dtype !== 'float32') return maskedSoftmaxOps(scores, maskBias);
  const [B, A, T, K] = scores.shape;
  if (maskBias.shape[0] !== B || maskBias.shape[3] !== K) throw new Error(`maskedSoftmax: mask [${maskBias.shape}] for scores [${scores.shape}]`);
  const bias = tf.reshape(maskBias, [B, K]); // [B, T]
  const f = tf.customGrad(((s: tf.Tensor2D, save: (ts: tf.Tensor[]) => void) => {
    const y = tf.engine().runKernel(MASKED_SOFTMAX_KERNEL, { x: s, bias }, { rowsPerBatch: A * T }) as tf.Tensor2D; // [B·A·T, T]
    save([y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => tf.engine().runKernel(MASKED_SOFTMAX_GRAD_KERNEL, { y: saved[0]!, dy }) as tf.Tensor2D,
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return tf.reshape(f(tf.reshape(scores, [B * A * T, K])), [B, A, T, K]);
}

class MaskedSoftmaxProgram extends WgslProgram {
  readonly uniforms = 'rows : i32, width : i32, rowsPerBatch : i32,';

  constructor(private readonly gradient: boolean, rows: number, width: number) {
    // Forward: X scores [rows, T], M bias [B, T]. Backward: Y softmax [rows, T], D dy [rows, T]. One invocation per row.
    super(gradient ? ['Y', 'D'] : ['X', 'M'], [rows, width], gradient ? 'distill_masked_softmax_grad' : 'distill_masked_softmax', 64, rows);
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
      { type: 'int32', data: [rows] }, { type: 'int32', data: [width] }, { type: 'int32', data: [gradient ? 1 : Number(attrs?.['rowsPerBatch'])] },
    ]);
  };
}

/** Register DistillMaskedSoftmax and its gradient on `webgpu` (idempotent). */
export function registerMaskedSoftmaxWebgpuKernels(): void {
  if (tf.getKernel(MASKED_SOFTMAX_KERNEL, 'webgpu')) return;
  tf.registerKernel({ kernelName: MASKED_SOFTMAX_KERNEL, backendName: 'webgpu', kernelFunc: webgpuKernel(false) as unknown as tf.KernelFunc });
  tf.registerKernel({ kernelName: MASKED_SOFTMAX_GRAD_KERNEL, backendName: 'webgpu', kernelFunc: webgpuKernel(true) as unknown as tf.KernelFunc });
}
