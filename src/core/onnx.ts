// ONNX protobuf: reading a model to look at its graph, and exposing intermediate tensors as graph outputs.
//
// Surgery appends bytes instead of re-encoding: in protobuf, a message field that occurs twice is merged,
// and repeated fields inside it are concatenated. So `model bytes ++ field 7 (graph) { output: [...] }` is
// the same model with more graph outputs, and every field of the original file (including ones newer than
// the onnx-proto schema we decode with) stays byte-for-byte as it was.

import { readFileSync } from 'node:fs';
import onnxProto from 'onnx-proto';
import { FileFormatError } from './errors.js';

export const onnx = onnxProto.onnx;
export type ModelProto = InstanceType<typeof onnx.ModelProto>;

export interface OnnxFile {
  path: string;
  bytes: Uint8Array;
  model: ModelProto;
}

export function readOnnx(path: string): OnnxFile {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new FileFormatError(path, `cannot read: ${(e as Error).message}`);
  }
  return { path, bytes, model: decodeOnnx(path, bytes) };
}

export function decodeOnnx(path: string, bytes: Uint8Array): ModelProto {
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new FileFormatError(
      path,
      `not a valid ONNX protobuf (${(e as Error).message})`,
      'the file may be truncated or not an ONNX model: export it again (torch.onnx.export or optimum-cli export onnx)',
    );
  }
  if (!model.graph) throw new FileFormatError(path, 'the ONNX model has no graph');
  return model;
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

export interface ExtraOutput {
  name: string;
  /** onnx TensorProto.DataType, e.g. 1 = FLOAT. */
  elemType: number;
}

export interface GraphAddition {
  outputs?: ExtraOutput[];
  nodes?: onnxProto.onnx.INodeProto[];
  initializers?: onnxProto.onnx.ITensorProto[];
}

/**
 * The model bytes with nodes, initializers and outputs appended to its graph (see the note at the top of this file).
 */
export function appendToGraph(modelBytes: Uint8Array, add: GraphAddition): Uint8Array {
  const graphPart = onnx.GraphProto.encode({
    node: add.nodes ?? [],
    initializer: add.initializers ?? [],
    output: (add.outputs ?? []).map((o) => ({ name: o.name, type: { tensorType: { elemType: o.elemType } } })),
  }).finish();
  const GRAPH_FIELD_TAG = (7 << 3) | 2; // ModelProto.graph = 7, length-delimited
  const head = Uint8Array.from([GRAPH_FIELD_TAG, ...varint(graphPart.byteLength)]);
  const out = new Uint8Array(modelBytes.byteLength + head.byteLength + graphPart.byteLength);
  out.set(modelBytes, 0);
  out.set(head, modelBytes.byteLength);
  out.set(graphPart, modelBytes.byteLength + head.byteLength);
  return out;
}

/** A graph node, with the fields we read (protobuf leaves any of them null). */
export interface GraphNode {
  opType: string;
  inputs: string[];
  outputs: string[];
}

/** A graph input or output: its element type (TensorProto.DataType) and dimensions (number, or the symbol's name). */
export interface GraphValue {
  name: string;
  elemType: number | undefined;
  dims: (number | string)[] | undefined;
}

export interface GraphInfo {
  nodes: GraphNode[];
  /** Graph inputs that are fed at run time (initializers listed as inputs are left out). */
  inputs: GraphValue[];
  outputs: GraphValue[];
}

function longToNumber(v: number | { toNumber(): number } | null | undefined): number | undefined {
  if (v === null || v === undefined) return undefined;
  return typeof v === 'number' ? v : v.toNumber(); // int64 fields may decode as a Long
}

export function graphInfo(model: ModelProto): GraphInfo {
  const g = model.graph!;
  const initializers = new Set((g.initializer ?? []).map((t) => t.name ?? ''));
  const value = (v: InstanceType<typeof onnx.ValueInfoProto> | onnxProto.onnx.IValueInfoProto): GraphValue => {
    const tt = v.type?.tensorType;
    const dims = tt?.shape?.dim?.map((d) => (d.dimParam ? d.dimParam : (longToNumber(d.dimValue) ?? '?')));
    return { name: v.name ?? '', elemType: tt?.elemType ?? undefined, dims };
  };
  return {
    nodes: (g.node ?? []).map((n) => ({ opType: n.opType ?? '', inputs: n.input ?? [], outputs: n.output ?? [] })),
    inputs: (g.input ?? []).filter((v) => !initializers.has(v.name ?? '')).map(value),
    outputs: (g.output ?? []).map(value),
  };
}

/**
 * The outputs of the graph's layer normalisations, in execution order: fused `LayerNormalization`
 * (opset 17+), onnxruntime's fused `SkipLayerNormalization`, or the decomposed form older opsets export
 * (ReduceMean → Sub → Pow → ReduceMean → Add → Sqrt → Div → Mul(γ) → Add(β)). Names are never used:
 * exporters name nodes differently or not at all.
 */
export function layerNormOutputs(graph: GraphInfo): string[] {
  const nodes = graph.nodes;
  const producer = new Map<string, GraphNode>();
  const consumers = new Map<string, GraphNode[]>();
  for (const n of nodes) {
    for (const o of n.outputs) producer.set(o, n);
    for (const i of n.inputs) {
      const list = consumers.get(i);
      if (list) list.push(n);
      else consumers.set(i, [n]);
    }
  }
  const only = (tensor: string, op: string): GraphNode | undefined => {
    const c = consumers.get(tensor) ?? [];
    return c.length === 1 && c[0]!.opType === op ? c[0] : undefined;
  };
  const out: string[] = [];
  for (const n of nodes) {
    if (
      n.opType === 'LayerNormalization' ||
      n.opType === 'SkipLayerNormalization' ||
      n.opType === 'SkipSimplifiedLayerNormalization'
    ) {
      out.push(n.outputs[0]!);
      continue;
    }
    // Decomposed: Div(Sub(x, ReduceMean(x)), Sqrt(...)) is the normalised value; then ×γ, +β.
    if (n.opType === 'Div') {
      const sub = producer.get(n.inputs[0]!);
      if (!sub || sub.opType !== 'Sub') continue;
      const mean = producer.get(sub.inputs[1]!);
      if (!mean || mean.opType !== 'ReduceMean' || mean.inputs[0] !== sub.inputs[0]) continue;
      let last = n.outputs[0]!;
      const mul = only(last, 'Mul');
      if (mul) {
        last = mul.outputs[0]!;
        const add = only(last, 'Add');
        if (add) last = add.outputs[0]!;
      }
      out.push(last);
    }
  }
  return out;
}

/** The tensors of one self-attention inside a graph: its probabilities and its query/key/value projections. */
export interface AttentionTensors {
  /** The Softmax output [B, heads, T, T]. */
  probs: string;
  /** The projections before the split into heads (bias added): [B, T, H]. */
  query: string;
  key: string;
  value: string;
}

/** onnxruntime's fused attention operators: the probabilities never exist as a tensor in such a graph. */
const FUSED_ATTENTION_OPS = new Set([
  'Attention',
  'MultiHeadAttention',
  'PackedAttention',
  'PackedMultiHeadAttention',
  'GroupQueryAttention',
  'DecoderMaskedMultiHeadAttention',
]);

/**
 * The self-attentions of a BERT graph, in execution order, found by structure (names are never used): each
 * Softmax whose output is the left operand of a MatMul (probabilities · values). Its values are that MatMul's right
 * operand; its queries and keys the operands of the MatMul that made the scores (walking up from the Softmax
 * through the scale and the mask). Each operand is traced back through the split into heads (Reshape, Transpose)
 * and any scaling by a constant to the projection's own output. Throws when the graph fuses attention into one
 * operator (the returned error names it) or when a pattern does not hold.
 */
export function attentionTensors(graph: GraphInfo, path: string): AttentionTensors[] {
  const fused = graph.nodes.find((n) => FUSED_ATTENTION_OPS.has(n.opType));
  if (fused) {
    throw new FileFormatError(
      path,
      `self-attention is fused into onnxruntime's "${fused.opType}" operator, so its probabilities, queries, keys ` +
        `and values are not tensors of the graph`,
      'attention objectives need the plain export: torch.onnx.export, or optimum-cli export onnx without --optimize ' +
        '(no O2+ / fused-attention optimisation)',
    );
  }
  const producer = new Map<string, GraphNode>();
  const consumers = new Map<string, GraphNode[]>();
  for (const n of graph.nodes) {
    for (const o of n.outputs) producer.set(o, n);
    for (const i of n.inputs) {
      const list = consumers.get(i);
      if (list) list.push(n);
      else consumers.set(i, [n]);
    }
  }
  const isConstant = (t: string): boolean => !producer.has(t) || producer.get(t)!.opType === 'Constant';
  // Up through the head split and constant scaling to the projection's output.
  const projection = (tensor: string): string => {
    let t = tensor;
    for (let guard = 0; guard < 16; guard++) {
      const p = producer.get(t);
      if (!p) break;
      if (p.opType === 'Transpose' || p.opType === 'Reshape' || p.opType === 'Squeeze' || p.opType === 'Unsqueeze')
        t = p.inputs[0]!;
      else if ((p.opType === 'Mul' || p.opType === 'Div') && isConstant(p.inputs[1]!)) t = p.inputs[0]!;
      else if (p.opType === 'Mul' && isConstant(p.inputs[0]!)) t = p.inputs[1]!;
      else break;
    }
    return t;
  };
  // Up from the Softmax's input through the scale and the mask to the MatMul of queries and keys.
  const scoresMatMul = (tensor: string): GraphNode | undefined => {
    const queue = [tensor];
    for (let seen = 0; queue.length > 0 && seen < 16; seen++) {
      const p = producer.get(queue.shift()!);
      if (!p) continue;
      if (p.opType === 'MatMul' && !isConstant(p.inputs[0]!) && !isConstant(p.inputs[1]!)) return p;
      if (['Add', 'Mul', 'Div', 'Where', 'Cast', 'Sub'].includes(p.opType))
        queue.push(...p.inputs.filter((i) => !isConstant(i)));
    }
    return undefined;
  };
  const out: AttentionTensors[] = [];
  for (const n of graph.nodes) {
    if (n.opType !== 'Softmax') continue;
    const probs = n.outputs[0]!;
    const context = (consumers.get(probs) ?? []).find((c) => c.opType === 'MatMul' && c.inputs[0] === probs);
    if (!context) continue;
    const scores = scoresMatMul(n.inputs[0]!);
    if (!scores)
      throw new FileFormatError(
        path,
        `the Softmax producing "${probs}" is not fed by a product of queries and keys`,
        'export BertForMaskedLM with torch.onnx.export (the attention unfused)',
      );
    out.push({
      probs,
      query: projection(scores.inputs[0]!),
      key: projection(scores.inputs[1]!),
      value: projection(context.inputs[1]!),
    });
  }
  return out;
}
