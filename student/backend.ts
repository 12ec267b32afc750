// The student's tfjs backend: which one runs, and what the rest of distill may ask of it. The training loop, the
// model and the losses import this module and the ops (student/ops/), never the kernels behind them.
//
// Chosen at start: tensorflow (tfjs-node-gpu, else tfjs-node: optional dependencies, present when the user's install
// could download libtensorflow) > wasm > cpu, unless the user names one (--backend). `webgpu` is opt-in: tfjs's
// webgpu backend on Dawn (npm `webgpu`, prebuilt), both optional dependencies; it needs a Vulkan driver (a GPU's, or
// Mesa ≥ 25's software llvmpipe). Starting a backend registers its list of our kernels (student/kernels/lists.ts).

import * as tf from '@tensorflow/tfjs';
import { DistillError } from '../src/core/errors.js';
import type { BackendName, GpuProducts, Precision } from './backend-names.js';
import { loadBlas } from './kernels/blas.js';
import { registerGradients, registerKernels } from './kernels/registry.js';
import { cpuKernels, wasmKernels, wasmSimdKernels, webgpuKernels, WEBGPU_GRADIENTS } from './kernels/lists.js';
import { loadWasmSimd } from './kernels/simd.js';
import { guardWasmHeap, wasmHeapBytes, WASM_HEAP_LIMIT_BYTES } from './kernels/wasm-heap.js';
import { wasmBackend } from './kernels/backend-internals.js';
import { gpuHasF16, loadWebgpuBackend, watchGpuErrors, webgpuAdapter } from './kernels/webgpu-device.js';
import { setHalfProducts, setTiledProducts } from './kernels/matmul-webgpu.js';

export { activeGpuDevice, guardGpu, noMatchingAdapterError, throwIfGpuError } from './kernels/webgpu-device.js';
export type { BackendName, GpuProducts, Precision } from './backend-names.js';

/** Tried in this order when no backend is named; webgpu only when asked for. */
const DEFAULT_ORDER: BackendName[] = ['tensorflow', 'wasm', 'cpu'];

export interface BackendChoice {
  name: BackendName;
  /** Which package gave the backend, e.g. "@tensorflow/tfjs-node-gpu". */
  source: string;
  /** What runs the matrix products: the backend itself, or a native BLAS (student/kernels/blas.ts) on wasm/cpu. */
  matmul: string;
  /** The GPU adapter (webgpu): vendor, architecture, device, description and its buffer limits. */
  device?: string;
}

/** Whether the backend reads tensors synchronously (dataSync); webgpu in Node does not (no OffscreenCanvas). */
export function readsSynchronously(name: string = tf.getBackend()): boolean {
  return name !== 'webgpu';
}

/** Read tensors to the host (asynchronously) so that later synchronous reads of them succeed on any backend. */
export async function prefetch(tensors: tf.Tensor[]): Promise<void> {
  await Promise.all(tensors.map((t) => t.data()));
}

/**
 * The adapter of MPI rank `rank` from the config's gpu_adapters
 * list (entry rank mod length); undefined: Dawn's default.
 */
export function adapterForRank(adapters: readonly string[], rank: number): string | undefined {
  return adapters.length ? adapters[rank % adapters.length] : undefined;
}

async function tryImport(name: string): Promise<boolean> {
  try {
    await import(name);
    return true;
  } catch {
    return false;
  }
}

async function loadTensorflowBackend(): Promise<string | undefined> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    if (await tryImport(pkg)) return pkg;
  }
  return undefined;
}

/** What runs the CPU backends' matrix products: the BLAS's description and threads, or null (tfjs's own). */
export function cpuProductEngine(): string | null {
  const blas = loadBlas();
  return blas ? `${blas.description}${blas.threads ? `, ${blas.threads} threads` : ''}` : null;
}

/** The wasm backend's memory now (it only grows: after a step, the step's peak) and its limit; undefined elsewhere. */
export function wasmMemory(): { bytes: number; limitBytes: number } | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  return { bytes: wasmHeapBytes(wasmBackend(tf.backend())), limitBytes: WASM_HEAP_LIMIT_BYTES };
}

/** Load the named backend's package and register the kernels it takes before starting; its source, or undefined. */
async function loadBackend(name: BackendName, options: BackendOptions): Promise<string | undefined> {
  if (name === 'tensorflow') return loadTensorflowBackend();
  if (name === 'webgpu') return loadWebgpuBackend(options.gpuAdapter, options.gpuAdapterOption);
  if (name === 'wasm') {
    if (!(await tryImport('@tensorflow/tfjs-backend-wasm'))) return undefined;
    registerKernels(wasmKernels());
    return '@tensorflow/tfjs-backend-wasm';
  }
  registerKernels(cpuKernels());
  return '@tensorflow/tfjs-backend-cpu';
}

function notInstalledError(name: BackendName): DistillError {
  return new DistillError(
    `the ${name} backend is not installed`,
    name === 'tensorflow'
      ? 'install @tensorflow/tfjs-node-gpu (CUDA 11.2 + cuDNN 8.1) or @tensorflow/tfjs-node; their install downloads ' +
          'libtensorflow, so it needs internet access'
      : name === 'webgpu'
        ? 'install the optional dependencies webgpu and @tensorflow/tfjs-backend-webgpu: npm install webgpu ' +
          '@tensorflow/tfjs-backend-webgpu'
        : 'reinstall the project dependencies: npm install',
  );
}

/** What a started backend still needs: wasm its SIMD kernels and heap guard, webgpu its kernels and product mode. */
async function afterStart(name: BackendName, precision: Precision, gpuProducts: GpuProducts): Promise<void> {
  if (name === 'wasm') {
    await loadWasmSimd();
    registerKernels(wasmSimdKernels());
    guardWasmHeap(wasmBackend(tf.backend()));
  }
  if (name !== 'webgpu') return;
  watchGpuErrors();
  registerKernels(webgpuKernels());
  registerGradients(WEBGPU_GRADIENTS);
  if (precision === 'fp16-mixed' && !gpuHasF16()) {
    throw new DistillError(
      `precision "fp16-mixed": the adapter ${webgpuAdapter() ?? ''} has no shader-f16 (f16 arithmetic in shaders)`,
      'set precision to "fp32", or choose an adapter that has it (gpu_adapters)',
    );
  }
  setHalfProducts(precision === 'fp16-mixed');
  setTiledProducts(gpuProducts === 'tiled');
}

export interface BackendOptions {
  /** On webgpu, a part of the adapter's name. */
  gpuAdapter?: string;
  /** The option that gave gpuAdapter, for errors (e.g. "--gpu-adapter"). */
  gpuAdapterOption?: string;
  precision?: Precision;
  gpuProducts?: GpuProducts;
}

/**
 * Pick and start the backend. `requested` undefined means the best present. Throws a DistillError naming
 * what to install when a requested backend is absent.
 */
export async function selectBackend(requested?: BackendName, options: BackendOptions = {}): Promise<BackendChoice> {
  const precision = options.precision ?? 'fp32';
  const gpuProducts = options.gpuProducts ?? 'tfjs';
  if (precision === 'fp16-mixed' && requested !== 'webgpu') {
    throw new DistillError(
      `precision "fp16-mixed" runs on the webgpu backend only (the backend is ` +
        `${requested ? `"${requested}"` : 'not set'})`,
      'set backend to "webgpu" (a GPU, or Mesa\'s software adapter), or precision to "fp32"',
    );
  }
  // PROD silences tfjs's console banners (its advice to install tfjs-node is in our README instead).
  tf.env().set('PROD', true);
  const order: BackendName[] = requested ? [requested] : DEFAULT_ORDER;
  // The CPU backends' product engine first, before any backend's WebAssembly starts (see ort-gemm.ts).
  if (order.includes('wasm') || order.includes('cpu')) loadBlas();
  for (const name of order) {
    const source = await loadBackend(name, options);
    if (!source) {
      if (requested) throw notInstalledError(name);
      continue;
    }
    if (tf.getBackend() !== name && !(await tf.setBackend(name))) {
      if (requested)
        throw new DistillError(
          `the ${name} backend did not start`,
          'run with --backend cpu to use the pure-JS backend',
        );
      continue;
    }
    await tf.ready();
    await afterStart(name, precision, gpuProducts);
    const cpuEngine = name === 'wasm' || name === 'cpu' ? cpuProductEngine() : null;
    const matmul =
      cpuEngine ??
      (name === 'webgpu' && precision === 'fp16-mixed'
        ? 'webgpu, f16 operands with fp32 accumulation'
        : name === 'webgpu' && gpuProducts === 'tiled'
          ? "webgpu, distill's tiled fp32 program"
          : name);
    return { name, source, matmul, ...(name === 'webgpu' ? { device: webgpuAdapter() } : {}) };
  }
  throw new DistillError('no tfjs backend could be started', 'reinstall the project dependencies: npm install');
}
