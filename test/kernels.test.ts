// The kernels we register (student/kernels/wasm-cpu.ts, cpu-broadcast.ts) against tfjs's own cpu implementation.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../student/backend.js';
import { originalKernel as tfjsKernel } from '../student/kernels/registry.js';
import { maxAbsDiff } from './helpers.js';

// These tests check the backends' own kernels and ours in JS: the BLAS products are tested in blas.test.ts.
process.env['DISTILL_BLAS'] = 'off';

/** Run tfjs's original cpu UnsortedSegmentSum (kept aside when ours replaced it). */
async function referenceSegmentSum(
  x: Float32Array,
  xShape: number[],
  ids: Int32Array,
  idsShape: number[],
  numSegments: number,
): Promise<Float32Array> {
  await selectBackend('cpu');
  const backend = tf.backend();
  const xt = tf.tensor(x, xShape);
  const it = tf.tensor(ids, idsShape, 'int32');
  const info = tfjsKernel('cpu', 'UnsortedSegmentSum')!({
    inputs: { x: xt, segmentIds: it },
    backend,
    attrs: { numSegments },
  }) as tf.TensorInfo;
  const out = tf.engine().makeTensorFromTensorInfo(info);
  const values = out.dataSync() as Float32Array;
  tf.dispose([xt, it, out]);
  return Float32Array.from(values);
}

function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

describe('UnsortedSegmentSum', () => {
  const cases = [
    {
      name: '2-D rows, repeated and dropped ids',
      xShape: [7, 5],
      ids: [3, 0, 3, -1, 9, 2, 3],
      idsShape: [7],
      numSegments: 4,
    },
    { name: '3-D x', xShape: [6, 3, 4], ids: [1, 1, 0, 2, 5, 1], idsShape: [6], numSegments: 3 },
    {
      name: 'embedding-gradient shape',
      xShape: [76, 192],
      ids: Array.from({ length: 76 }, (_, i) => (i * 37) % 500),
      idsShape: [76],
      numSegments: 500,
    },
  ];
  for (const backend of ['wasm', 'cpu'] as const) {
    for (const c of cases) {
      it(`${backend}: ${c.name} equals tfjs's cpu kernel`, async () => {
        const x = random(
          c.xShape.reduce((a, b) => a * b, 1),
          c.xShape.length * 7 + c.numSegments,
        );
        const ids = Int32Array.from(c.ids);
        const expected = await referenceSegmentSum(x, c.xShape, ids, c.idsShape, c.numSegments);
        await selectBackend(backend);
        const got = tf.tidy(
          () =>
            tf
              .unsortedSegmentSum(tf.tensor(x, c.xShape), tf.tensor1d(ids, 'int32'), c.numSegments)
              .dataSync() as Float32Array,
        );
        expect(got.length).toBe(expected.length);
        expect(maxAbsDiff(got, expected)).toBeLessThan(1e-6);
        expect(expected.some((v) => v !== 0)).toBe(true);
      });
    }
  }

  it('gives the gradient of gather on wasm equal to cpu', async () => {
    const table = random(10 * 3, 5);
    const grad = async (backend: 'wasm' | 'cpu'): Promise<Float32Array> => {
      await selectBackend(backend);
      return tf.tidy(() => {
        const w = tf.tensor2d(table, [10, 3]);
        const g = tf.grad((t: tf.Tensor) => tf.sum(tf.square(tf.gather(t, tf.tensor1d([1, 4, 1, 9], 'int32')))))(w);
        return g.dataSync() as Float32Array;
      });
    };
    const onWasm = await grad('wasm');
    const onCpu = await grad('cpu');
    expect(maxAbsDiff(onWasm, onCpu)).toBeLessThan(1e-6);
    expect(onWasm[1 * 3]).toBeCloseTo(4 * table[1 * 3]!, 5); // row 1 gathered twice: 2·2·w
  });
});

/** Run one of tfjs's own cpu kernels (kept aside when ours replaced it) on tensors of the cpu backend. */
function originalKernel(kernelName: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}): tf.Tensor {
  const info = tfjsKernel('cpu', kernelName)!({ inputs, backend: tf.backend(), attrs }) as tf.TensorInfo;
  return tf.engine().makeTensorFromTensorInfo(info);
}

/**
 * Values with the special cases the ops treat apart: zeros (÷ 0), ±Infinity, NaN, and ordinary numbers of both signs.
 */
function awkward(n: number, seed: number): Float32Array {
  const v = random(n, seed).map((x) => x * 8);
  for (let i = seed % 5; i < n; i += 7) v[i] = [0, Infinity, -Infinity, NaN, -0][i % 5]!;
  return v;
}

describe(
  'cpu backend: broadcasting element-wise ops and ' + 'Transpose re-indexed (student/kernels/cpu-broadcast.ts)',
  () => {
    // Bit for bit: each output element is the same expression of the same two inputs as tfjs computes it; NaN in the
    // same places. Shapes: the model's ([B, T, H] with [B, T, 1]; scores [B, h, T, T] with a mask [B, 1, 1, T]), both
    // operands stretched, lower ranks, scalars, same shapes, an empty tensor.
    const pairs: [number[], number[]][] = [
      [
        [2, 3, 4],
        [2, 3, 1],
      ],
      [
        [2, 1, 1, 5],
        [2, 3, 5, 5],
      ],
      [
        [2, 1, 4],
        [1, 3, 1],
      ],
      [
        [5, 1],
        [1, 6],
      ],
      [[4], [2, 3, 4]],
      [
        [3, 1],
        [2, 3, 4],
      ],
      [[], [2, 3]],
      [[2, 3], []],
      [[], []],
      [
        [3, 4],
        [3, 4],
      ],
      [[1], [7]],
      [
        [0, 3],
        [1, 3],
      ],
    ];
    for (const kernelName of ['Add', 'Sub', 'Multiply', 'RealDiv', 'SquaredDifference', 'Maximum', 'Minimum']) {
      it(`${kernelName}: equals tfjs's kernel bit for bit on ${pairs.length} shape pairs`, async () => {
        await selectBackend('cpu');
        for (const [i, [aShape, bShape]] of pairs.entries()) {
          tf.tidy(() => {
            const a = tf.tensor(
              awkward(
                aShape.reduce((x, y) => x * y, 1),
                3 + i,
              ),
              aShape,
            );
            const b = tf.tensor(
              awkward(
                bShape.reduce((x, y) => x * y, 1),
                11 + i,
              ),
              bShape,
            );
            const ours = tf.engine().runKernel(kernelName, { a, b }) as tf.Tensor;
            const theirs = originalKernel(kernelName, { a, b });
            expect(ours.shape, `${aShape} ${bShape}`).toEqual(theirs.shape);
            expect(
              Buffer.from((ours.dataSync() as Float32Array).buffer).equals(
                Buffer.from((theirs.dataSync() as Float32Array).buffer),
              ),
              `${aShape} ${bShape}`,
            ).toBe(true);
          });
        }
      });
    }

    it(
      "Transpose: equals tfjs's kernel for every permutation of ranks 1–4, " +
        "float32 and int32, and the attention's shapes",
      async () => {
        await selectBackend('cpu');
        const permutations = (n: number): number[][] =>
          n === 0
            ? [[]]
            : permutations(n - 1).flatMap((p) =>
                Array.from({ length: n }, (_, k) => [...p.slice(0, k), n - 1, ...p.slice(k)]),
              );
        const shapes = [[5], [3, 4], [2, 1, 3], [2, 3, 4, 5], [1, 4, 1, 3], [4, 7, 2, 16]];
        let checked = 0;
        for (const shape of shapes) {
          for (const perm of permutations(shape.length)) {
            for (const dtype of ['float32', 'int32'] as const) {
              tf.tidy(() => {
                const n = shape.reduce((x, y) => x * y, 1);
                const x =
                  dtype === 'float32'
                    ? tf.tensor(random(n, n), shape)
                    : tf.tensor(
                        Int32Array.from({ length: n }, (_, k) => k * 7 - 50),
                        shape,
                        'int32',
                      );
                const ours = tf.engine().runKernel('Transpose', { x }, { perm }) as tf.Tensor;
                const theirs = originalKernel('Transpose', { x }, { perm });
                expect(ours.shape).toEqual(theirs.shape);
                expect(ours.dtype).toBe(dtype);
                expect(Array.from(ours.dataSync()), `${shape} ${perm}`).toEqual(Array.from(theirs.dataSync()));
              });
              checked++;
            }
          }
        }
        expect(checked).toBe(2 * (1 + 2 + 6 + 24 + 24 + 24));
      },
    );
  },
);

describe('BatchMatMul on wasm (each product of a batch on the 2-D path)', () => {
  it("equals the cpu backend, batched and with transposes (which fall back to tfjs's kernel)", async () => {
    const a = random(5 * 7 * 3, 21);
    const b = random(5 * 3 * 4, 22);
    const run = async (backend: 'wasm' | 'cpu'): Promise<Float32Array[]> => {
      await selectBackend(backend);
      return tf.tidy(() => {
        const x = tf.tensor3d(a, [5, 7, 3]);
        const y = tf.tensor3d(b, [5, 3, 4]);
        return [
          tf.matMul(x, y).dataSync() as Float32Array,
          tf.matMul(x, tf.transpose(y, [0, 2, 1]), false, true).dataSync() as Float32Array,
          tf
            .matMul(tf.reshape(x, [35, 3]), tf.reshape(tf.slice(y, [0, 0, 0], [1, 3, 4]), [3, 4]))
            .dataSync() as Float32Array,
        ].map((t) => Float32Array.from(t));
      });
    };
    const onWasm = await run('wasm');
    const onCpu = await run('cpu');
    onWasm.forEach((w, i) => expect(maxAbsDiff(w, onCpu[i]!), `case ${i}`).toBeLessThan(1e-5));
    expect(onWasm[0]!.length).toBe(5 * 7 * 4);
  });
});
