// The wasm backend's memory ends at 4 GiB; tfjs-backend-wasm does not check malloc, so a tensor that does not fit
// used to be placed at address 0, over the heap's own bookkeeping, and the run failed later with "memory access
// out of bounds" inside free (a bert-base student at batch 32 × 128 did). student/kernels/wasm-heap.ts turns
// that allocation into a WasmHeapFullError that names what to change. (The other way of not fitting, a block past
// the end of the memory, is in test/wasm-heap-wrap.test.ts: it needs a fresh heap.)
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../student/backend.js';
import { wasmBackend } from '../student/kernels/backend-internals.js';
import {
  guardWasmHeap,
  wasmHeapBytes,
  WasmHeapFullError,
  WASM_HEAP_LIMIT_BYTES,
} from '../student/kernels/wasm-heap.js';

const GIB = 2 ** 30;

describe('the wasm heap guard', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  it('a tensor that does not fit in the 4 GiB memory throws WasmHeapFullError, and the heap stays usable', () => {
    const wasm = wasmBackend(tf.backend());
    // 3 GiB that is never written (makeOutput without values only allocates), then 1.5 GiB more: 4.5 GiB cannot
    // fit in 32-bit addresses whatever the allocator does. Nothing is touched, so the machine's memory is not used.
    const big = wasm.makeOutput([(3 * GIB) / 4], 'float32');
    expect(wasmHeapBytes(wasm)).toBeGreaterThanOrEqual(3 * GIB);
    expect(wasmHeapBytes(wasm)).toBeLessThanOrEqual(WASM_HEAP_LIMIT_BYTES);
    let caught: unknown;
    try {
      wasm.makeOutput([(1.5 * GIB) / 4], 'float32');
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(WasmHeapFullError);
    expect((caught as WasmHeapFullError).requestedBytes).toBe(1.5 * GIB);
    expect((caught as Error).message).toMatch(/the wasm backend's memory is full: a tensor of 1536 MiB did not fit/);
    expect((caught as WasmHeapFullError).hint).toMatch(/batch_size .*grad_accum/);
    wasm.disposeData(big.dataId);
    // Unguarded, the failed allocation's tensor sat at address 0: the allocator's state was overwritten and this
    // failed. Guarded, the heap is intact: tensors are made, computed with and freed.
    const a = tf.tensor2d([
      [1, 2],
      [3, 4],
    ]);
    const product = tf.matMul(a, a);
    expect(Array.from(product.dataSync())).toEqual([7, 10, 15, 22]);
    tf.dispose([a, product]);
  });

  it("wraps the module's raw malloc (Emscripten's _malloc replaces itself with it on first call), once", () => {
    const calls: number[] = [];
    let next = 64;
    const module = {
      HEAPU8: new Uint8Array(256),
      // 64 for the first block, then 200: a block of 100 there ends past the 256-byte memory; 0 above 150 bytes.
      asm: {
        malloc: (bytes: number): number => {
          calls.push(bytes);
          if (bytes > 150) return 0;
          const at = next;
          next = 200;
          return at;
        },
      },
      _malloc: (_bytes: number): number => {
        throw new Error('the lazy binding must not be called');
      },
    };
    const backend = { wasm: module } as unknown as Parameters<typeof guardWasmHeap>[0];
    guardWasmHeap(backend);
    const wrapped = module._malloc;
    guardWasmHeap(backend); // idempotent: not wrapped twice
    expect(module._malloc).toBe(wrapped);
    expect(module._malloc(16)).toBe(64);
    expect(module._malloc(56)).toBe(200); // ends at 256: fits
    expect(() => module._malloc(57)).toThrow(WasmHeapFullError); // ends at 257: past the memory
    expect(() => module._malloc(200)).toThrow(WasmHeapFullError); // malloc's 0
    expect(calls).toEqual([16, 56, 57, 200]);
  });
});
