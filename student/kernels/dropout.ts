// Dropout as one kernel (DistillDropout) whose mask is a pure function of a seed and the element's index:
//   keep element i  ⇔  fmix32(i · 0x9E3779B1 ⊕ key) >> 8  <  round(keep · 2²⁴),   key = fmix32(seed ⊕ 0x9E3779B9)
//   y_i = x_i · (kept ? 1/keep : 0)
// (fmix32: MurmurHash3's finaliser, a bijection of 32-bit integers with full avalanche.) tf.dropout draws a
// uniform tensor in JS (seedrandom) and takes four more kernels (Add, Floor, RealDiv, Multiply), every one of them a
// full-size tensor that the backward pass keeps: on `wasm` that was ~20% of a training step with the recipe's
// dropout 0.1 (`distill bench --dropout --profile`), and on `webgpu` each uniform tensor was uploaded from the host.
// Here the backward pass recomputes the same mask from the seed (the gradient is the same kernel on dy), so nothing
// but the output is kept, and the three backends give the same mask bit for bit: the hash is integer arithmetic
// (Math.imul in JS, u32 in WGSL). `tensorflow` keeps tf.dropout.

import * as tf from '@tensorflow/tfjs';
import { WgslProgram, type WebGpuBackendLike } from './wgsl-program.js';
import { cpuBackend, wasmBackend, type KernelArgs } from './backend-internals.js';
import { heapOffset, wasmSimd } from './simd.js';
import { fmix32 } from '../../src/core/math.js';
import { DROPOUT_KERNEL } from '../ops/dropout.js';
import type { BackendKernels } from './kinds.js';

/** The per-tensor key of a dropout seed (any integer; taken modulo 2³²). */
export function dropoutKey(seed: number): number {
  return fmix32((seed ^ 0x9e3779b9) >>> 0);
}

/** Elements whose hash's top 24 bits fall below this are kept: keep probability · 2²⁴, rounded. */
export function keepThreshold(rate: number): number {
  return Math.round((1 - rate) * 2 ** 24);
}

/** Whether element `i` is kept under `key` and `threshold` (the mask, for tests and the JS pass). */
export function kept(i: number, key: number, threshold: number): boolean {
  return fmix32((Math.imul(i, 0x9e3779b1) ^ key) >>> 0) >>> 8 < threshold;
}

interface DropoutAttrs {
  rate: number;
  seed: number;
}

function dropoutInto(x: Float32Array, out: Float32Array, { rate, seed }: DropoutAttrs): void {
  const key = dropoutKey(seed);
  const threshold = keepThreshold(rate);
  const scale = Math.fround(1 / (1 - rate));
  for (let i = 0; i < x.length; i++) {
    // x · 0 for a dropped element, not 0: a NaN or ±∞ goes on to the loss, as in PyTorch's and tfjs's dropout.
    out[i] = x[i]! * (kept(i, key, threshold) ? scale : 0);
  }
}

function attrsOf(args: KernelArgs): DropoutAttrs {
  return { rate: args.attrs!['rate'] as number, seed: args.attrs!['seed'] as number };
}

function wasmDropout(args: KernelArgs): tf.TensorInfo {
  const wasm = wasmBackend(args.backend);
  const x = args.inputs['x']!;
  const out = wasm.makeOutput(x.shape, 'float32');
  const simd = wasmSimd();
  if (simd) {
    // 4 lanes at a time on the tensors' own memory (student/kernels/simd.ts): the same hash, the same products.
    const { rate, seed } = attrsOf(args);
    simd.dropout(
      heapOffset(x),
      heapOffset(out),
      x.shape.reduce((a, b) => a * b, 1),
      dropoutKey(seed) | 0,
      keepThreshold(rate),
      Math.fround(1 / (1 - rate)),
    );
    return out;
  }
  // Views after makeOutput: allocating may grow the wasm heap and detach earlier views.
  dropoutInto(wasm.typedArrayFromHeap(x) as Float32Array, wasm.typedArrayFromHeap(out) as Float32Array, attrsOf(args));
  return out;
}

function cpuDropout(args: KernelArgs): tf.TensorInfo {
  const cpu = cpuBackend(args.backend);
  const x = args.inputs['x']!;
  const out = new Float32Array(x.shape.reduce((a, b) => a * b, 1));
  dropoutInto(cpu.data.get(x.dataId).values as Float32Array, out, attrsOf(args));
  return cpu.makeTensorInfo(x.shape, 'float32', out);
}

class DropoutProgram extends WgslProgram {
  readonly uniforms = 'key : i32, threshold : i32, scale : f32,';

  constructor(shape: number[]) {
    super(['X'], shape, 'distill_dropout');
  }

  getUserCode(): string {
    return `
      fn distillFmix32(v : u32) -> u32 {
        var h = v;
        h = h ^ (h >> 16u);
        h = h * 0x85ebca6bu;
        h = h ^ (h >> 13u);
        h = h * 0xc2b2ae35u;
        h = h ^ (h >> 16u);
        return h;
      }
      fn main(index : i32) {
        if (index < uniforms.size) {
          let h = distillFmix32((u32(index) * 0x9e3779b1u) ^ bitcast<u32>(uniforms.key));
          let keep = (h >> 8u) < u32(uniforms.threshold);
          setOutputAtIndex(index, getXByOutputIndex(index) * select(0.0, uniforms.scale, keep));
        }
      }`;
  }
}

function webgpuDropout(args: KernelArgs): tf.TensorInfo {
  const x = args.inputs['x']!;
  const { rate, seed } = attrsOf(args);
  return (args.backend as unknown as WebGpuBackendLike).runWebGPUProgram(new DropoutProgram(x.shape), [x], 'float32', [
    { type: 'int32', data: [dropoutKey(seed) | 0] },
    { type: 'int32', data: [keepThreshold(rate)] },
    { type: 'float32', data: [Math.fround(1 / (1 - rate))] },
  ]);
}

/** DistillDropout on wasm (SIMD or JS), cpu (JS) and webgpu (WGSL): the same mask bit for bit. */
export const DROPOUT: BackendKernels = {
  wasm: [{ kernelName: DROPOUT_KERNEL, backendName: 'wasm', kernelFunc: wasmDropout as unknown as tf.KernelFunc }],
  cpu: [{ kernelName: DROPOUT_KERNEL, backendName: 'cpu', kernelFunc: cpuDropout as unknown as tf.KernelFunc }],
  webgpu: [
    { kernelName: DROPOUT_KERNEL, backendName: 'webgpu', kernelFunc: webgpuDropout as unknown as tf.KernelFunc },
  ],
};
