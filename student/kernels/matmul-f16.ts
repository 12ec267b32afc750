// Mixed-precision matrix products on `webgpu` (precision "fp16-mixed"): the BatchMatMul kernel of the webgpu
// backend, replaced by one that rounds both operands to f16 and multiplies them with float32 accumulation:
//
//   out[b, m, n] = Σ_k  f32(f16(A[b, m, k])) · f32(f16(B[b, k, n]))        (op(A), op(B): transposes by flag)
//
// the arithmetic of a GPU's tensor cores and of PyTorch's fp16 autocast: the product of two f16 values is
// exact in float32 (11 + 11 significant bits ≤ 24), so the only rounding beyond fp32's is that of the operands
// (relative 2⁻¹¹ each). The weights stay float32 (the master copy AdamW updates), as do the accumulation, every
// other kernel and the losses. Every tf.matMul of the student, the losses and their gradients runs here, so the
// backward products see f16 operands too; the loss is multiplied by `loss_scale` before the backward pass (and
// the gradients divided by it after) so that small gradients do not fall below f16's normal range (6.1e-5).
//
// The program is a tiled product: a workgroup of 16 × 16 invocations computes a 64 × 64 tile of the output,
// 4 × 4 values per invocation, staging 64 × 16 operand tiles in workgroup memory as f16 (half of fp32's
// footprint and traffic). It needs the adapter's `shader-f16` feature (backend.ts asks the device for it).
// An operand beyond f16's range (|x| > 65504, or NaN) has no f16 value: the tile's outputs become NaN, so that
// the step reports a non-finite gradient norm (src/train/step.ts names loss_scale) instead of a wrong number.
//
// With precision "fp32" (the default) the kernel hands every call to tfjs's own. Tested against operands
// rounded to f16 in JS with fp64 sums (test/webgpu-f16.test.ts) and over whole updates against PyTorch with the
// same rounding (test/updates-f16.test.ts).

import * as tf from '@tensorflow/tfjs';
import { productGeometry, type ProductGeometry } from './blas.js';
import type { WebGpuBackendLike, WgslProgram } from './wgsl-program.js';

/** The first line of a WGSL program that uses f16: backend.ts puts `enable f16;` before such a module. */
export const F16_MARKER = '// distill: enable f16';

const TILE = 64; // output rows and columns per workgroup
const TILE_K = 16; // depth of the staged operand tiles
const THREADS = 256; // 16 × 16 invocations, each 4 × 4 outputs

class HalfProductProgram {
  readonly variableNames = ['A', 'B'];
  readonly outputShape: number[];
  readonly shaderKey: string;
  readonly dispatchLayout: { x: number[]; y: number[]; z: number[] };
  readonly dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [16, 16, 1];
  readonly size = true;
  readonly uniforms = 'M : i32, K : i32, N : i32, batchA : i32, batchB : i32,';

  constructor(private readonly g: ProductGeometry) {
    this.outputShape = g.outShape;
    const r = g.outShape.length;
    // Columns along x, rows along y, the batch along z (non-flat: main() reads the workgroup and local ids).
    this.dispatchLayout = { x: [r - 1], y: [r - 2], z: Array.from({ length: r - 2 }, (_, i) => i) };
    this.dispatch = [Math.ceil(g.N / TILE), Math.ceil(g.M / TILE), g.batch];
    this.shaderKey = `distill_matmul_f16_${g.transposeA ? 'T' : 'N'}${g.transposeB ? 'T' : 'N'}`;
  }

  getUserCode(): string {
    const { transposeA, transposeB } = this.g;
    // Which element of the staged tile invocation `li` loads on pass e: consecutive invocations read consecutive
    // addresses of the operand as it lies in memory (coalesced), whichever way it is transposed.
    const aIndex = transposeA // A lies [K, M]: consecutive m
      ? 'let m = idx % 64; let k = idx / 64;'
      : 'let m = idx / 16; let k = idx % 16;';
    const bIndex = transposeB // B lies [N, K]: consecutive k
      ? 'let n = idx / 16; let k = idx % 16;'
      : 'let n = idx % 64; let k = idx / 64;';
    const aRead = transposeA ? 'A[base + k * uniforms.M + m]' : 'A[base + m * uniforms.K + k]';
    const bRead = transposeB ? 'B[base + n * uniforms.K + k]' : 'B[base + k * uniforms.N + n]';
    const rows = [0, 1, 2, 3];
    return `
      ${F16_MARKER}
      var<workgroup> tileA : array<f16, ${TILE * TILE_K}>; // [64 rows m][16 k]
      var<workgroup> tileB : array<f16, ${TILE * TILE_K}>; // [16 k][64 columns n]
      var<workgroup> overflow : atomic<u32>;

      fn toHalf(x : f32) -> f16 {
        if (!(abs(x) <= 65504.0)) { atomicStore(&overflow, 1u); return f16(0.0); }
        return f16(x);
      }

      fn readA(batch : i32, m : i32, k : i32) -> f32 {
        if (m >= uniforms.M || k >= uniforms.K) { return 0.0; }
        let base = select(batch, 0, uniforms.batchA == 1) * uniforms.M * uniforms.K;
        return ${aRead};
      }

      fn readB(batch : i32, k : i32, n : i32) -> f32 {
        if (k >= uniforms.K || n >= uniforms.N) { return 0.0; }
        let base = select(batch, 0, uniforms.batchB == 1) * uniforms.K * uniforms.N;
        return ${bRead};
      }

      fn main() {
        let batch = i32(workgroupId.z);
        let row0 = i32(workgroupId.y) * ${TILE};
        let col0 = i32(workgroupId.x) * ${TILE};
        let tx = i32(localId.x); // columns col0 + 4 tx .. + 3
        let ty = i32(localId.y); // rows row0 + 4 ty .. + 3
        let li = i32(localIndex);
        ${rows.map((i) => `var acc${i} = vec4<f32>(0.0);`).join(' ')}
        for (var k0 = 0; k0 < uniforms.K; k0 = k0 + ${TILE_K}) {
          for (var e = 0; e < ${(TILE * TILE_K) / THREADS}; e = e + 1) {
            let idx = li + e * ${THREADS};
            { ${aIndex} tileA[m * ${TILE_K} + k] = toHalf(readA(batch, row0 + m, k0 + k)); }
            { ${bIndex} tileB[k * ${TILE} + n] = toHalf(readB(batch, k0 + k, col0 + n)); }
          }
          workgroupBarrier();
          for (var k = 0; k < ${TILE_K}; k = k + 1) {
            let c = k * ${TILE} + tx * 4;
            let b = vec4<f32>(f32(tileB[c]), f32(tileB[c + 1]), f32(tileB[c + 2]), f32(tileB[c + 3]));
            ${rows.map((i) => `acc${i} = acc${i} + f32(tileA[(ty * 4 + ${i}) * ${TILE_K} + k]) * b;`).join('\n            ')}
          }
          workgroupBarrier();
        }
        let bad = atomicLoad(&overflow) != 0u;
        let outBase = batch * uniforms.M * uniforms.N;
        ${rows.map((i) => `
        {
          let row = row0 + ty * 4 + ${i};
          for (var j = 0; j < 4; j = j + 1) {
            let col = col0 + tx * 4 + j;
            if (row < uniforms.M && col < uniforms.N) { result[outBase + row * uniforms.N + col] = select(acc${i}[j], uniforms.NAN, bad); }
          }
        }`).join('')}
      }`;
  }
}

let halfProducts = false;
let previousKernel: tf.KernelFunc | undefined;

/** Whether matrix products on webgpu take f16 operands (precision "fp16-mixed") or run in fp32 (tfjs's kernel). */
export function setHalfProducts(on: boolean): void {
  halfProducts = on;
}

export function halfProductsOn(): boolean {
  return halfProducts && tf.getBackend() === 'webgpu' && previousKernel !== undefined;
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };

function halfProductKernel(args: KernelArgs): tf.TensorInfo {
  const { inputs, backend, attrs } = args;
  const a = inputs['a']!;
  const b = inputs['b']!;
  const g = halfProducts && a.dtype === 'float32' && b.dtype === 'float32'
    ? productGeometry(a.shape, b.shape, Boolean(attrs?.['transposeA']), Boolean(attrs?.['transposeB'])) : null;
  if (!g || g.M === 0 || g.N === 0 || g.K === 0) return previousKernel!(args) as tf.TensorInfo;
  const program = new HalfProductProgram(g);
  return (backend as unknown as WebGpuBackendLike).runWebGPUProgram(program as unknown as WgslProgram, [a, b], 'float32',
    [g.M, g.K, g.N, g.batchA, g.batchB].map((v) => ({ type: 'int32' as const, data: [v] })));
}

/** Put the f16 product kernel behind BatchMatMul on `webgpu` (idempotent; it defers to tfjs's unless setHalfProducts(true)). */
export function registerHalfProductKernel(): void {
  if (previousKernel) return;
  const previous = tf.getKernel('BatchMatMul', 'webgpu');
  if (!previous) return;
  previousKernel = previous.kernelFunc;
  tf.unregisterKernel('BatchMatMul', 'webgpu');
  tf.registerKernel({ kernelName: 'BatchMatMul', backendName: 'webgpu', kernelFunc: halfProductKernel as unknown as tf.KernelFunc,
    setupFunc: previous.setupFunc, disposeFunc: previous.disposeFunc });
}
