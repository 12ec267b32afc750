// Choose the tfjs backend for the student at start:
//   tensorflow (tfjs-node-gpu, else tfjs-node: optional dependencies, present when the user's install could
//   download libtensorflow) > wasm > cpu, unless the user names one (--backend). `webgpu` is opt-in.

import * as tf from '@tensorflow/tfjs';
import { DistillError } from '../src/errors.js';
import { registerCpuTrainingKernels, registerWasmTrainingKernels } from './kernels.js';
import { loadBlas, registerBlasMatMul } from './blas.js';
import { registerGeluKernels } from './gelu.js';
import { loadWasmSimd } from './simd.js';

export const BACKEND_NAMES = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BackendChoice {
  name: BackendName;
  /** Which package gave the backend, e.g. "@tensorflow/tfjs-node-gpu". */
  source: string;
  /** What runs the matrix products: the backend itself, or a native BLAS (student/blas.ts) on wasm/cpu. */
  matmul: string;
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

async function loadWasmBackend(): Promise<boolean> {
  if (!(await tryImport('@tensorflow/tfjs-backend-wasm'))) return false;
  registerWasmTrainingKernels();
  registerBlasMatMul('wasm');
  registerGeluKernels('wasm');
  return true;
}

/**
 * Pick and start the backend. `requested` undefined means the best present. Throws a DistillError naming
 * what to install when a requested backend is absent.
 */
export async function selectBackend(requested?: BackendName): Promise<BackendChoice> {
  // PROD silences tfjs's console banners (its advice to install tfjs-node is in our README instead).
  tf.env().set('PROD', true);
  const order: BackendName[] = requested ? [requested] : [...BACKEND_NAMES];
  for (const name of order) {
    let source: string | undefined;
    if (name === 'tensorflow') source = await loadTensorflowBackend();
    else if (name === 'wasm') source = (await loadWasmBackend()) ? '@tensorflow/tfjs-backend-wasm' : undefined;
    else {
      registerCpuTrainingKernels();
      registerBlasMatMul('cpu');
      registerGeluKernels('cpu');
      source = '@tensorflow/tfjs-backend-cpu';
    }
    if (!source) {
      if (requested) {
        throw new DistillError(`the ${name} backend is not installed`,
          name === 'tensorflow'
            ? 'install @tensorflow/tfjs-node-gpu (CUDA 11.2 + cuDNN 8.1) or @tensorflow/tfjs-node; their install downloads libtensorflow, so it needs internet access'
            : 'reinstall the project dependencies: npm install');
      }
      continue;
    }
    if (tf.getBackend() !== name) {
      const ok = await tf.setBackend(name);
      if (!ok) {
        if (requested) throw new DistillError(`the ${name} backend did not start`, 'run with --backend cpu to use the pure-JS backend');
        continue;
      }
    }
    await tf.ready();
    if (name === 'wasm') await loadWasmSimd();
    const blas = name === 'tensorflow' ? null : loadBlas();
    const matmul = blas ? `${blas.description}${blas.threads ? `, ${blas.threads} threads` : ''}` : name;
    return { name, source, matmul };
  }
  throw new DistillError('no tfjs backend could be started', 'reinstall the project dependencies: npm install');
}
