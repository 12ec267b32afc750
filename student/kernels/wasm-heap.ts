// The `wasm` backend's memory: one WebAssembly memory of at most 4 GiB (32-bit addresses), which every tensor of
// the student's step lives in (the activations kept for the backward pass, the [B·T, V] logits and their
// gradient, the teacher's soft targets, the weights, gradients and AdamW moments). tfjs-backend-wasm allocates a
// tensor with the module's `malloc` and does not check what it returns: when the memory cannot grow any more,
// malloc returns 0 and tfjs writes the tensor over the start of the heap, corrupting it, or (near 4 GiB) a block
// that ends past the memory; the step then fails later, far from the cause ("RuntimeError: memory access out of
// bounds" inside free, "RangeError: Invalid typed array length" in a kernel, or wrong numbers).
// `guardWasmHeap` puts a check between tfjs and malloc so that the allocation that does not fit stops the run
// there, with an error that says what to change.

import { DistillError } from '../../src/core/errors.js';
import type { WasmBackend } from './backend-internals.js';

/** The largest memory a 32-bit WebAssembly module can have (tfjs-backend-wasm's maximum). */
export const WASM_HEAP_LIMIT_BYTES = 2 ** 32;

/** The `wasm` backend's memory is full: a tensor did not fit. */
export class WasmHeapFullError extends DistillError {
  constructor(
    readonly requestedBytes: number,
    readonly heapBytes: number,
  ) {
    super(
      `the wasm backend's memory is full: a tensor of ${mib(requestedBytes)} did not fit (the memory has grown to ` +
        `${mib(heapBytes)}; ` +
        (`WebAssembly's ends at ${mib(WASM_HEAP_LIMIT_BYTES)}, and one step's activations, its [B·T, vocab] logits ` +
          `and their gradient, `) +
        "the teacher's soft targets, the weights, gradients and AdamW moments all live in it)",
      'use fewer tokens per step: a smaller batch_size (raise grad_accum to keep the same effective batch; `distill ' +
        'bench`: --batch) ' +
        ('or max_length; soft_targets_topk (e.g. 32) also drops the full [B·T, ' +
          'vocab] soft targets; or train on webgpu or tensorflow'),
    );
    this.name = 'WasmHeapFullError';
  }
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

type Malloc = (bytes: number) => number;
interface WasmModule {
  _malloc: Malloc;
  asm?: { malloc?: Malloc; memory?: WebAssembly.Memory };
  HEAPU8: Uint8Array;
}

const guarded = new WeakSet<object>();

/**
 * Make the wasm backend's allocations throw WasmHeapFullError where malloc fails (idempotent). The raw export is
 * wrapped, not `_malloc` itself: Emscripten's `_malloc` replaces itself with the raw export on its first call.
 */
export function guardWasmHeap(backend: WasmBackend): void {
  const module = backend.wasm as unknown as WasmModule;
  if (guarded.has(module)) return;
  const raw = module.asm?.malloc ?? module._malloc;
  module._malloc = (bytes: number): number => {
    const offset = raw(bytes) >>> 0; // malloc's i32, read unsigned (as tfjs reads it): above 2 GiB it is negative
    // Two ways of not fitting: malloc says so (0), or, within the last few MiB below 4 GiB, it returns a block that
    // ends past the memory (Emscripten's sbrk lets the break wrap around 2³²: seen with a bert-base student at
    // batch 16 × 128, a 227 MiB block at 3.84 GiB in a 3.99 GiB memory; tfjs's view of it then throws a
    // RangeError, or the kernels write out of bounds). Such a block is not freed: the allocator's state is suspect.
    if (bytes > 0 && (offset === 0 || offset + bytes > module.HEAPU8.buffer.byteLength)) {
      throw new WasmHeapFullError(bytes, module.HEAPU8.buffer.byteLength);
    }
    return offset;
  };
  guarded.add(module);
}

/** The wasm backend's memory now (it only grows: after a step, the step's peak). */
export function wasmHeapBytes(backend: WasmBackend): number {
  return (backend.wasm as unknown as WasmModule).HEAPU8.buffer.byteLength;
}
