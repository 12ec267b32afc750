// Matrix products on onnxruntime's MLAS, for installs without a system BLAS. Every `npm install` brings
// onnxruntime-node (the teacher runs on it), and with it a fast multi-threaded GEMM. Its JavaScript API cannot
// serve tfjs kernels: `run` is asynchronous, and it copies every output into a new buffer even when given a
// pre-allocated one (a 4096 × 6144 product output cost ~330 ms of copying, against ~20 ms of arithmetic). So
// this file calls onnxruntime's C API (the library inside onnxruntime-node) through koffi, as blas.ts calls a
// BLAS: each operand and the output are wrapped as tensors over their own memory (on `wasm`, the wasm heap;
// CreateTensorWithDataAsOrtValue copies nothing) and one Gemm node (a batch: one FusedMatMul) runs on them,
// writing the product in place. One inference session per transpose combination and rank, created on first use
// and kept; shapes are symbolic.
//
// The OrtApi table is append-only (its order is onnxruntime's ABI), so the indices below hold for every
// version that has them; version 16 of the table is asked for (onnxruntime ≥ 1.16).

import koffi, { type LibraryHandle, type TypeObject } from 'koffi';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DistillError } from '../../src/core/errors.js';
import { OnnxGraphBuilder } from '../../src/core/onnx-writer.js';

const ORT_API_VERSION = 16;
/** Positions in the OrtApi table (onnxruntime_c_api.h). */
const INDEX = {
  GetErrorMessage: 2,
  CreateEnv: 3,
  CreateSessionFromArray: 8,
  Run: 9,
  CreateSessionOptions: 10,
  SetSessionExecutionMode: 13,
  SetSessionGraphOptimizationLevel: 23,
  SetIntraOpNumThreads: 24,
  SetInterOpNumThreads: 25,
  CreateTensorWithDataAsOrtValue: 49,
  CreateCpuMemoryInfo: 69,
  ReleaseStatus: 93,
  ReleaseValue: 96,
  AddSessionConfigEntry: 130,
} as const;
const ONNX_FLOAT = 1;
const ORT_LOGGING_LEVEL_ERROR = 3;
const ORT_SEQUENTIAL = 0;
const ORT_ENABLE_ALL = 99;
const ORT_DEVICE_ALLOCATOR = 0;
const ORT_MEM_TYPE_DEFAULT = 0;

type Pointer = unknown;
/** onnxruntime-node, as this module resolves it: its library's folder, and its binding (loaded first, below). */
const requireHere = createRequire(import.meta.url);
type Call = (index: number, proto: TypeObject, ...args: unknown[]) => unknown;

/** The onnxruntime library onnxruntime-node ships for this platform. */
function ortLibraryPath(): string | undefined {
  let dir: string;
  try {
    dir = join(
      dirname(requireHere.resolve('onnxruntime-node')),
      '..',
      'bin',
      'napi-v6',
      process.platform,
      process.arch,
    );
  } catch {
    return undefined;
  }
  if (!existsSync(dir)) return undefined;
  const name = readdirSync(dir).find((f) =>
    /^(lib)?onnxruntime(\.so\.\d+|\.\d+\.\d+\.\d+\.dylib|\.dylib|\.dll)$/.test(f),
  );
  return name ? join(dir, name) : undefined;
}

export interface OrtGemm {
  library: string;
  /** "onnxruntime 1.30.0 MLAS" */
  description: string;
  threads: number;
  /** C = op(A) op(B) for row-major, contiguous operands (cblas_sgemm's arguments, alpha 1 and beta 0 only). */
  sgemm: (
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
  /** out[i] = op(a[i]) op(b[i]) for a batch (a batch of one broadcast), in one call. */
  batchedProduct: (g: BatchGeometry, a: Float32Array, b: Float32Array, out: Float32Array) => void;
}

/**
 * out[i] = op(a[i]) op(b[i]) over a batch (batchA or batchB may be 1:
 * broadcast); blas.ts's ProductGeometry adds the output shape.
 */
export interface BatchGeometry {
  batch: number;
  batchA: number;
  batchB: number;
  M: number;
  K: number;
  N: number;
  transposeA: boolean;
  transposeB: boolean;
}

/** onnxruntime's GEMM with `threads` intra-op threads; null when the library cannot be loaded. */
export function loadOrtGemm(threads: number): OrtGemm | null {
  const library = ortLibraryPath();
  if (!library) return null;
  let lib: LibraryHandle;
  try {
    // onnxruntime-node's binding first: with the library loaded by koffi alone, a product of 16M outputs or more
    // on one thread (DISTILL_BLAS_THREADS=1, or mpirun's ranks sharing two cores) crashed inside the first Run
    // (SIGSEGV, a jump into unmapped memory; onnxruntime 1.30, koffi 3.3); loaded after the binding, as
    // whenever the teacher's module is imported first, it runs (test/products-ort.test.ts: such a product in a process
    // that imports nothing else).
    requireHere('onnxruntime-node');
    lib = koffi.load(library);
  } catch {
    return null;
  }
  const api = ortApi(lib, library);
  if (!api) return null; // older than the table asked for
  const { version, call, proto, check, created, out } = api;
  // The process has one onnxruntime environment (the teacher's session shares it); CreateEnv returns it.
  const env = created(
    call(INDEX.CreateEnv, proto.createEnv, ORT_LOGGING_LEVEL_ERROR, 'distill-products', out),
    'CreateEnv',
  );
  const options = created(call(INDEX.CreateSessionOptions, proto.createOptions, out), 'CreateSessionOptions');
  check(call(INDEX.SetIntraOpNumThreads, proto.setInt, options, threads), 'SetIntraOpNumThreads');
  check(call(INDEX.SetInterOpNumThreads, proto.setInt, options, 1), 'SetInterOpNumThreads');
  check(call(INDEX.SetSessionExecutionMode, proto.setInt, options, ORT_SEQUENTIAL), 'SetSessionExecutionMode');
  check(
    call(INDEX.SetSessionGraphOptimizationLevel, proto.setInt, options, ORT_ENABLE_ALL),
    'SetSessionGraphOptimizationLevel',
  );
  // Between products the pool's threads sleep instead of spinning: the student's other kernels (one thread) and
  // the teacher's session run between them on the same cores, and spinning threads slowed those ~1.7× here.
  check(
    call(INDEX.AddSessionConfigEntry, proto.configEntry, options, 'session.intra_op.allow_spinning', '0'),
    'AddSessionConfigEntry',
  );
  const memoryInfo = created(
    call(INDEX.CreateCpuMemoryInfo, proto.createMemoryInfo, ORT_DEVICE_ALLOCATOR, ORT_MEM_TYPE_DEFAULT, out),
    'CreateCpuMemoryInfo',
  );

  // One session per transpose combination and rank: 2-D products are one Gemm; a batch of products is one
  // FusedMatMul (onnxruntime's MatMul with transpose attributes, batched, a batch of one broadcast), so a batch
  // of 96 attention products is one call, not 96.
  const sessions = new Map<string, Pointer>();
  const session = (transA: boolean, transB: boolean, batched: boolean): Pointer => {
    const key = `${Number(transA)}${Number(transB)}${Number(batched)}`;
    let s = sessions.get(key);
    if (!s) {
      const model = productModel(transA, transB, batched);
      s = created(
        call(INDEX.CreateSessionFromArray, proto.createSession, env, model, model.length, options, out),
        'CreateSessionFromArray',
      );
      sessions.set(key, s);
    }
    return s;
  };
  const tensor = (data: Float32Array, dims: number[]): Pointer => {
    void data.buffer; // an on-heap typed array moves to a fixed backing store when its buffer is asked for
    const count = dims.reduce((x, y) => x * y, 1);
    return created(
      call(
        INDEX.CreateTensorWithDataAsOrtValue,
        proto.createTensor,
        memoryInfo,
        data,
        count * 4,
        BigInt64Array.from(dims.map((d) => BigInt(d))),
        dims.length,
        ONNX_FLOAT,
        out,
      ),
      'CreateTensorWithDataAsOrtValue',
    );
  };
  const inputNames = ['A', 'B'];
  const outputNames = ['C'];
  const run = (s: Pointer, a: Pointer, b: Pointer, c: Pointer, what: string): void => {
    try {
      check(call(INDEX.Run, proto.run, s, null, inputNames, [a, b], 2, outputNames, 1, [c]), what);
    } finally {
      for (const v of [a, b, c]) call(INDEX.ReleaseValue, proto.releaseValue, v);
    }
  };

  const sgemm: OrtGemm['sgemm'] = (order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) => {
    const ta = transA === 112;
    const tb = transB === 112;
    if (order !== 101 || alpha !== 1 || beta !== 0 || lda !== (ta ? M : K) || ldb !== (tb ? K : N) || ldc !== N) {
      throw new DistillError(
        `onnxruntime products take row-major contiguous operands with alpha 1 and beta 0 (got order ${order}, alpha ` +
          `${alpha}, beta ${beta}, lda ${lda}, ldb ${ldb}, ldc ${ldc})`,
      );
    }
    run(
      session(ta, tb, false),
      tensor(A.subarray(0, M * K), ta ? [K, M] : [M, K]),
      tensor(B.subarray(0, K * N), tb ? [N, K] : [K, N]),
      tensor(C.subarray(0, M * N), [M, N]),
      'Run (Gemm)',
    );
  };
  const batchedProduct: OrtGemm['batchedProduct'] = (g, a, b, c) => {
    const { M, K, N } = g;
    run(
      session(g.transposeA, g.transposeB, true),
      tensor(a, [g.batchA, ...(g.transposeA ? [K, M] : [M, K])]),
      tensor(b, [g.batchB, ...(g.transposeB ? [N, K] : [K, N])]),
      tensor(c, [g.batch, M, N]),
      'Run (FusedMatMul)',
    );
  };
  // Every session now, not on first use: onnxruntime's first session creation initialises the library, and made
  // later in a process that has since started tfjs-wasm and wabt's modules it crashed (SIGSEGV inside the call,
  // reproduced with koffi 2 and onnxruntime 1.30). selectBackend loads this engine before any backend starts.
  for (const transA of [false, true])
    for (const transB of [false, true]) for (const batched of [false, true]) session(transA, transB, batched);
  return { library, description: `onnxruntime ${version} MLAS`, threads, sgemm, batchedProduct };
}

/** onnxruntime's C API, by its function table, with the status checks every call goes through. */
function ortApi(lib: LibraryHandle, library: string) {
  const apiBase = koffi.struct('DistillOrtApiBase', { GetApi: 'void *', GetVersionString: 'void *' });
  const base = koffi.decode(lib.func('DistillOrtApiBase *OrtGetApiBase()')() as Pointer, apiBase) as {
    GetApi: Pointer;
    GetVersionString: Pointer;
  };
  const version = koffi.call(base.GetVersionString, koffi.proto('const char *DistillOrtVersion()')) as string;
  const api = koffi.call(base.GetApi, koffi.proto('void *DistillOrtGetApi(uint32_t)'), ORT_API_VERSION) as Pointer;
  if (!api) return undefined;
  const table = koffi.decode(api, 'void *', Math.max(...Object.values(INDEX)) + 1) as Pointer[];
  const call: Call = (index, proto, ...args) => koffi.call(table[index], proto, ...args);
  const proto = {
    message: koffi.proto('const char *DistillOrtGetErrorMessage(void *)'),
    releaseStatus: koffi.proto('void DistillOrtReleaseStatus(void *)'),
    createEnv: koffi.proto('void *DistillOrtCreateEnv(int, const char *, _Out_ void **)'),
    createSession: koffi.proto(
      'void *DistillOrtCreateSessionFromArray(void *, const uint8_t *, size_t, void *, _Out_ void **)',
    ),
    run: koffi.proto(
      'void *DistillOrtRun(void *, void *, const char **, void **, size_t, const char **, size_t, _Inout_ void **)',
    ),
    createOptions: koffi.proto('void *DistillOrtCreateSessionOptions(_Out_ void **)'),
    setInt: koffi.proto('void *DistillOrtSetOptionInt(void *, int)'),
    configEntry: koffi.proto('void *DistillOrtAddSessionConfigEntry(void *, const char *, const char *)'),
    createMemoryInfo: koffi.proto('void *DistillOrtCreateCpuMemoryInfo(int, int, _Out_ void **)'),
    createTensor: koffi.proto(
      'void *DistillOrtCreateTensorWithData(void *, void *, size_t, const int64_t *, size_t, int, _Out_ void **)',
    ),
    releaseValue: koffi.proto('void DistillOrtReleaseValue(void *)'),
  };
  const check = (status: unknown, what: string): void => {
    if (!status) return;
    const message = call(INDEX.GetErrorMessage, proto.message, status) as string;
    call(INDEX.ReleaseStatus, proto.releaseStatus, status);
    throw new DistillError(
      `onnxruntime (${library}): ${what} failed: ${message}`,
      "set DISTILL_BLAS=off to multiply with tfjs's own kernels",
    );
  };
  const out: Pointer[] = [null];
  const created = (status: unknown, what: string): Pointer => {
    check(status, what);
    return out[0];
  };
  return { version, call, proto, check, created, out };
}

/**
 * The graph of one product: 2-D, one Gemm; a batch, one FusedMatMul (onnxruntime's MatMul with transpose
 * attributes, batched, a batch of one broadcast). Inputs A, B; output C.
 */
function productModel(transA: boolean, transB: boolean, batched: boolean): Uint8Array {
  const g = new OnnxGraphBuilder();
  const lead = batched ? ['batch'] : [];
  g.input('A', 'float', batched ? ['batchA', ...(transA ? ['K', 'M'] : ['M', 'K'])] : transA ? ['K', 'M'] : ['M', 'K']);
  g.input('B', 'float', batched ? ['batchB', ...(transB ? ['N', 'K'] : ['K', 'N'])] : transB ? ['N', 'K'] : ['K', 'N']);
  if (batched)
    g.node(
      'FusedMatMul',
      ['A', 'B'],
      { transA: Number(transA), transB: Number(transB), alpha: { float: 1 } },
      'C',
      'com.microsoft',
    );
  else g.node('Gemm', ['A', 'B'], { transA: Number(transA), transB: Number(transB) }, 'C');
  g.output('C', 'float', [...lead, 'M', 'N']);
  return g.encode('distill_product', 17, 'distill', { 'com.microsoft': 1 });
}
