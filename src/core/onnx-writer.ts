// A small builder for ONNX graphs, encoded with onnx-proto (protobufjs): float and int64 initializers,
// nodes with attributes, typed inputs and outputs with symbolic dimensions.

import onnxProto from 'onnx-proto';

const onnx = onnxProto.onnx;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const INT8 = onnx.TensorProto.DataType.INT8;

/** The initializers of an int8 weight [in, out]: values, zero points (0) and scales per output column. */
export interface Int8Weight {
  values: string;
  zero: string;
  scale: string;
}

type AttributeValue = number | number[] | string | { ints: number[] } | { float: number };

export class OnnxGraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private counter = 0;

  /** A fresh tensor name with a readable prefix. */
  name(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  floatInitializer(name: string, dims: number[], values: Float32Array): string {
    const data = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    this.initializers.push({ name, dataType: FLOAT, dims, rawData: data });
    return name;
  }

  int64Initializer(name: string, values: number[]): string {
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dataType: INT64, dims: [values.length], rawData: new Uint8Array(data.buffer) });
    return name;
  }

  int8Initializer(name: string, dims: number[], values: Int8Array): string {
    const data = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    this.initializers.push({ name, dataType: INT8, dims, rawData: data });
    return name;
  }

  scalarFloat(value: number): string {
    const name = this.name('const');
    this.initializers.push({
      name,
      dataType: FLOAT,
      dims: [],
      rawData: new Uint8Array(Float32Array.from([value]).buffer),
    });
    return name;
  }

  input(name: string, elemType: 'float' | 'int64', dims: (number | string)[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: 'float' | 'int64', dims: (number | string)[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** Add a node (of the standard domain, or e.g. onnxruntime's 'com.microsoft'); returns its (first) output name. */
  node(
    opType: string,
    inputs: string[],
    attributes: Record<string, AttributeValue> = {},
    output?: string,
    domain?: string,
  ): string {
    const out = output ?? this.name(opType.toLowerCase());
    this.nodes.push({
      opType,
      input: inputs,
      output: [out],
      name: this.name(`node_${opType}`),
      ...(domain ? { domain } : {}),
      attribute: Object.entries(attributes).map(([name, v]) => attribute(name, v)),
    });
    return out;
  }

  /** A node with several outputs (named `outputs`). */
  nodeWithOutputs(opType: string, inputs: string[], outputs: string[]): string[] {
    this.nodes.push({ opType, input: inputs, output: outputs, name: this.name(`node_${opType}`), attribute: [] });
    return outputs;
  }

  /**
   * x @ W (+ b) with W [in, out] quantized as onnxruntime's quantize_dynamic writes it: int8 per output column,
   * symmetric (zero point 0, scale max|W[:, j]| / 127); x quantized to uint8 at run time (DynamicQuantizeLinear);
   * MatMulInteger in int32, then × (x's scale · the column's scale). onnxruntime fuses these at load.
   */
  quantizedMatMul(x: string, name: string, weightInOut: Float32Array, inp: number, out: number): string {
    return this.quantizedMatMulOf(x, this.int8Weight(name, weightInOut, inp, out), name);
  }

  /** W [in, out] as int8 per output column: the initializers NAME.weight_quantized, weight_zero_point, weight_scale. */
  int8Weight(name: string, weightInOut: Float32Array, inp: number, out: number): Int8Weight {
    const { values, scales } = quantizePerColumn(weightInOut, inp, out);
    return {
      values: this.int8Initializer(`${name}.weight_quantized`, [inp, out], values),
      zero: this.int8Initializer(`${name}.weight_zero_point`, [out], new Int8Array(out)),
      scale: this.floatInitializer(`${name}.weight_scale`, [out], scales),
    };
  }

  /** x @ W for W already quantized (int8Weight). */
  quantizedMatMulOf(x: string, w: Int8Weight, name: string): string {
    const [xq, xScale, xZero] = this.nodeWithOutputs(
      'DynamicQuantizeLinear',
      [x],
      ['', '', ''].map(() => this.name(`${name}.x`)),
    );
    const product = this.node('MatMulInteger', [xq!, w.values, xZero!, w.zero]); // int32 [.., out]
    const scale = this.node('Mul', [xScale!, w.scale]); // [out]
    return this.node('Mul', [this.node('Cast', [product], { to: FLOAT }), scale]);
  }

  /** x @ W + b, for W given as [in, out] (PyTorch's [out, in] transposed) and b [out]; int8 weights with `quantize`. */
  linear(
    x: string,
    name: string,
    weightInOut: Float32Array,
    bias: Float32Array,
    inp: number,
    out: number,
    quantize = false,
  ): string {
    const product = quantize
      ? this.quantizedMatMul(x, name, weightInOut, inp, out)
      : this.node('MatMul', [x, this.floatInitializer(`${name}.weight`, [inp, out], weightInOut)]);
    return this.node('Add', [product, this.floatInitializer(`${name}.bias`, [out], bias)]);
  }

  /** LayerNormalization over the last axis (opset 17). */
  layerNorm(x: string, name: string, gamma: Float32Array, beta: Float32Array, eps: number): string {
    const n = gamma.length;
    return this.node(
      'LayerNormalization',
      [x, this.floatInitializer(`${name}.weight`, [n], gamma), this.floatInitializer(`${name}.bias`, [n], beta)],
      { axis: -1, epsilon: { float: eps } },
    );
  }

  /** GELU, erf form: x · ½ (1 + erf(x/√2)). */
  gelu(x: string): string {
    const erf = this.node('Erf', [this.node('Mul', [x, this.scalarFloat(Math.SQRT1_2)])]);
    return this.node('Mul', [
      this.node('Mul', [x, this.scalarFloat(0.5)]),
      this.node('Add', [erf, this.scalarFloat(1)]),
    ]);
  }

  /** 0, 1, …, T−1 for ids [B, T] (int64 [T]). */
  positions(ids: string): string {
    const seqLen = this.node('Gather', [this.node('Shape', [ids]), this.int64Initializer(this.name('index_1'), [1])], {
      axis: 0,
    }); // [1]
    const zero = this.int64Initializer(this.name('zero'), [0]);
    const one = this.int64Initializer(this.name('one'), [1]);
    return this.node('Range', [
      this.node('Squeeze', [zero, zero]),
      this.node('Squeeze', [seqLen, zero]),
      this.node('Squeeze', [one, zero]),
    ]);
  }

  /** The additive attention mask [B, 1, 1, T] from mask [B, T] (int64): 0 for real keys, −1e9 for padding. */
  attentionBias(mask: string): string {
    const maskF = this.node('Cast', [mask], { to: 1 });
    return this.node('Unsqueeze', [
      this.node('Mul', [this.node('Sub', [this.scalarFloat(1), maskF]), this.scalarFloat(-1e9)]),
      this.int64Initializer(this.name('axes_1_2'), [1, 2]),
    ]);
  }

  /**
   * Multi-head self-attention core: softmax(q kᵀ/√dh + bias) v for q, k, v [B, T, H] → [B, T, H].
   */
  attention(q: string, k: string, v: string, bias: string, heads: number, hidden: number): string {
    const dh = hidden / heads;
    const headsShape = this.int64Initializer(this.name('heads_shape'), [0, 0, heads, dh]);
    const mergedShape = this.int64Initializer(this.name('merged_shape'), [0, 0, hidden]);
    const qh = this.node(
      'Transpose',
      [this.node('Reshape', [this.node('Mul', [q, this.scalarFloat(1 / Math.sqrt(dh))]), headsShape])],
      { perm: [0, 2, 1, 3] },
    ); // [B, nh, T, dh]
    // [B, nh, dh, T]
    const kh = this.node('Transpose', [this.node('Reshape', [k, headsShape])], { perm: [0, 2, 3, 1] });
    // [B, nh, T, dh]
    const vh = this.node('Transpose', [this.node('Reshape', [v, headsShape])], { perm: [0, 2, 1, 3] });
    const scores = this.node('Add', [this.node('MatMul', [qh, kh]), bias]); // [B, nh, T, T]
    const context = this.node('MatMul', [this.node('Softmax', [scores], { axis: -1 }), vh]); // [B, nh, T, dh]
    return this.node('Reshape', [this.node('Transpose', [context], { perm: [0, 2, 1, 3] }), mergedShape]); // [B, T, H]
  }

  /** The model's bytes; `domains` adds opset imports for other domains (e.g. { 'com.microsoft': 1 }). */
  encode(graphName: string, opset: number, producer: string, domains: Record<string, number> = {}): Uint8Array {
    return onnx.ModelProto.encode({
      irVersion: 8,
      producerName: producer,
      opsetImport: [
        { domain: '', version: opset },
        ...Object.entries(domains).map(([domain, version]) => ({ domain, version })),
      ],
      graph: {
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    }).finish();
  }
}

/**
 * Symmetric int8 per column of W [in, out]: scale_j = max_i |W[i, j]| / 127 (1 for a column of zeros), q = W / scale
 * rounded half to even (numpy's round, as quantize_dynamic), within [−127, 127].
 */
export function quantizePerColumn(
  w: Float32Array,
  inp: number,
  out: number,
): { values: Int8Array; scales: Float32Array } {
  const scales = new Float32Array(out);
  for (let i = 0; i < inp; i++)
    for (let j = 0; j < out; j++) scales[j] = Math.max(scales[j]!, Math.abs(w[i * out + j]!));
  for (let j = 0; j < out; j++) scales[j] = scales[j]! > 0 ? scales[j]! / 127 : 1;
  const values = new Int8Array(inp * out);
  for (let i = 0; i < inp; i++)
    for (let j = 0; j < out; j++) {
      const x = w[i * out + j]! / scales[j]!;
      const r = Math.round(x);
      const even = r - x === 0.5 && r % 2 !== 0 ? r - 1 : r; // Math.round takes x.5 up: half to even instead
      values[i * out + j] = Math.max(-127, Math.min(127, even));
    }
  return { values, scales };
}

function valueInfo(
  name: string,
  elemType: 'float' | 'int64',
  dims: (number | string)[],
): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: elemType === 'float' ? FLOAT : INT64,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, v: AttributeValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if (typeof v === 'object' && 'ints' in v) return { name, type: T.INTS, ints: v.ints };
  if (typeof v === 'object' && 'float' in v) return { name, type: T.FLOAT, f: v.float };
  return { name, type: T.INT, i: v };
}
