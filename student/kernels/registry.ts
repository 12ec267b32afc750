// The one loop that registers our kernels. Each backend's list is in student/kernels/lists.ts; each kernel file
// exports its KernelConfigs. A kernel of ours whose name tfjs already has on that backend (BatchMatMul, Sum,
// GatherV2, the cpu backend's element-wise ops) replaces tfjs's, which is kept (originalKernel): ours hand it the
// cases they leave to it (other dtypes), and the tests compare the two. One marked onlyIfMissing is registered only
// where tfjs has none (a kernel a later tfjs release brings is left alone).

import * as tf from '@tensorflow/tfjs';

/** A kernel of ours, as registered. */
export interface OurKernel extends tf.KernelConfig {
  /** Register only where the backend has no kernel of this name. */
  onlyIfMissing?: boolean;
}

const key = (backendName: string, kernelName: string): string => `${backendName}/${kernelName}`;
const originals = new Map<string, tf.KernelFunc>();
const registered = new Set<string>();
const gradients = new Set<string>();

/** Register `kernels` (idempotent: each name once per backend). */
export function registerKernels(kernels: readonly OurKernel[]): void {
  for (const k of kernels) {
    const id = key(k.backendName, k.kernelName);
    if (registered.has(id)) continue;
    const existing = tf.getKernel(k.kernelName, k.backendName);
    if (existing && k.onlyIfMissing) continue;
    registered.add(id);
    if (!existing) {
      tf.registerKernel(k);
      continue;
    }
    originals.set(id, existing.kernelFunc);
    tf.unregisterKernel(k.kernelName, k.backendName);
    tf.registerKernel({
      ...k,
      setupFunc: k.setupFunc ?? existing.setupFunc,
      disposeFunc: k.disposeFunc ?? existing.disposeFunc,
    });
  }
}

/** Register gradient configs that replace tfjs's (once per kernel name and process). */
export function registerGradients(configs: readonly tf.GradConfig[]): void {
  for (const g of configs) {
    if (gradients.has(g.kernelName)) continue;
    gradients.add(g.kernelName);
    tf.registerGradient(g);
  }
}

/** tfjs's own kernel that ours replaced on `backendName`, if any. */
export function originalKernel(backendName: string, kernelName: string): tf.KernelFunc | undefined {
  return originals.get(key(backendName, kernelName));
}

/** Whether a kernel of ours is registered under this name on this backend. */
export function isOurs(backendName: string, kernelName: string): boolean {
  return registered.has(key(backendName, kernelName));
}
