// Matrix products: the one BatchMatMul kernel of each CPU backend, chosen once at start (productKernels).
//
//   wasm + a BLAS   cblas_sgemm on the operands' wasm memory, transposed operands by flag (blas.ts); without a
//                   system BLAS the same call goes to onnxruntime's MLAS (ort-gemm.ts), which every install has
//   wasm alone      XNNPACK's 2-D path, product by product: tfjs-wasm's own kernel takes that fast path only
//                   for one untransposed product and is ~10× slower for transposed operands and batches
//                   (measured against the anchors). A transposed operand is first copied transposed (tfjs-wasm's
//                   Transpose kernel), then each product of the batch runs on views into the operands.
//   cpu + a BLAS    cblas_sgemm (or MLAS) on the operands' values
//   cpu alone       tfjs's own kernel
//
// So the student, the losses and their gradients call tf.matMul with transpose flags and nothing else. On
// wasm alone every operand view is registered with the wasm module under a fresh id for the call and
// disposed after it: XNNPACK's operator cache, keyed on that id, cannot outlive the call (see also
// rewroteInPlace in simd.ts). Each path is tested against tfjs's `cpu` kernel (test/blas.test.ts,
// test/kernels.test.ts) and by the multi-update PyTorch reference (test/updates-*.test.ts).

import * as tf from '@tensorflow/tfjs';
import { blasProduct, loadBlas, productGeometry, type Blas, type ProductGeometry } from './blas.js';
import { cpuBackend, wasmBackend, type KernelArgs, type WasmBackend } from './backend-internals.js';
import { isOurs, originalKernel, type OurKernel } from './registry.js';

/** Whether the named backend's matrix products run on the BLAS. */
export function productsOnBlas(backendName: string = tf.getBackend()): boolean {
  return (backendName === 'wasm' || backendName === 'cpu') && isOurs(backendName, 'BatchMatMul') && loadBlas() !== null;
}

/** tfjs's own BatchMatMul of `backendName`, which ours hand the cases they leave (other dtypes, shapes). */
function tfjsProduct(backendName: string): tf.KernelFunc {
  return (args) => originalKernel(backendName, 'BatchMatMul')!(args);
}

function blasKernel(backendName: 'wasm' | 'cpu', blas: Blas): (args: KernelArgs) => tf.TensorInfo {
  const fallback = tfjsProduct(backendName);
  return (args) => {
    const { inputs, backend, attrs } = args;
    const a = inputs['a']!;
    const b = inputs['b']!;
    const geometry =
      a.dtype === 'float32' && b.dtype === 'float32'
        ? productGeometry(a.shape, b.shape, Boolean(attrs?.['transposeA']), Boolean(attrs?.['transposeB']))
        : null;
    if (!geometry) return fallback(args) as tf.TensorInfo;
    if (backendName === 'wasm') {
      const wasm = wasmBackend(backend);
      const out = wasm.makeOutput(geometry.outShape, 'float32');
      // Views after makeOutput: allocating may grow the wasm heap and detach earlier views.
      blasProduct(
        blas,
        geometry,
        wasm.typedArrayFromHeap(a) as Float32Array,
        wasm.typedArrayFromHeap(b) as Float32Array,
        wasm.typedArrayFromHeap(out) as Float32Array,
      );
      return out;
    }
    const cpu = cpuBackend(backend);
    const out = new Float32Array(geometry.outShape.reduce((x, y) => x * y, 1));
    blasProduct(blas, geometry, cpu.readSync(a.dataId) as Float32Array, cpu.readSync(b.dataId) as Float32Array, out);
    return cpu.makeTensorInfo(geometry.outShape, 'float32', out);
  };
}

let xnnBatchMatMul: ((...args: unknown[]) => void) | undefined;

/** `x` with its last two axes swapped, as a new wasm tensor (tfjs-wasm's Transpose kernel). */
function transposedCopy(x: tf.TensorInfo, backend: WasmBackend): tf.TensorInfo {
  const r = x.shape.length;
  const perm = [...Array.from({ length: r - 2 }, (_, i) => i), r - 1, r - 2];
  const transpose = tf.getKernel('Transpose', 'wasm').kernelFunc;
  return transpose({ inputs: { x }, backend, attrs: { perm } }) as tf.TensorInfo;
}

function wasmXnnKernel(): (args: KernelArgs) => tf.TensorInfo {
  const fallback = tfjsProduct('wasm');
  return (args) => {
    const { inputs, attrs } = args;
    const backend = wasmBackend(args.backend);
    const a = inputs['a']!;
    const b = inputs['b']!;
    const ta = Boolean(attrs?.['transposeA']);
    const tb = Boolean(attrs?.['transposeB']);
    const geometry: ProductGeometry | null =
      a.dtype === 'float32' && b.dtype === 'float32' ? productGeometry(a.shape, b.shape, ta, tb) : null;
    if (!geometry) return fallback(args) as tf.TensorInfo;
    const { M, K, N } = geometry;
    const temporaries: tf.TensorInfo[] = [];
    const plainA = ta ? transposedCopy(a, backend) : a; // [..., M, K]
    const plainB = tb ? transposedCopy(b, backend) : b; // [..., K, N]
    if (ta) temporaries.push(plainA);
    if (tb) temporaries.push(plainB);
    const out = backend.makeOutput(geometry.outShape, 'float32');
    if (M > 0 && N > 0) {
      if (K === 0) (backend.typedArrayFromHeap(out) as Float32Array).fill(0);
      else {
        xnnBatchMatMul ??= backend.wasm.cwrap('BatchMatMul', null, [
          'number',
          'array',
          'number',
          'number',
          'array',
          'number',
          'number',
          'number',
          'number',
        ]);
        const aOffset = backend.dataIdMap.get(plainA.dataId).memoryOffset;
        const bOffset = backend.dataIdMap.get(plainB.dataId).memoryOffset;
        const outOffset = backend.dataIdMap.get(out.dataId).memoryOffset;
        const aShape = new Uint8Array(new Int32Array([1, M, K]).buffer);
        const bShape = new Uint8Array(new Int32Array([1, K, N]).buffer);
        const registry = backend.wasm.tfjs;
        for (let g = 0; g < geometry.batch; g++) {
          const ids = [backend.dataIdNextNumber++, backend.dataIdNextNumber++, backend.dataIdNextNumber++];
          registry.registerTensor(ids[0]!, M * K, aOffset + (geometry.batchA === 1 ? 0 : g * M * K * 4));
          registry.registerTensor(ids[1]!, K * N, bOffset + (geometry.batchB === 1 ? 0 : g * K * N * 4));
          registry.registerTensor(ids[2]!, M * N, outOffset + g * M * N * 4);
          xnnBatchMatMul(ids[0], aShape, 3, ids[1], bShape, 3, false, false, ids[2]);
          for (const id of ids) registry.disposeData(id);
        }
      }
    }
    for (const t of temporaries) backend.disposeData(t.dataId);
    return out;
  };
}

/**
 * The BatchMatMul kernel of `backendName`: on the BLAS when one loads, else on `wasm` the product-by-product
 * XNNPACK kernel; none on cpu without a BLAS (tfjs's own runs). It replaces tfjs's, kept as the fallback.
 */
export function productKernels(backendName: 'wasm' | 'cpu'): OurKernel[] {
  const blas = loadBlas();
  const kernelFunc = blas ? blasKernel(backendName, blas) : backendName === 'wasm' ? wasmXnnKernel() : undefined;
  return kernelFunc
    ? [{ kernelName: 'BatchMatMul', backendName, kernelFunc: kernelFunc as unknown as tf.KernelFunc }]
    : [];
}
