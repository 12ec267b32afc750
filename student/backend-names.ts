// The names a user chooses among (backends, product arithmetic, who computes webgpu's products), apart from the
// kernels themselves: the CLI's option parsers read them without loading tfjs (distill --help starts in a
// fraction of the time).

/** The student's tfjs backends (student/backend.ts). */
export const BACKEND_NAMES = ['tensorflow', 'wasm', 'cpu', 'webgpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** The arithmetic of the student's matrix products: fp32, or f16 operands with fp32 sums (webgpu only). */
export const PRECISIONS = ['fp32', 'fp16-mixed'] as const;
export type Precision = (typeof PRECISIONS)[number];

/** Who computes webgpu's fp32 products: tfjs's own kernel, or distill's tiled program (config webgpu_products). */
export const GPU_PRODUCTS = ['tfjs', 'tiled'] as const;
export type GpuProducts = (typeof GPU_PRODUCTS)[number];
