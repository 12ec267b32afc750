// Matrix products on a native BLAS (OpenBLAS, or Apple's Accelerate), when one is installed.
//
// tfjs's `wasm` backend multiplies on one thread at ~16 GFLOP/s and takes a path ~10× slower still for
// transposed operands; its `cpu` backend is pure JS (~1 GFLOP/s). OpenBLAS's sgemm on the same 2-core
// machine does 70-165 GFLOP/s, transposed or not. So where a BLAS library can be loaded, the BatchMatMul
// kernel of `wasm` and `cpu` is replaced by one that calls cblas_sgemm through koffi (an FFI) directly on the
// operands' memory: on `wasm` that is the wasm heap itself, so nothing is copied. The student code is
// unchanged: it calls tf.matMul, and only the kernel behind it differs (student/kernels/products.ts). Without a BLAS
// library (or with DISTILL_BLAS=off) the backends' own kernels run, and every result stays within the golden tolerances
// either way (test/blas.test.ts compares this kernel with tfjs's `cpu` one).
//
// Which library: DISTILL_BLAS=/path/to/lib (any library exporting cblas_sgemm), else the first of
// libopenblas.so.0 / libopenblas.so / libopenblas.dylib / Accelerate that loads, else onnxruntime's MLAS
// (ort-gemm.ts: the GEMM inside onnxruntime-node, which every install has; DISTILL_BLAS=ort forces it).
// DISTILL_BLAS=off: the tfjs backends' own kernels. Threads: DISTILL_BLAS_THREADS, else OpenBLAS's own default
// (OPENBLAS_NUM_THREADS, else one per core) or one per core for onnxruntime, divided between the ranks that
// mpirun starts on one machine.

import koffi from 'koffi';
import { availableParallelism } from 'node:os';
import { DistillError } from '../../src/core/errors.js';
import { loadOrtGemm, type BatchGeometry } from './ort-gemm.js';

const CBLAS_ROW_MAJOR = 101;
const CBLAS_NO_TRANS = 111;
const CBLAS_TRANS = 112;

type Sgemm = (
  order: number,
  transA: number,
  transB: number,
  M: number,
  N: number,
  K: number,
  alpha: number,
  A: Float32Array,
  lda: number,
  B: Float32Array,
  ldb: number,
  beta: number,
  C: Float32Array,
  ldc: number,
) => void;

export interface Blas {
  /** The library file that was loaded. */
  library: string;
  /**
   * OpenBLAS's build description (e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... SkylakeX"),
   * "onnxruntime 1.30.0 MLAS", else the library name.
   */
  description: string;
  /** Threads the library uses per product (0 when it does not say). */
  threads: number;
  sgemm: Sgemm;
  /** A whole batch of products in one call, where the engine has it (onnxruntime); else one sgemm per product. */
  batchedProduct?: (g: ProductGeometry, a: Float32Array, b: Float32Array, out: Float32Array) => void;
}

const CANDIDATES = [
  'libopenblas.so.0',
  'libopenblas.so',
  'libopenblas.dylib',
  '/System/Library/Frameworks/Accelerate.framework/Accelerate',
];

let loaded: Blas | null | undefined;

/** Load the BLAS library once; null when none is present or DISTILL_BLAS=off. */
export function loadBlas(): Blas | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  const requested = process.env['DISTILL_BLAS'];
  if (requested === 'off' || requested === '0') return loaded;
  if (requested === 'ort' || requested === 'onnxruntime') {
    loaded = loadOrtGemm(productThreads());
    if (!loaded)
      throw new DistillError(
        `DISTILL_BLAS=${requested}: onnxruntime's library (inside onnxruntime-node) cannot be loaded`,
        'reinstall the dependencies (npm install), or set DISTILL_BLAS=off',
      );
    return loaded;
  }
  const names = requested ? [requested] : CANDIDATES;
  for (const library of names) {
    let lib: ReturnType<typeof koffi.load>;
    try {
      lib = koffi.load(library);
    } catch (e) {
      if (requested) {
        throw new DistillError(
          `DISTILL_BLAS=${requested}: the library cannot be loaded (${(e as Error).message})`,
          'point DISTILL_BLAS at a BLAS library that exports ' +
            'cblas_sgemm (e.g. libopenblas.so.0), or set DISTILL_BLAS=off',
        );
      }
      continue;
    }
    let sgemm: Sgemm;
    try {
      sgemm = lib.func(
        'void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, const float *A, int ' +
          'lda, const float *B, int ldb, float beta, _Inout_ float *C, int ldc)',
      );
    } catch (e) {
      if (requested)
        throw new DistillError(
          `DISTILL_BLAS=${requested} has no cblas_sgemm (${(e as Error).message})`,
          'use an OpenBLAS library, e.g. libopenblas.so.0',
        );
      continue;
    }
    let description = library;
    let threads = 0;
    try {
      const config = lib.func('const char *openblas_get_config()') as unknown as () => string;
      const setThreads = lib.func('void openblas_set_num_threads(int)') as unknown as (n: number) => void;
      const getThreads = lib.func('int openblas_get_num_threads()') as unknown as () => number;
      const wanted = requestedThreads();
      if (wanted !== undefined) setThreads(wanted);
      else if (localRanks() > 1 && !process.env['OPENBLAS_NUM_THREADS']) setThreads(coresPerRank());
      description = config().trim();
      threads = getThreads();
    } catch (e) {
      if (e instanceof DistillError) throw e;
      // Not OpenBLAS: products still run, the description is the library's name.
    }
    loaded = { library, description, threads, sgemm };
    return loaded;
  }
  // No system BLAS: onnxruntime's MLAS, which every install has (ort-gemm.ts).
  loaded = loadOrtGemm(productThreads());
  return loaded;
}

/** DISTILL_BLAS_THREADS when set (a DistillError unless it is a whole number ≥ 1). */
function requestedThreads(): number | undefined {
  const wanted = process.env['DISTILL_BLAS_THREADS'];
  if (wanted === undefined) return undefined;
  const n = Number(wanted);
  if (!Number.isInteger(n) || n < 1)
    throw new DistillError(
      `DISTILL_BLAS_THREADS=${wanted} is not a whole number of threads`,
      'set it to 1 or more, or unset it',
    );
  return n;
}

/** Processes mpirun started on this machine (1 alone). */
function localRanks(): number {
  return Math.max(1, Number(process.env['OMPI_COMM_WORLD_LOCAL_SIZE'] ?? 1));
}

/** This machine's cores shared between mpirun's local ranks, so that they do not oversubscribe them. */
function coresPerRank(): number {
  return Math.max(1, Math.floor(availableParallelism() / localRanks()));
}

/** Threads for a product engine that does not choose its own (onnxruntime): DISTILL_BLAS_THREADS, else coresPerRank. */
function productThreads(): number {
  return requestedThreads() ?? coresPerRank();
}

/** Geometry of one BatchMatMul call: out[g] = op(a[g]) @ op(b[g]), with a batch of 1 broadcast. */
export interface ProductGeometry extends BatchGeometry {
  outShape: number[];
}

/** The geometry of a BatchMatMul, or null when the batch shapes do not broadcast simply (left to tfjs). */
export function productGeometry(
  aShape: number[],
  bShape: number[],
  transposeA: boolean,
  transposeB: boolean,
): ProductGeometry | null {
  if (aShape.length < 2 || bShape.length < 2) return null;
  const ra = aShape.length;
  const rb = bShape.length;
  const M = transposeA ? aShape[ra - 1]! : aShape[ra - 2]!;
  const K = transposeA ? aShape[ra - 2]! : aShape[ra - 1]!;
  const Kb = transposeB ? bShape[rb - 1]! : bShape[rb - 2]!;
  const N = transposeB ? bShape[rb - 2]! : bShape[rb - 1]!;
  if (K !== Kb) {
    throw new DistillError(
      `matMul: inner dimensions differ (${K} in [${aShape.join(', ')}]${transposeA ? 'ᵀ' : ''} and ${Kb} in ` +
        `[${bShape.join(', ')}]${transposeB ? 'ᵀ' : ''})`,
    );
  }
  const batchShapeA = aShape.slice(0, -2);
  const batchShapeB = bShape.slice(0, -2);
  const batchA = batchShapeA.reduce((x, y) => x * y, 1);
  const batchB = batchShapeB.reduce((x, y) => x * y, 1);
  let batchShape: number[];
  if (batchShapeA.length === batchShapeB.length && batchShapeA.every((d, i) => d === batchShapeB[i]))
    batchShape = batchShapeA;
  else if (batchA === 1 && batchShapeB.length >= batchShapeA.length) batchShape = batchShapeB;
  else if (batchB === 1 && batchShapeA.length >= batchShapeB.length) batchShape = batchShapeA;
  else return null;
  return {
    batch: Math.max(batchA, batchB),
    batchA,
    batchB,
    M,
    K,
    N,
    transposeA,
    transposeB,
    outShape: [...batchShape, M, N],
  };
}

/** out = op(a) @ op(b) over the batch, on flat row-major arrays. */
export function blasProduct(blas: Blas, g: ProductGeometry, a: Float32Array, b: Float32Array, out: Float32Array): void {
  const { M, K, N } = g;
  if (M === 0 || N === 0) return;
  if (K === 0) {
    out.fill(0);
    return;
  }
  if (g.batch > 1 && blas.batchedProduct) {
    blas.batchedProduct(g, a, b, out);
    return;
  }
  const lda = g.transposeA ? M : K;
  const ldb = g.transposeB ? K : N;
  const ta = g.transposeA ? CBLAS_TRANS : CBLAS_NO_TRANS;
  const tb = g.transposeB ? CBLAS_TRANS : CBLAS_NO_TRANS;
  for (let i = 0; i < g.batch; i++) {
    const aView = g.batchA === 1 ? a : a.subarray(i * M * K, (i + 1) * M * K);
    const bView = g.batchB === 1 ? b : b.subarray(i * K * N, (i + 1) * K * N);
    const outView = g.batch === 1 ? out : out.subarray(i * M * N, (i + 1) * M * N);
    blas.sgemm(CBLAS_ROW_MAJOR, ta, tb, M, N, K, 1, aView, lda, bView, ldb, 0, outView, N);
  }
}

let ones: Float32Array = new Float32Array(0);

/** out[c] = Σ_r x[r, c] for x [rows, cols], as the product 1ᵀ x on the BLAS; false when there is no BLAS. */
export function blasColumnSums(x: Float32Array, rows: number, cols: number, out: Float32Array): boolean {
  const blas = loadBlas();
  if (!blas) return false;
  if (rows === 0 || cols === 0) {
    out.fill(0);
    return true;
  }
  if (ones.length < rows) ones = new Float32Array(rows).fill(1);
  blas.sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_NO_TRANS, 1, cols, rows, 1, ones, rows, x, cols, 0, out, cols);
  return true;
}
