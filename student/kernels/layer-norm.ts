// LayerNorm over the last axis, y = (x − μ)·r·γ + β with r = 1/√(σ² + ε) (σ² the biased variance, as
// tf.moments and PyTorch compute it). On `webgpu` it runs as WGSL programs instead of tfjs ops: forward, one
// program for the row statistics (μ, r) and one for y; backward, one for the row sums of g = dy·γ and g·x̂, one
// for dx = r·(g − mean(g) − x̂·mean(g·x̂)), and one each for dγ = Σ_rows dy·x̂ and dβ = Σ_rows dy: 2 + 4
// dispatches where the tfjs ops take about 30 (on a GPU the per-dispatch cost on the host bounded the step:
// distill bench --profile). The row statistics are sums in order, one invocation per row, in float32 (tfjs's
// reductions sum in another order: the two agree to float32 rounding, test/webgpu.test.ts). Elsewhere the tfjs
// ops run (layerNormOps), unchanged.

import * as tf from '@tensorflow/tfjs';
import { WgslProgram, type WebGpuBackendLike } from './wgsl-program.js';

export const LAYER_NORM_KERNEL = 'DistillLayerNorm';

/** The tfjs-op form (every backend without the kernel). */
export function layerNormOps(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), gamma), beta);
}

/** LayerNorm over the last axis: the WGSL programs where registered (webgpu), else the tfjs ops. */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: number): tf.Tensor {
  if (!tf.getKernel(LAYER_NORM_KERNEL, tf.getBackend()) || x.dtype !== 'float32') return layerNormOps(x, gamma, beta, eps);
  const H = x.shape[x.shape.length - 1]!;
  const rows = x.size / H;
  const f = tf.customGrad(((x2: tf.Tensor2D, g: tf.Tensor1D, b: tf.Tensor1D, save: (ts: tf.Tensor[]) => void) => {
    const [y, stats] = tf.engine().runKernel(LAYER_NORM_KERNEL, { x: x2, gamma: g, beta: b }, { eps, part: 'forward' }) as unknown as [tf.Tensor2D, tf.Tensor2D];
    save([x2, g, stats]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
        const [sx, sg, sstats] = saved as [tf.Tensor2D, tf.Tensor1D, tf.Tensor2D];
        return tf.engine().runKernel(LAYER_NORM_KERNEL, { x: sx, gamma: sg, beta: sstats, dy }, { eps, part: 'backward' }) as unknown as tf.Tensor[];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return tf.reshape(f(tf.reshape(x, [rows, H]), gamma, beta), x.shape);
}

// The programs, in tfjs's webgpu program format (the backend adds bindings, getters and the entry point).
type Part = 'stats' | 'forward' | 'gradSums' | 'dx' | 'dgamma' | 'dbeta';

class LayerNormProgram extends WgslProgram {
  readonly uniforms = 'rows : i32, width : i32, eps : f32,';

  constructor(private readonly part: Part, rows: number, width: number) {
    // X: x [rows, H]; G: γ [H]; B: β [H]; S: (μ, r) [rows, 2]; D: dy [rows, H]; R: (Σg, Σg·x̂) [rows, 2].
    // The statistics and the row sums take one invocation per row, dγ and dβ one per column.
    const perRow = part === 'stats' || part === 'gradSums';
    const shape = perRow ? [rows, 2] : part === 'dgamma' || part === 'dbeta' ? [width] : [rows, width];
    super({ stats: ['X'], forward: ['X', 'G', 'B', 'S'], gradSums: ['X', 'G', 'S', 'D'], dx: ['X', 'G', 'S', 'D', 'R'], dgamma: ['X', 'S', 'D'], dbeta: ['D'] }[part],
      shape, `distill_layer_norm_${part}`, 64, perRow ? rows : shape.reduce((a, b) => a * b, 1));
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
          for (var row = 0; row < uniforms.rows; row++) { sum = sum + getD(row, c) * ((getX(row, c) - getS(row, 0)) * getS(row, 1)); }
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

function layerNormWebgpu({ inputs, attrs, backend }: { inputs: tf.NamedTensorInfoMap; attrs: tf.NamedAttrMap; backend: tf.KernelBackend }): tf.TensorInfo[] {
  const gpu = backend as unknown as WebGpuBackendLike;
  const { eps, part } = attrs as unknown as { eps: number; part: 'forward' | 'backward' };
  const x = inputs['x']!;
  const [rows, width] = x.shape as [number, number];
  const run = (p: Part, ins: tf.TensorInfo[]): tf.TensorInfo => gpu.runWebGPUProgram(new LayerNormProgram(p, rows, width), ins, 'float32',
    [{ type: 'int32', data: [rows] }, { type: 'int32', data: [width] }, { type: 'float32', data: [eps] }]);
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

/** Register DistillLayerNorm on `webgpu` (idempotent). */
export function registerLayerNormWebgpuKernel(): void {
  if (tf.getKernel(LAYER_NORM_KERNEL, 'webgpu')) return;
  tf.registerKernel({ kernelName: LAYER_NORM_KERNEL, backendName: 'webgpu', kernelFunc: layerNormWebgpu as unknown as tf.KernelFunc });
}
