// The kernels of LayerNorm (the op: student/ops/layer-norm.ts) over the last axis, y = (x − μ)·r·γ + β with r = 1/√(σ²
// + ε) (σ² the biased variance, as tf.moments and PyTorch compute it). On `webgpu` it runs as WGSL programs instead of
// tfjs ops: forward, one program for the row statistics (μ, r) and one for y; backward, one for the row sums of g =
// dy·γ and g·x̂, one for dx = r·(g − mean(g) − x̂·mean(g·x̂)), and one each for dγ = Σ_rows dy·x̂ and dβ = Σ_rows dy: 2
// + 4 dispatches where the tfjs ops take about 30 (on a GPU the per-dispatch cost on the host bounded the step:
// distill bench --profile). The row statistics are sums in order, one invocation per row, in float32 (tfjs's
// reductions sum in another order: the two agree to float32 rounding, test/webgpu.test.ts). On `wasm` and `cpu`
// the same two parts run on the host, row by row over the tensors' memory (layerNormWasm, layerNormCpu): in WebAssembly
// SIMD on `wasm` (student/kernels/simd.ts; float32 sums, 4 lanes), in JS on `cpu` or without SIMD (float64 sums),
// where the tfjs ops took ~15 kernels forward and ~30 backward (~32 ms a LayerNorm of [4096, 192] forward and
// backward on wasm, six of them a tiny-shape step). Elsewhere (tensorflow) the tfjs ops run (layerNormOps).

import * as tf from '@tensorflow/tfjs';
import { WgslProgram, type WebGpuBackendLike } from './wgsl-program.js';
import { heapOffset, wasmSimd, type SimdKernels } from './simd.js';
import { cpuBackend, wasmBackend, type KernelArgs } from './backend-internals.js';
import { LAYER_NORM_KERNEL } from '../ops/layer-norm.js';
import type { BackendKernels } from './kinds.js';

// The programs, in tfjs's webgpu program format (the backend adds bindings, getters and the entry point).
type Part = 'stats' | 'forward' | 'gradSums' | 'dx' | 'dgamma' | 'dbeta';

class LayerNormProgram extends WgslProgram {
  readonly uniforms = 'rows : i32, width : i32, eps : f32,';

  constructor(
    private readonly part: Part,
    rows: number,
    width: number,
  ) {
    // X: x [rows, H]; G: γ [H]; B: β [H]; S: (μ, r) [rows, 2]; D: dy [rows, H]; R: (Σg, Σg·x̂) [rows, 2].
    // The statistics and the row sums take one invocation per row, dγ and dβ one per column.
    const perRow = part === 'stats' || part === 'gradSums';
    const shape = perRow ? [rows, 2] : part === 'dgamma' || part === 'dbeta' ? [width] : [rows, width];
    super(
      {
        stats: ['X'],
        forward: ['X', 'G', 'B', 'S'],
        gradSums: ['X', 'G', 'S', 'D'],
        dx: ['X', 'G', 'S', 'D', 'R'],
        dgamma: ['X', 'S', 'D'],
        dbeta: ['D'],
      }[part],
      shape,
      `distill_layer_norm_${part}`,
      64,
      perRow ? rows : shape.reduce((a, b) => a * b, 1),
    );
  }

  getUserCode(): string {
    const W = 'uniforms.width';
    const body: Record<Part, string> = {
      stats: `
        let row = index;
        if (row < uniforms.rows) {
          var sum = 0.0;
          for (var c = 0; c < ${W}; c++) { sum = sum + getX(row, c); }
          let mean = sum / f32(${W});
          var sq = 0.0;
          for (var c = 0; c < ${W}; c++) { let d = getX(row, c) - mean; sq = sq + d * d; }
          setOutputAtCoords(row, 0, mean);
          setOutputAtCoords(row, 1, inverseSqrt(sq / f32(${W}) + uniforms.eps));
        }`,
      forward: `
        if (index < uniforms.size) {
          let row = index / ${W};
          let c = index - row * ${W};
          setOutputAtIndex(index, ((getX(row, c) - getS(row, 0)) * getS(row, 1)) * getG(c) + getB(c));
        }`,
      gradSums: `
        let row = index;
        if (row < uniforms.rows) {
          let mean = getS(row, 0);
          let r = getS(row, 1);
          var sg = 0.0;
          var sgx = 0.0;
          for (var c = 0; c < ${W}; c++) {
            let g = getD(row, c) * getG(c);
            sg = sg + g;
            sgx = sgx + g * ((getX(row, c) - mean) * r);
          }
          setOutputAtCoords(row, 0, sg);
          setOutputAtCoords(row, 1, sgx);
        }`,
      dx: `
        if (index < uniforms.size) {
          let row = index / ${W};
          let c = index - row * ${W};
          let r = getS(row, 1);
          let xhat = (getX(row, c) - getS(row, 0)) * r;
          let n = f32(${W});
          setOutputAtIndex(index, r * (getD(row, c) * getG(c) - getR(row, 0) / n - xhat * (getR(row, 1) / n)));
        }`,
      dgamma: `
        let c = index;
        if (c < ${W}) {
          var sum = 0.0;
          for (var row = 0; row < uniforms.rows; row++) {
            sum = sum + getD(row, c) * ((getX(row, c) - getS(row, 0)) * getS(row, 1));
          }
          setOutputAtIndex(c, sum);
        }`,
      dbeta: `
        let c = index;
        if (c < ${W}) {
          var sum = 0.0;
          for (var row = 0; row < uniforms.rows; row++) { sum = sum + getD(row, c); }
          setOutputAtIndex(c, sum);
        }`,
    };
    return `
      fn main(index : i32) {
        ${body[this.part]}
      }`;
  }
}

function layerNormWebgpu({ inputs, attrs, backend }: KernelArgs): tf.TensorInfo[] {
  const gpu = backend as unknown as WebGpuBackendLike;
  const { eps, part } = attrs as unknown as { eps: number; part: 'forward' | 'backward' };
  const x = inputs['x']!;
  const [rows, width] = x.shape as [number, number];
  const run = (p: Part, ins: tf.TensorInfo[]): tf.TensorInfo =>
    gpu.runWebGPUProgram(new LayerNormProgram(p, rows, width), ins, 'float32', [
      { type: 'int32', data: [rows] },
      { type: 'int32', data: [width] },
      { type: 'float32', data: [eps] },
    ]);
  const gamma = inputs['gamma']!;
  if (part === 'forward') {
    const stats = run('stats', [x]); // [rows, 2]: μ, r
    return [run('forward', [x, gamma, inputs['beta']!, stats]), stats];
  }
  // backward: `beta` carries the saved statistics
  const stats = inputs['beta']!;
  const dy = inputs['dy']!;
  const sums = run('gradSums', [x, gamma, stats, dy]);
  const dx = run('dx', [x, gamma, stats, dy, sums]);
  (backend as unknown as { disposeData(id: object): void }).disposeData(sums.dataId);
  return [dx, run('dgamma', [x, stats, dy]), run('dbeta', [dy])];
}

/**
 * The forward part on the host, for x [rows, width]: y = ((x − μ)·r)·γ + β into `y`, and (μ, r) per row into
 * `stats` [rows, 2]; μ, then Σ (x − μ)², summed in float64 in order (as the WGSL program, in two passes).
 */
export function layerNormForwardInto(
  x: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  eps: number,
  width: number,
  y: Float32Array,
  stats: Float32Array,
): void {
  const rows = x.length / width;
  for (let row = 0, o = 0; row < rows; row++, o += width) {
    let sum = 0;
    for (let c = 0; c < width; c++) sum += x[o + c]!;
    const mean = Math.fround(sum / width);
    let sq = 0;
    for (let c = 0; c < width; c++) {
      const d = x[o + c]! - mean;
      sq += d * d;
    }
    const r = Math.fround(1 / Math.sqrt(sq / width + eps));
    stats[2 * row] = mean;
    stats[2 * row + 1] = r;
    for (let c = 0; c < width; c++) y[o + c] = (x[o + c]! - mean) * r * gamma[c]! + beta[c]!;
  }
}

/**
 * The backward part on the host: with g = dy·γ and x̂ = (x − μ)·r, dx = r·(g − mean(g) − x̂·mean(g·x̂)) into `dx`,
 * dγ = Σ_rows dy·x̂ and dβ = Σ_rows dy into `dgamma` and `dbeta` (float64 sums, rows in order).
 */
export function layerNormBackwardInto(
  x: Float32Array,
  gamma: Float32Array,
  stats: Float32Array,
  dy: Float32Array,
  width: number,
  dx: Float32Array,
  dgamma: Float32Array,
  dbeta: Float32Array,
): void {
  const rows = x.length / width;
  const dg = new Float64Array(width);
  const db = new Float64Array(width);
  for (let row = 0, o = 0; row < rows; row++, o += width) {
    const mean = stats[2 * row]!;
    const r = stats[2 * row + 1]!;
    let sg = 0;
    let sgx = 0;
    for (let c = 0; c < width; c++) {
      const xhat = (x[o + c]! - mean) * r;
      const d = dy[o + c]!;
      const g = d * gamma[c]!;
      sg += g;
      sgx += g * xhat;
      dg[c]! += d * xhat;
      db[c]! += d;
    }
    const mg = sg / width;
    const mgx = sgx / width;
    for (let c = 0; c < width; c++) dx[o + c] = r * (dy[o + c]! * gamma[c]! - mg - (x[o + c]! - mean) * r * mgx);
  }
  dgamma.set(dg);
  dbeta.set(db);
}

/** The forward part in WebAssembly SIMD on the wasm heap (byte offsets), row by row: the same steps in float32. */
function layerNormForwardSimd(
  simd: SimdKernels,
  x: number,
  gamma: number,
  beta: number,
  eps: number,
  rows: number,
  width: number,
  y: number,
  stats: Float32Array,
): void {
  for (let row = 0; row < rows; row++) {
    const o = row * width * 4;
    const mean = Math.fround(simd.sum(x + o, width) / width);
    const r = Math.fround(1 / Math.sqrt(simd.sumSqDev(x + o, width, mean) / width + eps));
    stats[2 * row] = mean;
    stats[2 * row + 1] = r;
    simd.lnApply(x + o, gamma, beta, y + o, width, mean, r);
  }
}

/** The backward part in WebAssembly SIMD; `dgamma` and `dbeta` are accumulated in place (the caller zeroes them). */
function layerNormBackwardSimd(
  simd: SimdKernels,
  x: number,
  gamma: number,
  stats: Float32Array,
  dy: number,
  rows: number,
  width: number,
  dx: number,
  dgamma: number,
  dbeta: number,
): void {
  for (let row = 0; row < rows; row++) {
    const o = row * width * 4;
    const mean = stats[2 * row]!;
    const r = stats[2 * row + 1]!;
    const sg = simd.lnGradRow(x + o, dy + o, gamma, dgamma, dbeta, width, mean, r);
    simd.lnDx(x + o, dy + o, gamma, dx + o, width, mean, r, sg / width, simd.second() / width);
  }
}

/** The output shapes of a part: forward [y, (μ, r)], backward [dx, dγ, dβ]. */
function hostOutputShapes(part: 'forward' | 'backward', x: tf.TensorInfo): number[][] {
  const width = x.shape[1]!;
  return part === 'forward' ? [x.shape, [x.shape[0]!, 2]] : [x.shape, [width], [width]];
}

/**
 * DistillLayerNorm on `wasm`, on the tensors' own memory: SIMD when the module loaded, else JS. Inputs, attributes and
 * outputs as the WGSL kernel's.
 */
function layerNormWasm({ inputs, attrs, backend }: KernelArgs): tf.TensorInfo[] {
  const wasm = wasmBackend(backend);
  const { eps, part } = attrs as unknown as { eps: number; part: 'forward' | 'backward' };
  const x = inputs['x']!;
  const [rows, width] = x.shape as [number, number];
  const outs = hostOutputShapes(part, x).map((shape) => wasm.makeOutput(shape, 'float32'));
  // `beta` carries the saved statistics in the backward part.
  const [gamma, beta, dy] = [inputs['gamma']!, inputs['beta']!, inputs['dy']];
  const simd = wasmSimd();
  // Views after every allocation (allocating may grow the memory and detach earlier views).
  const view = (t: tf.TensorInfo): Float32Array => wasm.typedArrayFromHeap(t) as Float32Array;
  if (simd && part === 'forward')
    layerNormForwardSimd(
      simd,
      heapOffset(x),
      heapOffset(gamma),
      heapOffset(beta),
      eps,
      rows,
      width,
      heapOffset(outs[0]!),
      view(outs[1]!),
    );
  else if (simd) {
    view(outs[1]!).fill(0);
    view(outs[2]!).fill(0);
    layerNormBackwardSimd(
      simd,
      heapOffset(x),
      heapOffset(gamma),
      view(beta),
      heapOffset(dy!),
      rows,
      width,
      heapOffset(outs[0]!),
      heapOffset(outs[1]!),
      heapOffset(outs[2]!),
    );
  } else if (part === 'forward')
    layerNormForwardInto(view(x), view(gamma), view(beta), eps, width, view(outs[0]!), view(outs[1]!));
  else
    layerNormBackwardInto(
      view(x),
      view(gamma),
      view(beta),
      view(dy!),
      width,
      view(outs[0]!),
      view(outs[1]!),
      view(outs[2]!),
    );
  return outs;
}

/** DistillLayerNorm on `cpu`, in JS. */
function layerNormCpu({ inputs, attrs, backend }: KernelArgs): tf.TensorInfo[] {
  const cpu = cpuBackend(backend);
  const { eps, part } = attrs as unknown as { eps: number; part: 'forward' | 'backward' };
  const x = inputs['x']!;
  const shapes = hostOutputShapes(part, x);
  const outs = shapes.map((shape) => new Float32Array(tf.util.sizeFromShape(shape)));
  const view = (t: tf.TensorInfo): Float32Array => cpu.readSync(t.dataId) as Float32Array;
  const width = x.shape[1]!;
  if (part === 'forward')
    layerNormForwardInto(view(x), view(inputs['gamma']!), view(inputs['beta']!), eps, width, outs[0]!, outs[1]!);
  else
    layerNormBackwardInto(
      view(x),
      view(inputs['gamma']!),
      view(inputs['beta']!),
      view(inputs['dy']!),
      width,
      outs[0]!,
      outs[1]!,
      outs[2]!,
    );
  return shapes.map((shape, i) => cpu.makeTensorInfo(shape, 'float32', outs[i]));
}

/**
 * DistillLayerNorm (student/ops/layer-norm.ts): WGSL programs on webgpu, row by row on the host on wasm (SIMD) and cpu.
 */
export const LAYER_NORM: BackendKernels = {
  wasm: [{ kernelName: LAYER_NORM_KERNEL, backendName: 'wasm', kernelFunc: layerNormWasm as unknown as tf.KernelFunc }],
  cpu: [{ kernelName: LAYER_NORM_KERNEL, backendName: 'cpu', kernelFunc: layerNormCpu as unknown as tf.KernelFunc }],
  webgpu: [
    { kernelName: LAYER_NORM_KERNEL, backendName: 'webgpu', kernelFunc: layerNormWebgpu as unknown as tf.KernelFunc },
  ],
};
