// What our kernels take from tfjs's backends, declared once: a kernel function's arguments, and the parts of
// the two host backends (`cpu`, `wasm`) the kernels reach into (webgpu's are in wgsl-program.ts).
//
// A kernel function receives the backend as a plain `tf.KernelBackend`; reading a tensor's memory or making an
// output needs the concrete backend's methods. `@tensorflow/tfjs` does not export MathBackendCPU's type, and
// BackendWasm's declaration marks the tensor-id counter private, so both are described here, as tfjs 4.22 has
// them (package.json pins it), and every kernel file casts through `cpuBackend` / `wasmBackend`.

import type * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

/** What tfjs passes a kernel function. */
export interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
}

/** The values a host tensor holds. */
export type HostValues = Float32Array | Int32Array;

/** tfjs-backend-cpu's MathBackendCPU, as far as our kernels use it. */
export interface CpuBackend extends tf.KernelBackend {
  /** A tensor's values, without the copy `readSync` makes for some dtypes. */
  data: { get(dataId: tf.DataId): { values: HostValues } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: HostValues): tf.TensorInfo;
}

/**
 * tfjs-backend-wasm's BackendWasm with what its declaration leaves out: the counter of tensor ids (private there;
 * products.ts registers views under fresh ids), the module's memory (the SIMD module is compiled on it) and
 * Emscripten's `cwrap` (products.ts calls the module's BatchMatMul directly).
 */
export type WasmBackend = Omit<BackendWasm, 'wasm'> & {
  dataIdNextNumber: number;
  wasm: BackendWasm['wasm'] & {
    asm?: { memory?: WebAssembly.Memory };
    cwrap(name: string, returns: null, argTypes: string[]): (...args: unknown[]) => void;
  };
};

/** `backend` as the cpu backend (the caller knows which backend the kernel is registered on). */
export function cpuBackend(backend: tf.KernelBackend): CpuBackend {
  return backend as CpuBackend;
}

/** `backend` as the wasm backend (the caller knows which backend the kernel is registered on). */
export function wasmBackend(backend: tf.KernelBackend): WasmBackend {
  return backend as unknown as WasmBackend;
}
