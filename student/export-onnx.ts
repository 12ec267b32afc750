// The student as an ONNX graph (opset 17): inputs input_ids, attention_mask (int64 [batch, sequence]);
// outputs logits [batch, sequence, V] and hidden_states.0 … hidden_states.L [batch, sequence, H], computing
// what student/model.ts computes (dropout off). The exported folder (model.onnx + config.json + tokenizer) is a
// model folder like a teacher's: fill-mask and the teacher code load it as they load any BERT export.

import type { StudentConfig } from './config.js';
import { OnnxGraphBuilder } from '../src/io/onnx-writer.js';
import { LAYER_NORM_EPS } from './config.js';
import { transpose2d } from './model.js';

/** Weights in transformers' layout (linear weights [out, in]). */
export type HfWeights = Map<string, Float32Array>;

export function studentToOnnx(config: StudentConfig, weights: HfWeights): Uint8Array {
  const g = new OnnxGraphBuilder();
  const H = config.dim;
  const nh = config.n_heads;
  const dh = H / nh;
  const w = (name: string): Float32Array => {
    const v = weights.get(name);
    if (!v) throw new Error(`export: no weights for ${name}`);
    return v;
  };
  const init = (name: string, dims: number[]): string => g.floatInitializer(name, dims, w(name));
  /** x @ Wᵀ + b with W [out, in] stored transposed as [in, out]. */
  const linear = (x: string, name: string, out: number, inp: number): string => {
    const weight = g.floatInitializer(`${name}.weight`, [inp, out], transpose2d(w(`${name}.weight`), out, inp));
    return g.node('Add', [g.node('MatMul', [x, weight]), init(`${name}.bias`, [out])]);
  };
  const layerNorm = (x: string, name: string): string =>
    g.node('LayerNormalization', [x, init(`${name}.weight`, [H]), init(`${name}.bias`, [H])], { axis: -1, epsilon: { float: LAYER_NORM_EPS } });
  const gelu = (x: string): string => {
    const erf = g.node('Erf', [g.node('Mul', [x, g.scalarFloat(Math.SQRT1_2)])]);
    return g.node('Mul', [g.node('Mul', [x, g.scalarFloat(0.5)]), g.node('Add', [erf, g.scalarFloat(1)])]);
  };

  const ids = g.input('input_ids', 'int64', ['batch', 'sequence']);
  const mask = g.input('attention_mask', 'int64', ['batch', 'sequence']);

  // Embeddings: word + learned position (positions 0..T-1), LayerNorm.
  const embeddings = init('distilbert.embeddings.word_embeddings.weight', [config.vocab_size, H]);
  const words = g.node('Gather', [embeddings, ids], { axis: 0 }); // [B, T, H]
  const seqLen = g.node('Gather', [g.node('Shape', [ids]), g.int64Initializer('index_1', [1])], { axis: 0 }); // [1]
  const zero = g.int64Initializer('zero', [0]);
  const one = g.int64Initializer('one', [1]);
  const positions = g.node('Range', [g.node('Squeeze', [zero, zero]), g.node('Squeeze', [seqLen, zero]), g.node('Squeeze', [one, zero])]); // [T]
  const posEmb = g.node('Gather', [init('distilbert.embeddings.position_embeddings.weight', [config.max_position_embeddings, H]), positions], { axis: 0 }); // [T, H]
  let x = layerNorm(g.node('Add', [words, posEmb]), 'distilbert.embeddings.LayerNorm');
  x = g.node('Identity', [x], {}, 'hidden_states.0');
  g.output('hidden_states.0', 'float', ['batch', 'sequence', H]);

  // Additive attention mask [B, 1, 1, T]: 0 for real keys, -1e9 for padding.
  const maskF = g.node('Cast', [mask], { to: 1 });
  const maskBias = g.node('Unsqueeze', [g.node('Mul', [g.node('Sub', [g.scalarFloat(1), maskF]), g.scalarFloat(-1e9)]), g.int64Initializer('axes_1_2', [1, 2])]);
  const headsShape = g.int64Initializer('heads_shape', [0, 0, nh, dh]);
  const mergedShape = g.int64Initializer('merged_shape', [0, 0, H]);

  for (let i = 0; i < config.n_layers; i++) {
    const p = `distilbert.transformer.layer.${i}`;
    const q = g.node('Mul', [linear(x, `${p}.attention.q_lin`, H, H), g.scalarFloat(1 / Math.sqrt(dh))]);
    const qh = g.node('Transpose', [g.node('Reshape', [q, headsShape])], { perm: [0, 2, 1, 3] }); // [B, nh, T, dh]
    const kh = g.node('Transpose', [g.node('Reshape', [linear(x, `${p}.attention.k_lin`, H, H), headsShape])], { perm: [0, 2, 3, 1] }); // [B, nh, dh, T]
    const vh = g.node('Transpose', [g.node('Reshape', [linear(x, `${p}.attention.v_lin`, H, H), headsShape])], { perm: [0, 2, 1, 3] }); // [B, nh, T, dh]
    const scores = g.node('Add', [g.node('MatMul', [qh, kh]), maskBias]); // [B, nh, T, T]
    const context = g.node('MatMul', [g.node('Softmax', [scores], { axis: -1 }), vh]); // [B, nh, T, dh]
    const merged = g.node('Reshape', [g.node('Transpose', [context], { perm: [0, 2, 1, 3] }), mergedShape]); // [B, T, H]
    const sa = layerNorm(g.node('Add', [linear(merged, `${p}.attention.out_lin`, H, H), x]), `${p}.sa_layer_norm`);
    const ffn = linear(gelu(linear(sa, `${p}.ffn.lin1`, config.hidden_dim, H)), `${p}.ffn.lin2`, H, config.hidden_dim);
    x = layerNorm(g.node('Add', [ffn, sa]), `${p}.output_layer_norm`);
    x = g.node('Identity', [x], {}, `hidden_states.${i + 1}`);
    g.output(`hidden_states.${i + 1}`, 'float', ['batch', 'sequence', H]);
  }

  // MLM head with the projector tied to the word embeddings.
  const t = g.node('LayerNormalization', [gelu(linear(x, 'vocab_transform', H, H)), init('vocab_layer_norm.weight', [H]), init('vocab_layer_norm.bias', [H])],
    { axis: -1, epsilon: { float: LAYER_NORM_EPS } });
  const projector = g.node('Transpose', [embeddings], { perm: [1, 0] }); // [H, V]
  g.node('Add', [g.node('MatMul', [t, projector]), init('vocab_projector.bias', [config.vocab_size])], {}, 'logits');
  g.output('logits', 'float', ['batch', 'sequence', config.vocab_size]);
  return g.encode('distilbert_student', 17, 'distill');
}
