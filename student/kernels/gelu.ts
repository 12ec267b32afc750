// The kernels of GELU (erf form, BERT's "gelu"; the op and its gradient: student/ops/gelu.ts):
//   gelu(x)  = x · Φ(x),                 Φ(x) = ½ (1 + erf(x/√2))
//   gelu'(x) = Φ(x) + x · φ(x),          φ(x) = e^(−x²/2) / √(2π)
// In tfjs ops this is five element-wise kernels forward and about ten backward, over [B·T, 4H] tensors; on
// `wasm` its Erf and Exp kernels alone took ~0.4 s of a ~2.8 s step on the tiny shape. On `wasm` and `cpu`
// two kernels (DistillGelu, DistillGeluGrad) compute each in one pass over the memory: in WebAssembly SIMD
// (student/kernels/simd.ts) on `wasm`, in JS on `cpu` or where SIMD is unavailable, in WGSL on `webgpu`; elsewhere
// (tensorflow) the tfjs-op form runs.
// erf is the rational approximation of Eigen/XLA (max error 7e-8 against the true erf).

import * as tf from '@tensorflow/tfjs';
import { WgslProgram, type WebGpuBackendLike } from './wgsl-program.js';
import { cpuBackend, wasmBackend, type KernelArgs } from './backend-internals.js';
import { expNonPositive } from '../../src/core/math.js';
import { heapOffset, wasmSimd } from './simd.js';
import { BIAS_GELU_GRAD_KERNEL, BIAS_GELU_KERNEL, GELU_GRAD_KERNEL, GELU_KERNEL } from '../ops/gelu.js';
import type { BackendKernels } from './kinds.js';

const ALPHA = [
  -2.72614225801306e-10, 2.77068142495902e-8, -2.10102402082508e-6, -5.69250639462346e-5, -7.34990630326855e-4,
  -2.95459980854025e-3, -1.60960333262415e-2,
] as const;
const BETA = [
  -1.45660718464996e-5, -2.13374055278905e-4, -1.68282697438203e-3, -7.37332916720468e-3, -1.42647390514189e-2,
] as const;

/** erf(x), float32-accurate (|error| < 1e-7). */
export function erf(x: number): number {
  const c = x > 4 ? 4 : x < -4 ? -4 : x;
  const x2 = c * c;
  let p = ALPHA[0];
  p = p * x2 + ALPHA[1];
  p = p * x2 + ALPHA[2];
  p = p * x2 + ALPHA[3];
  p = p * x2 + ALPHA[4];
  p = p * x2 + ALPHA[5];
  p = p * x2 + ALPHA[6];
  let q = BETA[0];
  q = q * x2 + BETA[1];
  q = q * x2 + BETA[2];
  q = q * x2 + BETA[3];
  q = q * x2 + BETA[4];
  return (c * p) / q;
}

const INV_SQRT2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

export function geluInto(x: Float32Array, out: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    out[i] = 0.5 * v * (1 + erf(v * INV_SQRT2));
  }
}

export function geluGradInto(x: Float32Array, dy: Float32Array, out: Float32Array): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    out[i] = dy[i]! * (0.5 * (1 + erf(v * INV_SQRT2)) + v * INV_SQRT_2PI * expNonPositive(-0.5 * v * v));
  }
}

function wasmKernel(compute: (ins: Float32Array[], out: Float32Array) => void, names: string[]) {
  return ({ inputs, backend }: KernelArgs): tf.TensorInfo => {
    const wasm = wasmBackend(backend);
    const first = inputs[names[0]!]!;
    const out = wasm.makeOutput(first.shape, 'float32');
    const simd = wasmSimd();
    if (simd) {
      // 4 lanes at a time on the tensors' own memory (student/kernels/simd.ts).
      const n = first.shape.reduce((a, b) => a * b, 1);
      if (names.length === 1) simd.gelu(heapOffset(first), heapOffset(out), n);
      else simd.geluGrad(heapOffset(first), heapOffset(inputs[names[1]!]!), heapOffset(out), n);
      return out;
    }
    // Views after makeOutput: allocating may grow the wasm heap and detach earlier views.
    compute(
      names.map((n) => wasm.typedArrayFromHeap(inputs[n]!) as Float32Array),
      wasm.typedArrayFromHeap(out) as Float32Array,
    );
    return out;
  };
}

function cpuKernel(compute: (ins: Float32Array[], out: Float32Array) => void, names: string[]) {
  return ({ inputs, backend }: KernelArgs): tf.TensorInfo => {
    const cpu = cpuBackend(backend);
    const first = inputs[names[0]!]!;
    const out = new Float32Array(first.shape.reduce((a, b) => a * b, 1));
    compute(
      names.map((n) => cpu.readSync(inputs[n]!.dataId) as Float32Array),
      out,
    );
    return cpu.makeTensorInfo(first.shape, 'float32', out);
  };
}

const forward = (ins: Float32Array[], out: Float32Array): void => geluInto(ins[0]!, out);
const backward = (ins: Float32Array[], out: Float32Array): void => geluGradInto(ins[0]!, ins[1]!, out);

// On `webgpu`: one WGSL program each way, in tfjs's program format (the backend adds the bindings, the
// tensor getters and the entry point that calls main with the flat index).
const WGSL_ERF = `
  fn distillErf(x : f32) -> f32 {
    let c = clamp(x, -4.0, 4.0);
    let x2 = c * c;
    var p : f32 = ${ALPHA[0]};
${ALPHA.slice(1)
  .map((a) => `    p = p * x2 + ${a};`)
  .join('\n')}
    var q : f32 = ${BETA[0]};
${BETA.slice(1)
  .map((b) => `    q = q * x2 + ${b};`)
  .join('\n')}
    return c * p / q;
  }`;

class GeluProgram extends WgslProgram {
  /**
   * With the bias: its width as a uniform (the code, and so the pipeline tfjs caches by shaderKey, fits every width).
   */
  readonly uniforms: string | undefined;

  /** `withBias`: gelu(x + b) with b [width] broadcast over the rows (DistillBiasGelu), the bias add fused in. */
  constructor(
    shape: number[],
    private readonly gradient: boolean,
    private readonly withBias = false,
  ) {
    super(
      [...(gradient ? ['A', 'B'] : ['A']), ...(withBias ? ['C'] : [])],
      shape,
      `distill${withBias ? '_bias' : ''}_gelu${gradient ? '_grad' : ''}`,
    );
    this.uniforms = withBias ? 'width : i32,' : undefined;
  }

  getUserCode(): string {
    const a = this.withBias ? 'getAByOutputIndex(index) + C[index % uniforms.width]' : 'getAByOutputIndex(index)';
    const body = this.gradient
      ? `let a = ${a};
         let phi = 0.5 * (1.0 + distillErf(a * ${INV_SQRT2}));
         setOutputAtIndex(index, getBByOutputIndex(index) * (phi + a * ${INV_SQRT_2PI} * exp(-0.5 * a * a)));`
      : `let a = ${a};
         setOutputAtIndex(index, 0.5 * a * (1.0 + distillErf(a * ${INV_SQRT2})));`;
    return `${WGSL_ERF}
      fn main(index : i32) {
        if (index < uniforms.size) {
          ${body}
        }
      }`;
  }
}

function webgpuKernel(gradient: boolean, withBias = false) {
  return ({ inputs, backend }: KernelArgs): tf.TensorInfo => {
    const x = inputs['x']!;
    const ins = [x, ...(gradient ? [inputs['dy']!] : []), ...(withBias ? [inputs['bias']!] : [])];
    return (backend as unknown as WebGpuBackendLike).runWebGPUProgram(
      new GeluProgram(x.shape, gradient, withBias),
      ins,
      'float32',
      withBias ? [{ type: 'int32', data: [x.shape[x.shape.length - 1]!] }] : undefined,
    );
  };
}

/**
 * The GELU kernels (student/ops/gelu.ts names them): one pass each way on wasm (SIMD) and cpu, WGSL programs on webgpu.
 */
export const GELU: BackendKernels = {
  wasm: [
    {
      kernelName: GELU_KERNEL,
      backendName: 'wasm',
      kernelFunc: wasmKernel(forward, ['x']) as unknown as tf.KernelFunc,
    },
    {
      kernelName: GELU_GRAD_KERNEL,
      backendName: 'wasm',
      kernelFunc: wasmKernel(backward, ['x', 'dy']) as unknown as tf.KernelFunc,
    },
  ],
  cpu: [
    { kernelName: GELU_KERNEL, backendName: 'cpu', kernelFunc: cpuKernel(forward, ['x']) as unknown as tf.KernelFunc },
    {
      kernelName: GELU_GRAD_KERNEL,
      backendName: 'cpu',
      kernelFunc: cpuKernel(backward, ['x', 'dy']) as unknown as tf.KernelFunc,
    },
  ],
  webgpu: [
    { kernelName: GELU_KERNEL, backendName: 'webgpu', kernelFunc: webgpuKernel(false) as unknown as tf.KernelFunc },
    { kernelName: GELU_GRAD_KERNEL, backendName: 'webgpu', kernelFunc: webgpuKernel(true) as unknown as tf.KernelFunc },
    {
      kernelName: BIAS_GELU_KERNEL,
      backendName: 'webgpu',
      kernelFunc: webgpuKernel(false, true) as unknown as tf.KernelFunc,
    },
    {
      kernelName: BIAS_GELU_GRAD_KERNEL,
      backendName: 'webgpu',
      kernelFunc: webgpuKernel(true, true) as unknown as tf.KernelFunc,
    },
  ],
};
