// The `cpu` backend's broadcasting element-wise ops and Transpose, re-indexed. tfjs's own kernels compute
// every output element's input positions from scratch (an index → coordinates → index round trip, with two
// arrays allocated per element): a third of a cpu training step went there (Multiply, Add, Sub with a [B, T, 1]
// or [B, 1, 1, T] operand; the attention's transposes). These walk the output once with per-dimension
// strides (0 along a broadcast dimension) and a tight loop over the last dimension.
//
// The same-shape case (tfjs: one loop, but a closure call and two modulos per element) goes through the same loop.
// Exact by construction: each output element is the same JS expression of the same two input values as in
// tfjs (float32 storage of a float64 result), only found faster; Transpose only moves values. Checked bit for
// bit against tfjs's kernels in test/kernels.test.ts. Other dtypes go to tfjs's kernels.

import * as tf from '@tensorflow/tfjs';
import { cpuBackend, type HostValues, type KernelArgs } from './backend-internals.js';
import { originalKernel, type OurKernel } from './registry.js';

/** The broadcasting binary ops replaced, each as tfjs's cpu kernel computes it (tfjs-backend-cpu 4.x). */
const OPS = {
  Add: 'add',
  Sub: 'sub',
  Multiply: 'mul',
  RealDiv: 'div',
  SquaredDifference: 'sqdiff',
  Maximum: 'max',
  Minimum: 'min',
} as const;
type OpCode = (typeof OPS)[keyof typeof OPS];

/** Strides of `shape`'s values along each dimension of `outShape` (right-aligned); 0 where it is broadcast. */
function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const strides = new Array<number>(outShape.length).fill(0);
  let stride = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    const od = d + outShape.length - shape.length;
    if (shape[d] !== 1) strides[od] = stride;
    stride *= shape[d]!;
  }
  return strides;
}

/** out[i] = op(a[ia], b[ib]) over the broadcast shape, the last dimension innermost. */
export function broadcastBinaryInto(
  op: OpCode,
  a: HostValues,
  aShape: readonly number[],
  b: HostValues,
  bShape: readonly number[],
  out: HostValues,
  outShape: readonly number[],
): void {
  const rank = outShape.length;
  const as = broadcastStrides(aShape, outShape);
  const bs = broadcastStrides(bShape, outShape);
  const inner = outShape[rank - 1]!;
  const ai = as[rank - 1]!;
  const bi = bs[rank - 1]!;
  const outer = out.length / inner;
  const index = new Array<number>(rank).fill(0);
  let aOff = 0;
  let bOff = 0;
  for (let n = 0, o = 0; n < outer; n++, o += inner) {
    switch (op) {
      case 'add':
        for (let j = 0; j < inner; j++) out[o + j] = a[aOff + j * ai]! + b[bOff + j * bi]!;
        break;
      case 'sub':
        for (let j = 0; j < inner; j++) out[o + j] = a[aOff + j * ai]! - b[bOff + j * bi]!;
        break;
      case 'mul':
        for (let j = 0; j < inner; j++) out[o + j] = a[aOff + j * ai]! * b[bOff + j * bi]!;
        break;
      case 'div':
        for (let j = 0; j < inner; j++) out[o + j] = a[aOff + j * ai]! / b[bOff + j * bi]!;
        break;
      case 'sqdiff':
        for (let j = 0; j < inner; j++) {
          const d = a[aOff + j * ai]! - b[bOff + j * bi]!;
          out[o + j] = d * d;
        }
        break;
      case 'max':
        for (let j = 0; j < inner; j++) out[o + j] = Math.max(a[aOff + j * ai]!, b[bOff + j * bi]!);
        break;
      case 'min':
        for (let j = 0; j < inner; j++) out[o + j] = Math.min(a[aOff + j * ai]!, b[bOff + j * bi]!);
        break;
    }
    // The next row: an odometer over the outer dimensions.
    for (let d = rank - 2; d >= 0; d--) {
      aOff += as[d]!;
      bOff += bs[d]!;
      if (++index[d]! < outShape[d]!) break;
      aOff -= as[d]! * outShape[d]!;
      bOff -= bs[d]! * outShape[d]!;
      index[d] = 0;
    }
  }
}

/** out = x transposed by `perm` (out's dimension d is x's dimension perm[d]). */
export function transposeInto(
  x: HostValues,
  xShape: readonly number[],
  perm: readonly number[],
  out: HostValues,
): void {
  const rank = xShape.length;
  const xStrides = new Array<number>(rank);
  for (let d = rank - 1, s = 1; d >= 0; d--) {
    xStrides[d] = s;
    s *= xShape[d]!;
  }
  const outShape = perm.map((p) => xShape[p]!);
  const src = perm.map((p) => xStrides[p]!); // x's stride along each output dimension
  const inner = outShape[rank - 1]!;
  const step = src[rank - 1]!;
  const index = new Array<number>(rank).fill(0);
  let off = 0;
  for (let o = 0; o < out.length; o += inner) {
    for (let j = 0; j < inner; j++) out[o + j] = x[off + j * step]!;
    for (let d = rank - 2; d >= 0; d--) {
      off += src[d]!;
      if (++index[d]! < outShape[d]!) break;
      off -= src[d]! * outShape[d]!;
      index[d] = 0;
    }
  }
}

function binaryKernel(kernelName: keyof typeof OPS): (args: KernelArgs) => tf.TensorInfo {
  const op = OPS[kernelName];
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    if (a.dtype !== 'float32' || b.dtype !== 'float32')
      return originalKernel('cpu', kernelName)!(args) as tf.TensorInfo;
    const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const cpu = cpuBackend(args.backend);
    const size = tf.util.sizeFromShape(outShape);
    const out = new Float32Array(size);
    const aValues = cpu.data.get(a.dataId).values;
    const bValues = cpu.data.get(b.dataId).values;
    // Two operands of the output's size are read flat, in one loop; otherwise along the output's dimensions.
    const flat = aValues.length === size && bValues.length === size;
    if (size > 0)
      broadcastBinaryInto(
        op,
        aValues,
        flat ? [size] : a.shape,
        bValues,
        flat ? [size] : b.shape,
        out,
        flat ? [size] : outShape,
      );
    return cpu.makeTensorInfo(outShape, 'float32', out);
  };
}

function transposeKernel(args: KernelArgs): tf.TensorInfo {
  const x = args.inputs['x']!;
  if ((x.dtype !== 'float32' && x.dtype !== 'int32') || x.shape.length === 0)
    return originalKernel('cpu', 'Transpose')!(args) as tf.TensorInfo;
  const perm = args.attrs!['perm'] as number[];
  const cpu = cpuBackend(args.backend);
  const outShape = perm.map((p) => x.shape[p]!);
  const size = tf.util.sizeFromShape(outShape);
  const out = x.dtype === 'float32' ? new Float32Array(size) : new Int32Array(size);
  if (out.length > 0) transposeInto(cpu.data.get(x.dataId).values, x.shape, perm, out);
  return cpu.makeTensorInfo(outShape, x.dtype, out);
}

/**
 * Ours, replacing tfjs's kernels of these names on the `cpu` backend (tfjs's stay for other dtypes: originalKernel).
 */
export const CPU_BROADCAST: OurKernel[] = [
  ...(Object.keys(OPS) as (keyof typeof OPS)[]).map((kernelName) => ({
    kernelName,
    kernelFunc: binaryKernel(kernelName),
  })),
  { kernelName: 'Transpose', kernelFunc: transposeKernel },
].map(({ kernelName, kernelFunc }) => ({
  kernelName,
  backendName: 'cpu',
  kernelFunc: kernelFunc as unknown as tf.KernelFunc,
}));
