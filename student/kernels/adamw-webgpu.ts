// DistillAdamW (see simd.ts) on `webgpu`. The tfjs-op form of src/train/adamw.ts takes about twelve dispatches
// per parameter; at bert-base shape the per-dispatch cost on the host, not the GPU's arithmetic, bounded the step
// (distill bench --profile on an H200). Two forms, the same arithmetic (m' = β1·m + (1−β1)·g,
// v' = β2·v + (1−β2)·g², p' = p·decay − (m' / (√v' / √(1−β2^t) + ε))·step, g = gradient × gradScale):
//
//   in place (the optimizer's variables: p, m and v each hold their buffer alone): ONE dispatch per parameter,
//     recorded straight into tfjs's command encoder, that reads g and rewrites p, m and v where they lie. tfjs
//     treats a tensor's memory as immutable for as long as its id lives, so, as on wasm (simd.ts, THE IN-PLACE
//     INVARIANT), the write drops what the backend cached on those ids: here the host copy of the values that a
//     read (a checkpoint's) leaves beside the GPU buffer. The outputs are the same tensor ids (assign() keeps them).
//   otherwise: three tfjs programs (m', v', and p' recomputing m' and v' from the same inputs with the same
//     operations), on fresh outputs, so that the kernel never changes a tensor that something else still reads.
//
// The coefficients change every update, so they are uniforms: one pipeline per program for the whole run.

import * as tf from '@tensorflow/tfjs';
import { ADAMW_KERNEL, type AdamWCoefficients } from '../ops/adamw.js';
import { WgslProgram, type WebGpuBackendLike } from './wgsl-program.js';
import { ownsMemory } from './simd.js';
import type { BackendKernels } from './kinds.js';

type Part = 'm' | 'v' | 'p';

/**
 * The update's WGSL, given how each input is read at `index` (both forms write the same expressions, in the same
 * order); g is the gradient times gradScale (1/loss_scale with precision fp16-mixed, times the clipping coefficient).
 */
function adamwExpressions(read: Record<'p' | 'g' | 'm' | 'v', string>): Record<'m' | 'v' | 'p', string> {
  return {
    m: `let mNew = ${read.m} * uniforms.b1 + (${read.g} * uniforms.gradScale) * uniforms.oneMinusB1;`,
    v: `let g = ${read.g} * uniforms.gradScale; let vNew = ${read.v} * uniforms.b2 + (g * g) * uniforms.oneMinusB2;`,
    p:
      `let denom = sqrt(vNew) / uniforms.bc2Sqrt + uniforms.eps; let pNew = ${read.p} * uniforms.decayFactor - ` +
      `(mNew / denom) * uniforms.stepSize;`,
  };
}
const BY_TFJS_GETTERS = adamwExpressions({
  p: 'getPByOutputIndex(index)',
  g: 'getGByOutputIndex(index)',
  m: 'getMByOutputIndex(index)',
  v: 'getVByOutputIndex(index)',
});
const BY_ARRAYS = adamwExpressions({ p: 'p[index]', g: 'grad[index]', m: 'm[index]', v: 'v[index]' });

class AdamWProgram extends WgslProgram {
  readonly uniforms =
    'b1 : f32, oneMinusB1 : f32, b2 : f32, oneMinusB2 : f32, bc2Sqrt : ' +
    'f32, eps : f32, stepSize : f32, decayFactor : f32, gradScale : f32,';

  constructor(
    shape: number[],
    private readonly part: Part,
  ) {
    super(part === 'm' ? ['M', 'G'] : part === 'v' ? ['V', 'G'] : ['P', 'G', 'M', 'V'], shape, `distill_adamw_${part}`);
  }

  getUserCode(): string {
    const e = BY_TFJS_GETTERS;
    const body =
      this.part === 'm'
        ? `${e.m} setOutputAtIndex(index, mNew);`
        : this.part === 'v'
          ? `${e.v} setOutputAtIndex(index, vNew);`
          : `${e.m} ${e.v} ${e.p} setOutputAtIndex(index, pNew);`;
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          ${body}
        }
      }`;
  }
}

// The in-place form: one invocation per element, 256 per workgroup, the workgroups in a 2-D grid when one row
// of them would pass the adapter's maxComputeWorkgroupsPerDimension (65535 on many).
const IN_PLACE_WGSL = `
struct Coefficients {
  b1 : f32, oneMinusB1 : f32, b2 : f32, oneMinusB2 : f32, bc2Sqrt : f32, eps : f32, stepSize : f32, decayFactor : f32,
  gradScale : f32, size : u32,
};
@group(0) @binding(0) var<storage, read_write> p : array<f32>;
@group(0) @binding(1) var<storage, read> grad : array<f32>;
@group(0) @binding(2) var<storage, read_write> m : array<f32>;
@group(0) @binding(3) var<storage, read_write> v : array<f32>;
@group(0) @binding(4) var<uniform> uniforms : Coefficients;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id : vec3<u32>, @builtin(num_workgroups) groups : vec3<u32>) {
  let index = id.y * groups.x * 256u + id.x;
  if (index >= uniforms.size) { return; }
  ${BY_ARRAYS.m}
  ${BY_ARRAYS.v}
  ${BY_ARRAYS.p}
  p[index] = pNew;
  m[index] = mNew;
  v[index] = vNew;
}`;
const WORKGROUP = 256;

/** The parts of tfjs's WebGPUBackend (4.22) that recording a dispatch of our own into its command stream touches. */
interface WebGpuInternals {
  device: GpuDevice;
  tensorMap: { get(dataId: object): { values: unknown; resource: unknown } };
  commandEncoder: { beginComputePass(d: object): GpuPass } | null;
  computePassEncoder: GpuPass | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<object>;
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  makeUniforms(uniforms: { type: 'float32' | 'uint32'; data: number[] }[]): object;
  incRef(dataId: object): void;
}
interface GpuPass {
  setPipeline(p: unknown): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
  end(): void;
}
interface GpuDevice {
  limits: { maxComputeWorkgroupsPerDimension: number };
  createShaderModule(d: { code: string; label?: string }): unknown;
  createComputePipeline(d: object): { getBindGroupLayout(i: number): unknown };
  createBindGroup(d: object): unknown;
}

const pipelines = new WeakMap<object, { getBindGroupLayout(i: number): unknown }>();

function inPlacePipeline(device: GpuDevice): { getBindGroupLayout(i: number): unknown } {
  let pipeline = pipelines.get(device);
  if (!pipeline) {
    pipeline = device.createComputePipeline({
      layout: 'auto',
      compute: {
        module: device.createShaderModule({ code: IN_PLACE_WGSL, label: 'distill_adamw_in_place' }),
        entryPoint: 'main',
      },
    });
    pipelines.set(device, pipeline);
  }
  return pipeline;
}

/** The workgroup grid for `size` elements: one row while it fits the adapter's limit, else rows of the limit. */
export function adamwGrid(size: number, maxPerDimension: number): [number, number] {
  const groups = Math.ceil(size / WORKGROUP);
  if (groups <= maxPerDimension) return [Math.max(groups, 1), 1];
  return [maxPerDimension, Math.ceil(groups / maxPerDimension)];
}

/** One dispatch rewriting p, m and v in place (see the top of the file); the same ids come back. */
function adamwInPlace(
  gpu: WebGpuInternals,
  ts: { param: tf.TensorInfo; grad: tf.TensorInfo; m: tf.TensorInfo; v: tf.TensorInfo },
  coefficients: number[],
): tf.TensorInfo[] {
  const { param, grad, m, v } = ts;
  const size = param.shape.reduce((a, b) => a * b, 1);
  const all = [param, grad, m, v];
  for (const t of all) gpu.uploadToGPU(t.dataId);
  const pipeline = inPlacePipeline(gpu.device);
  const uniforms = gpu.makeUniforms([
    ...coefficients.map((x) => ({ type: 'float32' as const, data: [x] })),
    { type: 'uint32', data: [size] },
  ]);
  const bindGroup = gpu.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      ...all.map((t, i) => ({ binding: i, resource: { buffer: gpu.tensorMap.get(t.dataId).resource } })),
      { binding: 4, resource: uniforms },
    ],
  });
  // As tfjs records its own programs (recordAndSubmit): into the open compute pass, the ids marked as used by the
  // pending commands (a disposal waits for the submission), a submission every WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE.
  gpu.ensureCommandEncoderReady();
  gpu.computePassEncoder ??= gpu.commandEncoder!.beginComputePass({});
  const [x, y] = adamwGrid(size, gpu.device.limits.maxComputeWorkgroupsPerDimension);
  gpu.computePassEncoder.setPipeline(pipeline);
  gpu.computePassEncoder.setBindGroup(0, bindGroup);
  gpu.computePassEncoder.dispatchWorkgroups(x, y, 1);
  for (const t of all) gpu.commandQueueOwnedIds.add(t.dataId);
  if (++gpu.dispatchCountInPass >= (tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number)) {
    gpu.endComputePassEncoder();
    gpu.submitQueue();
  }
  // p, m and v changed under the same ids: no host copy of their old values may outlive the write.
  return [param, m, v].map((t) => {
    gpu.tensorMap.get(t.dataId).values = null;
    gpu.incRef(t.dataId);
    return { dataId: t.dataId, shape: t.shape, dtype: t.dtype };
  });
}

function adamwWebgpu({
  inputs,
  attrs,
  backend,
}: {
  inputs: tf.NamedTensorInfoMap;
  attrs: tf.NamedAttrMap;
  backend: tf.KernelBackend;
}): tf.TensorInfo[] {
  const gpu = backend as unknown as WebGpuBackendLike;
  const { param, grad, m, v } = inputs as Record<'param' | 'grad' | 'm' | 'v', tf.TensorInfo>;
  const c = attrs as unknown as AdamWCoefficients & { gradScale?: number };
  // The same float32 values the tfjs-op form multiplies by (its JS numbers become float32 scalars).
  const coefficients = [
    c.b1,
    1 - c.b1,
    c.b2,
    1 - c.b2,
    c.biasCorrection2Sqrt,
    c.eps,
    c.stepSize,
    c.decayFactor,
    c.gradScale ?? 1,
  ];
  if (inPlaceEnabled && ownsMemory(param) && ownsMemory(m) && ownsMemory(v)) {
    return adamwInPlace(backend as unknown as WebGpuInternals, { param, grad, m, v }, coefficients);
  }
  const uniforms = coefficients.map((x) => ({ type: 'float32' as const, data: [x] }));
  const run = (part: Part, ins: tf.TensorInfo[]): tf.TensorInfo =>
    gpu.runWebGPUProgram(new AdamWProgram(param.shape, part), ins, 'float32', uniforms);
  return [run('p', [param, grad, m, v]), run('m', [m, grad]), run('v', [v, grad])];
}

let inPlaceEnabled = true;

/** Tests: turn the in-place form off (the three programs on fresh outputs run instead), to compare the two. */
export function setAdamWInPlace(on: boolean): void {
  inPlaceEnabled = on;
}

/** DistillAdamW (student/ops/adamw.ts) on webgpu: one dispatch in place, or three programs. */
export const ADAMW: BackendKernels<'webgpu'> = {
  webgpu: [{ kernelName: ADAMW_KERNEL, backendName: 'webgpu', kernelFunc: adamwWebgpu as unknown as tf.KernelFunc }],
};
