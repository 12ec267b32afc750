// Kernels that training needs and tfjs backends lack (or run pathologically slowly), registered as JS
// kernels (matrix products: student/kernels/products.ts). Each is tested against tfjs's own `cpu` implementation
// (test/kernels.test.ts).
//
// UnsortedSegmentSum, the gradient of `gather` (embedding lookups, row selection in the losses):
//   out[s, ...] = Σ_{i : segmentIds[i] = s} x[i, ...]; ids outside [0, numSegments) are dropped, as in
//   TensorFlow; segmentIds covers the leading dimensions of x.
// - `wasm` has no kernel for it: ours reads and writes the wasm heap directly.
// - `cpu` has one, but it loops over every segment (one pass over x per vocabulary entry: 6144 passes for the
//   tiny teacher's embeddings, ~40 s a step); ours is one pass over x.

import * as tf from '@tensorflow/tfjs';
import { cpuBackend, wasmBackend, type HostValues, type KernelArgs } from './backend-internals.js';
import { blasColumnSums } from './blas.js';
import { CPU_BROADCAST } from './cpu-broadcast.js';
import { originalKernel, type OurKernel } from './registry.js';
import type { BackendKernels } from './kinds.js';

function segmentGeometry(
  x: tf.TensorInfo,
  segmentIds: tf.TensorInfo,
): { prefix: number; rest: number[]; inner: number } {
  const prefix = segmentIds.shape.reduce((a, b) => a * b, 1);
  const rest = x.shape.slice(segmentIds.shape.length);
  return { prefix, rest, inner: rest.reduce((a, b) => a * b, 1) };
}

/** out (zeroed, [numSegments, inner]) += rows of x ([prefix, inner]) by segment id. */
export function segmentSumInto(
  out: HostValues,
  x: HostValues,
  ids: ArrayLike<number>,
  prefix: number,
  inner: number,
  numSegments: number,
): void {
  for (let i = 0; i < prefix; i++) {
    const s = ids[i]!;
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) out[dst + j]! += x[src + j]!;
  }
}

function unsortedSegmentSumWasm({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const wasm = wasmBackend(backend);
  const x = inputs['x']!;
  const segmentIds = inputs['segmentIds']!;
  const numSegments = Number(attrs!['numSegments']);
  const { prefix, rest, inner } = segmentGeometry(x, segmentIds);
  const out = wasm.makeOutput([numSegments, ...rest], x.dtype);
  const outValues = wasm.typedArrayFromHeap(out) as HostValues;
  outValues.fill(0);
  // Read the inputs after makeOutput: allocating may grow the wasm heap and detach earlier views.
  const xValues = wasm.typedArrayFromHeap(x) as HostValues;
  const ids = wasm.typedArrayFromHeap(segmentIds) as Int32Array;
  segmentSumInto(outValues, xValues, ids, prefix, inner, numSegments);
  return out;
}

function unsortedSegmentSumCpu({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const cpu = cpuBackend(backend);
  const x = inputs['x']!;
  const segmentIds = inputs['segmentIds']!;
  const numSegments = Number(attrs!['numSegments']);
  const { prefix, rest, inner } = segmentGeometry(x, segmentIds);
  const xValues = cpu.readSync(x.dataId) as HostValues;
  const ids = cpu.readSync(segmentIds.dataId) as Int32Array;
  const out = x.dtype === 'int32' ? new Int32Array(numSegments * inner) : new Float32Array(numSegments * inner);
  segmentSumInto(out, xValues, ids, prefix, inner, numSegments);
  return cpu.makeTensorInfo([numSegments, ...rest], x.dtype, out);
}

// Identity on `wasm` copies its input; tfjs's engine calls it on every tensor an op saves for its gradient
// (engine.clone), so a training step copied ~0.4 GB of activations (~0.45 s of a ~3.5 s step on the tiny
// shape). Tensors are immutable (a variable's assign swaps its data for a new one), so the clone can share
// its input's memory, counted by reference, as the `cpu` backend's Identity does.
function identityWasm(args: KernelArgs): tf.TensorInfo {
  const x = args.inputs['x']!;
  if (x.dtype === 'string') return originalKernel('wasm', 'Identity')!(args) as tf.TensorInfo;
  wasmBackend(args.backend).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

// Cast to the tensor's own dtype copies on `wasm` too; it is the gradient of every clone above.
function castWasm(args: KernelArgs): tf.TensorInfo {
  const x = args.inputs['x']!;
  if (x.dtype === 'string' || args.attrs?.['dtype'] !== x.dtype)
    return originalKernel('wasm', 'Cast')!(args) as tf.TensorInfo;
  wasmBackend(args.backend).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

// GatherV2 on `wasm` gathers element by element (~50 ms for 4096 rows of 192); along axis 0, which is what
// embedding lookups and row selections do, ours copies whole rows. Other axes go to tfjs's kernel.
function gatherWasm(args: KernelArgs): tf.TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = inputs['x']!;
  const indices = inputs['indices']!;
  const axis = Number(attrs?.['axis'] ?? 0);
  const batchDims = Number(attrs?.['batchDims'] ?? 0);
  if (
    (axis !== 0 && axis !== -x.shape.length) ||
    batchDims !== 0 ||
    x.shape.length === 0 ||
    (x.dtype !== 'float32' && x.dtype !== 'int32')
  ) {
    return originalKernel('wasm', 'GatherV2')!(args) as tf.TensorInfo;
  }
  const wasm = wasmBackend(backend);
  const rows = x.shape[0]!;
  const slice = x.shape.slice(1).reduce((a, b) => a * b, 1);
  const ids = wasm.typedArrayFromHeap(indices) as Int32Array;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (!(id >= 0 && id < rows)) throw new Error(`GatherV2: the index value ${id} is not in [0, ${rows - 1}]`);
  }
  const out = wasm.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
  // Views after makeOutput: allocating may grow the wasm heap and detach earlier views.
  const xValues = wasm.typedArrayFromHeap(x) as HostValues;
  const outValues = wasm.typedArrayFromHeap(out) as HostValues;
  const idValues = wasm.typedArrayFromHeap(indices) as Int32Array;
  for (let i = 0; i < idValues.length; i++) {
    const src = idValues[i]! * slice;
    outValues.set(xValues.subarray(src, src + slice), i * slice);
  }
  return out;
}

// Sum on `wasm` over leading axes (the gradient of every bias: Σ over the rows of [B*T, H]) first transposes
// the input so the axes are innermost; ours adds the rows in place. Other reductions go to tfjs's kernel.
function sumWasm(args: KernelArgs): tf.TensorInfo {
  const { inputs, backend, attrs } = args;
  const x = inputs['x']!;
  const rank = x.shape.length;
  const rawAxes = attrs?.['axis'];
  const axes = (Array.isArray(rawAxes) ? rawAxes : [rawAxes])
    .map((a) => (Number(a) + rank) % rank)
    .sort((a, b) => a - b);
  const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i);
  if (!leading || x.dtype !== 'float32' || rawAxes === undefined || rawAxes === null)
    return originalKernel('wasm', 'Sum')!(args) as tf.TensorInfo;
  const wasm = wasmBackend(backend);
  const keptShape = x.shape.slice(axes.length);
  const cols = keptShape.reduce((a, b) => a * b, 1);
  const rows = x.shape.slice(0, axes.length).reduce((a, b) => a * b, 1);
  const outShape = attrs?.['keepDims'] ? [...axes.map(() => 1), ...keptShape] : keptShape;
  const out = wasm.makeOutput(outShape, 'float32');
  const xValues = wasm.typedArrayFromHeap(x) as Float32Array;
  const outValues = wasm.typedArrayFromHeap(out) as Float32Array;
  if (blasColumnSums(xValues, rows, cols, outValues)) return out;
  // Accumulate in float64; rows are added in order.
  const acc = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let c = 0; c < cols; c++) acc[c]! += xValues[o + c]!;
  }
  outValues.set(acc);
  return out;
}

const kernel = (
  kernelName: string,
  backendName: 'wasm' | 'cpu',
  kernelFunc: (args: KernelArgs) => tf.TensorInfo,
  onlyIfMissing = false,
): OurKernel => ({
  kernelName,
  backendName,
  kernelFunc: kernelFunc as unknown as tf.KernelFunc,
  ...(onlyIfMissing ? { onlyIfMissing } : {}),
});

/**
 * The training kernels: on wasm UnsortedSegmentSum where tfjs-wasm has none (a later release's is left alone) and
 * the faster Identity, Cast, GatherV2 and Sum; on cpu the one-pass UnsortedSegmentSum and the re-indexed
 * broadcasting ops and Transpose (cpu-broadcast.ts). Each replaced kernel of tfjs's stays for the cases ours leave.
 */
export const TRAINING: BackendKernels<'wasm' | 'cpu'> = {
  wasm: [
    kernel('UnsortedSegmentSum', 'wasm', unsortedSegmentSumWasm, true),
    kernel('Identity', 'wasm', identityWasm),
    kernel('Cast', 'wasm', castWasm),
    kernel('GatherV2', 'wasm', gatherWasm),
    kernel('Sum', 'wasm', sumWasm),
  ],
  cpu: [kernel('UnsortedSegmentSum', 'cpu', unsortedSegmentSumCpu), ...CPU_BROADCAST],
};
