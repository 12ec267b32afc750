// The second way a tensor does not fit in the wasm backend's 4 GiB memory (test/wasm-heap.test.ts has the first):
// near 4 GiB, Emscripten's break wraps around 2³² and malloc returns a block that ends past the memory. In a file
// of its own: it needs a heap that nothing has grown yet (the block sizes below reach it from there).
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../student/backend.js';
import { wasmBackend } from '../student/kernels/backend-internals.js';
import { wasmHeapBytes, WasmHeapFullError } from '../student/kernels/wasm-heap.js';

const GIB = 2 ** 30;

describe('the wasm heap guard, past the end', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  it('near 4 GiB, a block that malloc places past the end of the memory throws too', () => {
    const wasm = wasmBackend(tf.backend());
    // 227 MiB blocks (about a bert-base student's [2048, 28996] logits) until one does not fit, asked of the
    // allocation function tfjs calls (the guarded one), with nothing in between: unguarded, Emscripten's break wraps
    // around 2³² and the 19th block on this fresh heap starts inside the memory and ends past it (as a real step's
    // did: tfjs's view of it then threw "Invalid typed array length"). Never written.
    const malloc = (wasm.wasm as unknown as { _malloc: (bytes: number) => number })._malloc;
    const bytes = 227 * 2 ** 20;
    const offsets: number[] = [];
    let caught: unknown;
    for (let i = 0; i < 24 && caught === undefined; i++) {
      try {
        offsets.push(malloc(bytes) >>> 0);
      } catch (e) {
        caught = e;
      }
    }
    const heap = wasmHeapBytes(wasm);
    for (const offset of offsets) {
      expect(offset, 'a block').toBeGreaterThan(0);
      expect(offset + bytes, 'a block inside the memory').toBeLessThanOrEqual(heap);
    }
    expect(caught).toBeInstanceOf(WasmHeapFullError);
    expect(offsets.length * bytes).toBeGreaterThan(3.9 * GIB); // it failed for want of room, not before
  });
});
