// The WebAssembly SIMD passes (student/kernels/simd.ts) against plain float64 JS on the same data, on a memory of
// their own (the module imports any WebAssembly.Memory) and on the wasm backend's.
import { beforeAll, describe, expect, it } from 'vitest';
import { compileSimd, type SimdKernels } from '../student/kernels/simd.js';
import { erf } from '../student/kernels/gelu.js';

function random(n: number, seed: number, scale = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648 - 0.5) * scale;
  });
}

const memory = new WebAssembly.Memory({ initial: 16 });
const heap = new Float32Array(memory.buffer);
let k: SimdKernels;
/** Place arrays one after another in the memory (from byte 64); returns their byte offsets. */
function place(...arrays: Float32Array[]): number[] {
  let at = 16;
  return arrays.map((a) => {
    heap.set(a, at);
    const offset = at * 4;
    at += a.length + 3; // odd gaps: the passes must not assume aligned or padded rows
    return offset;
  });
}
const read = (offset: number, n: number): Float32Array => heap.slice(offset / 4, offset / 4 + n);

beforeAll(async () => {
  const compiled = await compileSimd(memory);
  expect(compiled, 'wasm SIMD module compiled').not.toBeNull();
  k = compiled!;
});

describe('wasm SIMD passes', () => {
  // 4-lane bodies plus tails of every length.
  for (const n of [1, 3, 4, 7, 61, 1000]) {
    it(`n = ${n}: the biased max, exp sums, dot, and the gradient updates (scaled too) equal float64 JS`, () => {
      const x = random(n, n + 1, 30);
      const p = random(n, n + 2, 1).map(Math.abs);
      const g = random(n, n + 3, 1);
      const bias = random(n, n + 4, 1);
      const t = random(n, n + 5, 10);
      const [xo, po, go, bo, to, outo] = place(x, p, g, bias, t, new Float32Array(n));
      // x + t row by row, as float32 adds it,
      // and its maximum (the logit-loss pass's first step, t in place of the bias).
      const shifted = x.map((v, i) => v + t[i]!); // a Float32Array: each sum rounded to float32
      expect(k.addMax(xo!, to!, outo!, n)).toBe(Math.max(...shifted));
      expect(read(outo!, n)).toEqual(shifted);
      const m = Math.max(...x);

      const scale = 0.5;
      const sum = k.expSumDot(xo!, outo!, po!, n, m, scale);
      let wantSum = 0;
      let wantDot = 0;
      const out = read(outo!, n);
      for (let i = 0; i < n; i++) {
        const a = Math.fround(Math.fround(x[i]! - m) * scale); // the argument as float32 computes it
        expect(Math.abs(out[i]! - Math.exp(a)) / Math.exp(a), `exp at ${i}`).toBeLessThan(3e-7);
        wantSum += Math.exp(a);
        wantDot += p[i]! * a;
      }
      expect(Math.abs(sum - wantSum) / wantSum).toBeLessThan(1e-6);
      expect(Math.abs(k.second() - wantDot)).toBeLessThan(1e-5 * Math.max(1, Math.abs(wantDot)));
      expect(Math.abs(k.expSum(xo!, outo!, n, m, 1) - x.reduce((a, v) => a + Math.exp(v - m), 0))).toBeLessThan(1e-5);

      k.klGrad(go!, po!, bo!, n, 0.7, 0.3);
      const g1 = read(go!, n);
      const b1 = read(bo!, n);
      for (let i = 0; i < n; i++) {
        const want = 0.7 * g[i]! - 0.3 * p[i]!;
        expect(g1[i]).toBeCloseTo(want, 6);
        expect(b1[i]).toBeCloseTo(bias[i]! + want, 6);
      }
      k.axpy2(go!, po!, bo!, n, 2);
      const g2 = read(go!, n);
      const b2 = read(bo!, n);
      for (let i = 0; i < n; i++) {
        expect(g2[i]).toBeCloseTo(g1[i]! + 2 * p[i]!, 6);
        expect(b2[i]).toBeCloseTo(b1[i]! + 2 * p[i]!, 6);
      }
      const sq = k.mseGrad(go!, xo!, to!, bo!, n, 0.1);
      const g3 = read(go!, n);
      let wantSq = 0;
      for (let i = 0; i < n; i++) {
        const d = x[i]! - t[i]!;
        wantSq += d * d;
        expect(g3[i]).toBeCloseTo(g2[i]! + 0.1 * d, 5);
      }
      expect(Math.abs(sq - wantSq) / wantSq).toBeLessThan(1e-6);
      const b3 = read(bo!, n);
      k.scaleAcc(go!, bo!, n, -0.75);
      const g4 = read(go!, n);
      const b4 = read(bo!, n);
      for (let i = 0; i < n; i++) {
        expect(g4[i]).toBe(Math.fround(-0.75 * g3[i]!)); // one float32 product: exact to compare
        expect(b4[i]).toBe(Math.fround(b3[i]! + g4[i]!));
      }
      // Nothing written past the n elements of each array.
      expect(heap[outo! / 4 + n]).toBe(0);
    });
  }

  it('exp over the clamped range, GELU and its gradient', () => {
    const n = 2003;
    const x = Float32Array.from({ length: n }, (_, i) => -100 + (200 * i) / (n - 1));
    const dy = random(n, 7, 2);
    const [xo, dyo, eo, go, ggo] = place(x, dy, new Float32Array(n), new Float32Array(n), new Float32Array(n));
    k.expSum(xo!, eo!, n, 0, 1);
    k.gelu(xo!, go!, n);
    k.geluGrad(xo!, dyo!, ggo!, n);
    const e = read(eo!, n);
    const gl = read(go!, n);
    const gg = read(ggo!, n);
    for (let i = 0; i < n; i++) {
      const v = x[i]!;
      const want = Math.exp(Math.min(Math.max(v, -87), 88));
      expect(Math.abs(e[i]! - want) / want, `exp(${v})`).toBeLessThan(3e-7);
      const phi = 0.5 * (1 + erf(v * Math.SQRT1_2));
      expect(Math.abs(gl[i]! - v * phi), `gelu(${v})`).toBeLessThan(2e-6 * Math.max(1, Math.abs(v)));
      const d = dy[i]! * (phi + (v * Math.exp(-0.5 * v * v)) / Math.sqrt(2 * Math.PI));
      expect(Math.abs(gg[i]! - d), `gelu'(${v})`).toBeLessThan(2e-6);
    }
  });

  it('exp keeps NaN and clamps ±∞ to the bounds; GELU and its gradient keep NaN', () => {
    // The clamps are pmin/pmax with x first, which return NaN for NaN (simd.ts): with the operands the other way
    // round exp(NaN) would be exp(−87), a finite number where a NaN logit must make the loss NaN.
    const x = Float32Array.from([NaN, Infinity, -Infinity, 88, -87, 1e30, -1e30]);
    const n = x.length;
    const [xo, eo, go, ggo, dyo] = place(
      x,
      new Float32Array(n),
      new Float32Array(n),
      new Float32Array(n),
      new Float32Array(n).fill(1),
    );
    k.expSum(xo!, eo!, n, 0, 1);
    k.gelu(xo!, go!, n);
    k.geluGrad(xo!, dyo!, ggo!, n);
    const e = read(eo!, n);
    expect(e[0]).toBeNaN();
    expect([e[1], e[5]]).toEqual([e[3], e[3]]); // +∞ and 1e30 give exp(88), bit for bit
    expect([e[2], e[6]]).toEqual([e[4], e[4]]); // −∞ and −1e30 give exp(−87)
    expect(Math.abs(e[3]! - Math.exp(88)) / Math.exp(88)).toBeLessThan(3e-7);
    expect(read(go!, n)[0]).toBeNaN();
    expect(read(ggo!, n)[0]).toBeNaN();
  });
});
