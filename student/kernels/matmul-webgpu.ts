// Matrix products on `webgpu` by distill's own tiled WGSL program,
// behind tfjs's BatchMatMul kernel, in two arithmetics:
//
//   "fp16-mixed" (precision): both operands rounded to f16, float32 accumulation,
//     out[b, m, n] = Σ_k  f32(f16(A[b, m, k])) · f32(f16(B[b, k, n]))        (op(A), op(B): transposes by flag)
//   the arithmetic of a GPU's tensor cores and of PyTorch's fp16 autocast: the product of two f16 values is
//   exact in float32 (11 + 11 significant bits ≤ 24), so the only rounding beyond fp32's is that of the operands
//   (relative 2⁻¹¹ each). The weights stay float32 (the master copy AdamW updates), as do the accumulation, every
//   other kernel and the losses. Every tf.matMul of the student, the losses and their gradients runs here, so the
//   backward products see f16 operands too; the loss is multiplied by the loss scale before the backward pass
//   (src/train/loss-scale.ts) so that small gradients do not fall below f16's normal range (6.1e-5). It needs
//   the adapter's `shader-f16` feature (backend.ts asks the device for it). An operand beyond f16's range
//   (|x| > 65504, or NaN) has no f16 value: the tile's outputs become NaN, so that the step reports a non-finite
//   gradient norm instead of a wrong number.
//   "tiled" (webgpu_products, with fp32): the same program on float32 operands, an alternative to tfjs's own
//     fp32 product to be timed against it on a GPU (src/bench/gpu-device.sh has both lines).
//
// The program: a workgroup of 16 × 16 invocations computes a TILE × TILE block of the output (TILE 128 when both
// sides reach it, else 64), T × T values per invocation (T = TILE/16: 8 or 4) at rows ty + 16·i and columns
// tx + 16·j (consecutive invocations, consecutive columns: conflict-free reads of the staged tile, coalesced
// writes), from operand tiles of depth BK staged in workgroup memory (as f16 for fp16-mixed: half the footprint
// and traffic). Each step of k reads 2T staged values for T²
// multiply-adds. Every output is summed over k in order, in float32.
//
// With precision "fp32" and webgpu_products "tfjs" (the defaults) the kernel hands every call to tfjs's own.
// Tested against operands (f16-rounded or not) with fp64 sums, every transpose, broadcast batches, sizes off the
// tiles (test/updates-webgpu-f16.test.ts), and over whole updates against PyTorch with the same arithmetic.

import * as tf from '@tensorflow/tfjs';
import type { KernelArgs } from './backend-internals.js';
import { productGeometry, type ProductGeometry } from './blas.js';
import type { WebGpuBackendLike, WgslProgram } from './wgsl-program.js';
import { isOurs, originalKernel } from './registry.js';
import type { BackendKernels } from './kinds.js';

/** The first line of a WGSL program that uses f16: backend.ts puts `enable f16;` before such a module. */
export const F16_MARKER = '// distill: enable f16';

const THREADS = 256; // 16 × 16 invocations

/** The output block of one workgroup: 128 × 128 when both sides of the product reach it, else 64 × 64. */
export function productTile(M: number, N: number): 64 | 128 {
  return M >= 128 && N >= 128 ? 128 : 64;
}

class TiledProductProgram {
  readonly variableNames = ['A', 'B'];
  readonly outputShape: number[];
  readonly shaderKey: string;
  readonly dispatchLayout: { x: number[]; y: number[]; z: number[] };
  readonly dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number] = [16, 16, 1];
  readonly size = true;
  readonly uniforms = 'M : i32, K : i32, N : i32, batchA : i32, batchB : i32,';
  private readonly tile: 64 | 128;

  constructor(
    private readonly g: ProductGeometry,
    private readonly half: boolean,
  ) {
    this.outputShape = g.outShape;
    this.tile = productTile(g.M, g.N);
    const r = g.outShape.length;
    // Columns along x, rows along y, the batch along z (non-flat: main() reads the workgroup and local ids).
    this.dispatchLayout = { x: [r - 1], y: [r - 2], z: Array.from({ length: r - 2 }, (_, i) => i) };
    this.dispatch = [Math.ceil(g.N / this.tile), Math.ceil(g.M / this.tile), g.batch];
    const layout = `${g.transposeA ? 'T' : 'N'}${g.transposeB ? 'T' : 'N'}`;
    this.shaderKey = `distill_matmul_${half ? 'f16' : 'f32'}_${this.tile}_${layout}`;
  }

  /**
   * WGSL storing the accumulator c{i}_{j} (row 16·i,
   * column 16·j of the thread's block), NaN where an f16 operand overflowed.
   */
  private storeColumn(i: number, j: number): string {
    const value = this.half ? `select(c${i}_${j}, uniforms.NAN, bad)` : `c${i}_${j}`;
    return (
      `if (col0 + tx + ${16 * j} < uniforms.N) { result[outBase ` +
      `+ row * uniforms.N + col0 + tx + ${16 * j}] = ${value}; }`
    );
  }

  getUserCode(): string {
    const { transposeA, transposeB } = this.g;
    const TILE = this.tile;
    const T = TILE / 16; // outputs per invocation along each side
    const BK = TILE === 64 ? 16 : 8; // the depth of the staged tiles: 4 values per invocation and operand either way
    const loads = (TILE * BK) / THREADS;
    // Which element of the staged tile invocation `li` loads on pass e: consecutive invocations read consecutive
    // addresses of the operand as it lies in memory (coalesced), whichever way it is transposed.
    const aIndex = transposeA
      ? `let m = idx % ${TILE}; let k = idx / ${TILE};`
      : `let m = idx / ${BK}; let k = idx % ${BK};`; // [K, M] : [M, K]
    const bIndex = transposeB
      ? `let n = idx / ${BK}; let k = idx % ${BK};`
      : `let n = idx % ${TILE}; let k = idx / ${TILE};`; // [N, K] : [K, N]
    const aRead = transposeA ? 'A[base + k * uniforms.M + m]' : 'A[base + m * uniforms.K + k]';
    const bRead = transposeB ? 'B[base + n * uniforms.K + k]' : 'B[base + k * uniforms.N + n]';
    const staged = this.half ? 'f16' : 'f32';
    const stage = this.half ? 'toHalf' : '';
    const unstage = (x: string): string => (this.half ? `f32(${x})` : x);
    const ts = Array.from({ length: T }, (_, i) => i);
    return `
      ${this.half ? F16_MARKER : ''}
      var<workgroup> tileA : array<${staged}, ${TILE * BK}>; // [BK k][TILE rows m]
      var<workgroup> tileB : array<${staged}, ${TILE * BK}>; // [BK k][TILE columns n]
      ${
        this.half
          ? `var<workgroup> overflow : atomic<u32>;

      fn toHalf(x : f32) -> f16 {
        if (!(abs(x) <= 65504.0)) { atomicStore(&overflow, 1u); return f16(0.0); }
        return f16(x);
      }`
          : ''
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
        let tx = i32(localId.x); // columns col0 + tx + 16 j
        let ty = i32(localId.y); // rows row0 + ty + 16 i
        let li = i32(localIndex);
        ${ts.map((i) => ts.map((j) => `var c${i}_${j} = 0.0;`).join(' ')).join('\n        ')}
        for (var k0 = 0; k0 < uniforms.K; k0 = k0 + ${BK}) {
          for (var e = 0; e < ${loads}; e = e + 1) {
            let idx = li + e * ${THREADS};
            { ${aIndex} tileA[k * ${TILE} + m] = ${stage}(readA(batch, row0 + m, k0 + k)); }
            { ${bIndex} tileB[k * ${TILE} + n] = ${stage}(readB(batch, k0 + k, col0 + n)); }
          }
          workgroupBarrier();
          for (var k = 0; k < ${BK}; k = k + 1) {
            ${ts.map((i) => `let a${i} = ${unstage(`tileA[k * ${TILE} + ty + ${16 * i}]`)};`).join(' ')}
            ${ts.map((j) => `let b${j} = ${unstage(`tileB[k * ${TILE} + tx + ${16 * j}]`)};`).join(' ')}
            ${ts.map((i) => ts.map((j) => `c${i}_${j} = c${i}_${j} + a${i} * b${j};`).join(' ')).join('\n            ')}
          }
          workgroupBarrier();
        }
        ${this.half ? 'let bad = atomicLoad(&overflow) != 0u;' : ''}
        let outBase = batch * uniforms.M * uniforms.N;
        ${ts
          .map(
            (i) => `
        {
          let row = row0 + ty + ${16 * i};
          if (row < uniforms.M) {
            ${ts.map((j) => this.storeColumn(i, j)).join('\n            ')}
          }
        }`,
          )
          .join('')}
      }`;
  }
}

let halfProducts = false;
let tiledProducts = false;

/** Whether matrix products on webgpu take f16 operands (precision "fp16-mixed") or run in fp32. */
export function setHalfProducts(on: boolean): void {
  halfProducts = on;
}

/** Whether webgpu's fp32 products run on the tiled program (true) or on tfjs's kernel. */
export function setTiledProducts(on: boolean): void {
  tiledProducts = on;
}

export function halfProductsOn(): boolean {
  return halfProducts && tf.getBackend() === 'webgpu' && isOurs('webgpu', 'BatchMatMul');
}

function productKernel(args: KernelArgs): tf.TensorInfo {
  const { inputs, backend, attrs } = args;
  const a = inputs['a']!;
  const b = inputs['b']!;
  const g =
    (halfProducts || tiledProducts) && a.dtype === 'float32' && b.dtype === 'float32'
      ? productGeometry(a.shape, b.shape, Boolean(attrs?.['transposeA']), Boolean(attrs?.['transposeB']))
      : null;
  if (!g || g.M === 0 || g.N === 0 || g.K === 0) return originalKernel('webgpu', 'BatchMatMul')!(args) as tf.TensorInfo;
  const program = new TiledProductProgram(g, halfProducts);
  return (backend as unknown as WebGpuBackendLike).runWebGPUProgram(
    program as unknown as WgslProgram,
    [a, b],
    'float32',
    [g.M, g.K, g.N, g.batchA, g.batchB].map((v) => ({ type: 'int32' as const, data: [v] })),
  );
}

/** The tiled product kernel behind BatchMatMul on `webgpu`; it defers to tfjs's unless set*Products(true). */
export const PRODUCTS: BackendKernels<'webgpu'> = {
  webgpu: [{ kernelName: 'BatchMatMul', backendName: 'webgpu', kernelFunc: productKernel as unknown as tf.KernelFunc }],
};
