// DistillAdamW (see simd.ts) on `webgpu`: three WGSL programs per parameter, m' = β1·m + (1−β1)·g,
// v' = β2·v + (1−β2)·g², and p' = p·decay − (m' / (√v' / √(1−β2^t) + ε))·step, the last recomputing m' and v' from
// the same inputs with the same operations (so the three agree). The tfjs-op form of src/train/adamw.ts takes
// about twelve dispatches per parameter; at bert-base shape the per-dispatch cost on the host, not the GPU's
// arithmetic, bounded the step (distill bench --profile on an H200). The coefficients change every update, so
// they are uniforms: one pipeline per program for the whole run.

import * as tf from '@tensorflow/tfjs';
import { ADAMW_KERNEL, type AdamWCoefficients } from './simd.js';
import { WgslProgram, type WebGpuBackendLike } from './wgsl-program.js';

type Part = 'm' | 'v' | 'p';

// g is the gradient times gradScale (1, or 1/loss_scale with precision fp16-mixed: a power of 2, exact).
const MOMENT_M = 'let mNew = getMByOutputIndex(index) * uniforms.b1 + (getGByOutputIndex(index) * uniforms.gradScale) * uniforms.oneMinusB1;';
const MOMENT_V = 'let g = getGByOutputIndex(index) * uniforms.gradScale; let vNew = getVByOutputIndex(index) * uniforms.b2 + (g * g) * uniforms.oneMinusB2;';

class AdamWProgram extends WgslProgram {
  readonly uniforms = 'b1 : f32, oneMinusB1 : f32, b2 : f32, oneMinusB2 : f32, bc2Sqrt : f32, eps : f32, stepSize : f32, decayFactor : f32, gradScale : f32,';

  constructor(shape: number[], private readonly part: Part) {
    super(part === 'm' ? ['M', 'G'] : part === 'v' ? ['V', 'G'] : ['P', 'G', 'M', 'V'], shape, `distill_adamw_${part}`);
  }

  getUserCode(): string {
    const body = this.part === 'm' ? `${MOMENT_M} setOutputAtIndex(index, mNew);`
      : this.part === 'v' ? `${MOMENT_V} setOutputAtIndex(index, vNew);`
      : `${MOMENT_M} ${MOMENT_V}
         let denom = sqrt(vNew) / uniforms.bc2Sqrt + uniforms.eps;
         setOutputAtIndex(index, getPByOutputIndex(index) * uniforms.decayFactor - (mNew / denom) * uniforms.stepSize);`;
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          ${body}
        }
      }`;
  }
}

function adamwWebgpu({ inputs, attrs, backend }: { inputs: tf.NamedTensorInfoMap; attrs: tf.NamedAttrMap; backend: tf.KernelBackend }): tf.TensorInfo[] {
  const gpu = backend as unknown as WebGpuBackendLike;
  const { param, grad, m, v } = inputs as Record<'param' | 'grad' | 'm' | 'v', tf.TensorInfo>;
  const c = attrs as unknown as AdamWCoefficients & { gradScale?: number };
  // The same float32 values the tfjs-op form multiplies by (its JS numbers become float32 scalars).
  const uniforms = [c.b1, 1 - c.b1, c.b2, 1 - c.b2, c.biasCorrection2Sqrt, c.eps, c.stepSize, c.decayFactor, c.gradScale ?? 1].map((x) => ({ type: 'float32' as const, data: [x] }));
  const run = (part: Part, ins: tf.TensorInfo[]): tf.TensorInfo => gpu.runWebGPUProgram(new AdamWProgram(param.shape, part), ins, 'float32', uniforms);
  return [run('p', [param, grad, m, v]), run('m', [m, grad]), run('v', [v, grad])];
}

/** Register DistillAdamW on `webgpu` (idempotent). */
export function registerAdamWWebgpuKernel(): void {
  if (tf.getKernel(ADAMW_KERNEL, 'webgpu')) return;
  tf.registerKernel({ kernelName: ADAMW_KERNEL, backendName: 'webgpu', kernelFunc: adamwWebgpu as unknown as tf.KernelFunc });
}
