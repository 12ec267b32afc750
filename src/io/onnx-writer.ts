// A small builder for ONNX graphs, encoded with onnx-proto (protobufjs): float and int64 initializers,
// nodes with attributes, typed inputs and outputs with symbolic dimensions.

import onnxProto from 'onnx-proto';

const onnx = onnxProto.onnx;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

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

  scalarFloat(value: number): string {
    const name = this.name('const');
    this.initializers.push({ name, dataType: FLOAT, dims: [], rawData: new Uint8Array(Float32Array.from([value]).buffer) });
    return name;
  }

  input(name: string, elemType: 'float' | 'int64', dims: (number | string)[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: 'float' | 'int64', dims: (number | string)[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** Add a node; returns its (first) output name. */
  node(opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, output?: string): string {
    const out = output ?? this.name(opType.toLowerCase());
    this.nodes.push({
      opType, input: inputs, output: [out], name: this.name(`node_${opType}`),
      attribute: Object.entries(attributes).map(([name, v]) => attribute(name, v)),
    });
    return out;
  }

  encode(graphName: string, opset: number, producer: string): Uint8Array {
    return onnx.ModelProto.encode({
      irVersion: 8,
      producerName: producer,
      opsetImport: [{ domain: '', version: opset }],
      graph: { name: graphName, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs },
    }).finish();
  }
}

function valueInfo(name: string, elemType: 'float' | 'int64', dims: (number | string)[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: elemType === 'float' ? FLOAT : INT64, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
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
