// Kernels that training needs and tfjs backends lack (or run pathologically slowly), registered as JS
// kernels. BatchMatMul on wasm is described below. Each is tested against tfjs's own `cpu` implementation (test/kernels.test.ts).
//
// UnsortedSegmentSum, the gradient of `gather` (embedding lookups, row selection in the losses):
//   out[s, ...] = Σ_{i : segmentIds[i] = s} x[i, ...]; ids outside [0, numSegments) are dropped, as in
//   TensorFlow; segmentIds covers the leading dimensions of x.
// - `wasm` has no kernel for it: ours reads and writes the wasm heap directly.
// - `cpu` has one, but it loops over every segment (one pass over x per vocabulary entry: 6144 passes for the
//   tiny teacher's embeddings, ~40 s a step); ours is one pass over x.

import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };
type NumericArray = Float32Array | Int32Array;

function segmentGeometry(x: tf.TensorInfo, segmentIds: tf.TensorInfo): { prefix: number; rest: number[]; inner: number } {
  const prefix = segmentIds.shape.reduce((a, b) => a * b, 1);
  const rest = x.shape.slice(segmentIds.shape.length);
  return { prefix, rest, inner: rest.reduce((a, b) => a * b, 1) };
}

/** out (zeroed, [numSegments, inner]) += rows of x ([prefix, inner]) by segment id. */
export function segmentSumInto(out: NumericArray, x: NumericArray, ids: ArrayLike<number>, prefix: number, inner: number, numSegments: number): void {
  for (let i = 0; i < prefix; i++) {
    const s = ids[i]!;
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) out[dst + j]! += x[src + j]!;
  }
}

function unsortedSegmentSumWasm({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const wasm = backend as BackendWasm;
  const x = inputs['x']!;
  const segmentIds = inputs['segmentIds']!;
  const numSegments = Number(attrs!['numSegments']);
  const { prefix, rest, inner } = segmentGeometry(x, segmentIds);
  const out = wasm.makeOutput([numSegments, ...rest], x.dtype);
  const outValues = wasm.typedArrayFromHeap(out) as NumericArray;
  outValues.fill(0);
  // Read the inputs after makeOutput: allocating may grow the wasm heap and detach earlier views.
  const xValues = wasm.typedArrayFromHeap(x) as NumericArray;
  const ids = wasm.typedArrayFromHeap(segmentIds) as Int32Array;
  segmentSumInto(outValues, xValues, ids, prefix, inner, numSegments);
  return out;
}

interface CpuBackendLike extends tf.KernelBackend {
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: NumericArray): tf.TensorInfo;
}

function unsortedSegmentSumCpu({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const cpu = backend as CpuBackendLike;
  const x = inputs['x']!;
  const segmentIds = inputs['segmentIds']!;
  const numSegments = Number(attrs!['numSegments']);
  const { prefix, rest, inner } = segmentGeometry(x, segmentIds);
  const xValues = cpu.readSync(x.dataId) as NumericArray;
  const ids = cpu.readSync(segmentIds.dataId) as Int32Array;
  const out = x.dtype === 'int32' ? new Int32Array(numSegments * inner) : new Float32Array(numSegments * inner);
  segmentSumInto(out, xValues, ids, prefix, inner, numSegments);
  return cpu.makeTensorInfo([numSegments, ...rest], x.dtype, out);
}

// BatchMatMul on `wasm`: tfjs's kernel takes XNNPACK's fast path only for a single product; a batch of
// them ([G, M, K] @ [G, K, N], as attention has) goes through a generic loop about 10× slower. Ours runs the
// G products one by one on the fast path, on views into the operands' wasm memory: each view is registered
// with the wasm module under a fresh id, used, and unregistered (its memory belongs to the operand).
interface WasmModuleLike {
  cwrap(name: string, ret: null, args: string[]): (...args: unknown[]) => void;
  tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void };
}
interface BackendWasmInternals {
  wasm: WasmModuleLike;
  dataIdMap: { get(dataId: object): { id: number; memoryOffset: number } };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

let wasmBatchMatMulFn: ((...args: unknown[]) => void) | undefined;
let originalWasmBatchMatMul: tf.KernelFunc | undefined;

function batchMatMulWasm(args: KernelArgs): tf.TensorInfo {
  const { inputs, backend, attrs } = args;
  const a = inputs['a']!;
  const b = inputs['b']!;
  const wasm = backend as unknown as BackendWasmInternals;
  const transposed = Boolean(attrs?.['transposeA']) || Boolean(attrs?.['transposeB']);
  const G = a.shape.length === 3 ? a.shape[0]! : 1;
  if (transposed || a.shape.length !== 3 || b.shape.length !== 3 || a.shape[0] !== b.shape[0] || G === 1 || a.dtype !== 'float32' || b.dtype !== 'float32') {
    return originalWasmBatchMatMul!(args as never) as tf.TensorInfo;
  }
  const [, M, K] = a.shape as [number, number, number];
  const N = b.shape[2]!;
  if (b.shape[1] !== K) throw new Error(`BatchMatMul: inner dimensions ${K} and ${b.shape[1]} differ`);
  wasmBatchMatMulFn ??= wasm.wasm.cwrap('BatchMatMul', null, ['number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number']);
  const out = wasm.makeOutput([G, M, N], 'float32');
  const aOffset = wasm.dataIdMap.get(a.dataId).memoryOffset;
  const bOffset = wasm.dataIdMap.get(b.dataId).memoryOffset;
  const outOffset = wasm.dataIdMap.get(out.dataId).memoryOffset;
  const aShape = new Uint8Array(new Int32Array([1, M, K]).buffer);
  const bShape = new Uint8Array(new Int32Array([1, K, N]).buffer);
  for (let g = 0; g < G; g++) {
    const ids = [wasm.dataIdNextNumber++, wasm.dataIdNextNumber++, wasm.dataIdNextNumber++];
    wasm.wasm.tfjs.registerTensor(ids[0]!, M * K, aOffset + g * M * K * 4);
    wasm.wasm.tfjs.registerTensor(ids[1]!, K * N, bOffset + g * K * N * 4);
    wasm.wasm.tfjs.registerTensor(ids[2]!, M * N, outOffset + g * M * N * 4);
    wasmBatchMatMulFn(ids[0], aShape, 3, ids[1], bShape, 3, false, false, ids[2]);
    for (const id of ids) wasm.wasm.tfjs.disposeData(id);
  }
  return out;
}

/** tfjs's own cpu kernel, kept for the tests that check ours against it. */
export let originalCpuUnsortedSegmentSum: tf.KernelFunc | undefined;

let registeredWasm = false;
let registeredCpu = false;

/** Register the missing `wasm` kernels (idempotent; a kernel wasm gains in a later release is left alone). */
export function registerWasmTrainingKernels(): void {
  if (registeredWasm) return;
  registeredWasm = true;
  if (!tf.getKernel('UnsortedSegmentSum', 'wasm')) {
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: unsortedSegmentSumWasm as unknown as tf.KernelFunc });
  }
  const batchMatMul = tf.getKernel('BatchMatMul', 'wasm');
  if (batchMatMul && !originalWasmBatchMatMul) {
    originalWasmBatchMatMul = batchMatMul.kernelFunc;
    tf.unregisterKernel('BatchMatMul', 'wasm');
    tf.registerKernel({ kernelName: 'BatchMatMul', backendName: 'wasm', kernelFunc: batchMatMulWasm as unknown as tf.KernelFunc,
      setupFunc: batchMatMul.setupFunc, disposeFunc: batchMatMul.disposeFunc });
  }
}

/** Replace the `cpu` backend's UnsortedSegmentSum with the one-pass kernel (idempotent). */
export function registerCpuTrainingKernels(): void {
  if (registeredCpu) return;
  registeredCpu = true;
  const existing = tf.getKernel('UnsortedSegmentSum', 'cpu');
  if (existing) {
    originalCpuUnsortedSegmentSum = existing.kernelFunc;
    tf.unregisterKernel('UnsortedSegmentSum', 'cpu');
  }
  tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'cpu', kernelFunc: unsortedSegmentSumCpu as unknown as tf.KernelFunc });
}
