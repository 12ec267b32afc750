// Our kernels, one list per backend: what selectBackend (student/backend.ts) registers when it starts that backend.
// Each kernel file exports its kernels by backend (the ops that run them: student/ops/); a name tfjs already has
// on a backend is replaced and tfjs's kernel kept (student/kernels/registry.ts).

import { TRAINING } from './wasm-cpu.js';
import { productKernels } from './products.js';
import { LOGIT_LOSSES } from './logit-losses.js';
import { GELU } from './gelu.js';
import { DROPOUT } from './dropout.js';
import { LAYER_NORM } from './layer-norm.js';
import { MASKED_SOFTMAX } from './attention-softmax.js';
import { SUM_SQUARES } from './sum-squares.js';
import { ADAMW } from './adamw-webgpu.js';
import { PRODUCTS } from './matmul-webgpu.js';
import { DEVICE_REDUCTION_GRADS } from './reduction-grads.js';
import { adamwSimdKernels } from './simd.js';
import type { OurKernel } from './registry.js';
import type * as tf from '@tensorflow/tfjs';

/** wasm, registered before it starts: the products on the BLAS (else XNNPACK's, product by product). */
export function wasmKernels(): OurKernel[] {
  return [
    ...TRAINING.wasm,
    ...productKernels('wasm'),
    ...LOGIT_LOSSES.wasm,
    ...GELU.wasm,
    ...DROPOUT.wasm,
    ...LAYER_NORM.wasm,
  ];
}

/** wasm, once it started and the SIMD module compiled on its memory (student/kernels/simd.ts): AdamW in place. */
export function wasmSimdKernels(): OurKernel[] {
  return adamwSimdKernels();
}

/** cpu: the products on the BLAS where one loads (else tfjs's own). */
export function cpuKernels(): OurKernel[] {
  return [
    ...TRAINING.cpu,
    ...productKernels('cpu'),
    ...LOGIT_LOSSES.cpu,
    ...GELU.cpu,
    ...DROPOUT.cpu,
    ...LAYER_NORM.cpu,
  ];
}

/** webgpu, once it started (the logit losses run as tfjs ops there: losses/total.ts). */
export function webgpuKernels(): OurKernel[] {
  return [
    ...GELU.webgpu,
    ...DROPOUT.webgpu,
    ...LAYER_NORM.webgpu,
    ...MASKED_SOFTMAX.webgpu,
    ...SUM_SQUARES.webgpu,
    ...ADAMW.webgpu,
    ...PRODUCTS.webgpu,
  ];
}

/** webgpu's gradients (replacing tfjs's for every backend; the device broadcast applies on webgpu only). */
export const WEBGPU_GRADIENTS: readonly tf.GradConfig[] = DEVICE_REDUCTION_GRADS;
