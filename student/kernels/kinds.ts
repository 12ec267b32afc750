// What a kernel file exports: its kernels for each backend it has them for (student/kernels/lists.ts gathers them).

import type { OurKernel } from './registry.js';

export type KernelBackendName = 'wasm' | 'cpu' | 'webgpu';

/** A kernel file's kernels, by backend: `BackendKernels<'webgpu'>` for a file with webgpu kernels only. */
export type BackendKernels<B extends KernelBackendName = KernelBackendName> = Record<B, OurKernel[]>;
