// The shape of a WGSL program as tfjs's webgpu backend runs it (runWebGPUProgram): the backend declares the
// bindings, the uniforms (shapes, `size`, and the program's own `uniforms`), a getter per input and the entry
// point, which calls the program's `main(index)` once per invocation. One invocation per output element
// unless `invocations` says otherwise (e.g. one per row).

import type * as tf from '@tensorflow/tfjs';

export abstract class WgslProgram {
  readonly dispatchLayout: { x: number[] };
  readonly dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number];
  readonly size = true;

  constructor(
    readonly variableNames: string[],
    readonly outputShape: number[],
    readonly shaderKey: string,
    workgroup = 128,
    invocations = outputShape.reduce((a, b) => a * b, 1),
  ) {
    this.workgroupSize = [workgroup, 1, 1];
    this.dispatchLayout = { x: outputShape.map((_, i) => i) };
    this.dispatch = [Math.ceil(invocations / workgroup), 1, 1];
  }

  abstract getUserCode(): string;
}

/** The part of tfjs's WebGPUBackend the kernels call. */
export interface WebGpuBackendLike {
  runWebGPUProgram(
    program: WgslProgram,
    inputs: tf.TensorInfo[],
    outputDtype: tf.DataType,
    uniforms?: { type: 'int32' | 'float32'; data: number[] }[],
  ): tf.TensorInfo;
}
