// The student as an ONNX graph (opset 17): inputs input_ids, attention_mask (int64 [batch, sequence]);
// outputs logits [batch, sequence, V], hidden_states.0 … hidden_states.L [batch, sequence, H] and
// last_hidden_state (= hidden_states.L: what transformers.js's feature extraction reads), computing what
// student/model.ts computes (dropout off). `quantize`: the products' weights in int8 (dynamic quantization,
// src/core/onnx-writer.ts quantizedMatMul), the word embeddings one int8 table for the lookup and the projector. The
// exported folder is a model folder like a teacher's: fill-mask and the teacher code load it as any BERT export.

import type { StudentConfig } from './config.js';
import { OnnxGraphBuilder } from '../src/core/onnx-writer.js';
import { torchLayers, type HfWeights } from '../src/core/bert-onnx.js';
import { LAYER_NORM_EPS } from './config.js';
import { transpose2d } from '../src/core/math.js';

export function studentToOnnx(config: StudentConfig, weights: HfWeights, quantize = false): Uint8Array {
  const g = new OnnxGraphBuilder();
  const H = config.dim;
  const { w, linear, layerNorm } = torchLayers(g, weights, 'export', LAYER_NORM_EPS, quantize);

  const ids = g.input('input_ids', 'int64', ['batch', 'sequence']);
  const mask = g.input('attention_mask', 'int64', ['batch', 'sequence']);

  // Embeddings: word + learned position (positions 0..T-1), LayerNorm.
  const vocab = wordEmbeddings(g, w('distilbert.embeddings.word_embeddings.weight'), config.vocab_size, H, quantize);
  const words = vocab.lookup(ids); // [B, T, H]
  const positionTable = g.floatInitializer(
    'distilbert.embeddings.position_embeddings.weight',
    [config.max_position_embeddings, H],
    w('distilbert.embeddings.position_embeddings.weight'),
  );
  const posEmb = g.node('Gather', [positionTable, g.positions(ids)], { axis: 0 }); // [T, H]
  let x = layerNorm(g.node('Add', [words, posEmb]), 'distilbert.embeddings.LayerNorm');
  x = g.node('Identity', [x], {}, 'hidden_states.0');
  g.output('hidden_states.0', 'float', ['batch', 'sequence', H]);

  const maskBias = g.attentionBias(mask); // [B, 1, 1, T]
  for (let i = 0; i < config.n_layers; i++) {
    const p = `distilbert.transformer.layer.${i}`;
    const merged = g.attention(
      linear(x, `${p}.attention.q_lin`, H, H),
      linear(x, `${p}.attention.k_lin`, H, H),
      linear(x, `${p}.attention.v_lin`, H, H),
      maskBias,
      config.n_heads,
      H,
    ); // [B, T, H]
    const sa = layerNorm(g.node('Add', [linear(merged, `${p}.attention.out_lin`, H, H), x]), `${p}.sa_layer_norm`);
    const ffn = linear(
      g.gelu(linear(sa, `${p}.ffn.lin1`, config.hidden_dim, H)),
      `${p}.ffn.lin2`,
      H,
      config.hidden_dim,
    );
    x = layerNorm(g.node('Add', [ffn, sa]), `${p}.output_layer_norm`);
    x = g.node('Identity', [x], {}, `hidden_states.${i + 1}`);
    g.output(`hidden_states.${i + 1}`, 'float', ['batch', 'sequence', H]);
  }
  g.node('Identity', [x], {}, 'last_hidden_state');
  g.output('last_hidden_state', 'float', ['batch', 'sequence', H]);

  // MLM head with the projector tied to the word embeddings.
  const t = layerNorm(g.gelu(linear(x, 'vocab_transform', H, H)), 'vocab_layer_norm');
  const logits = vocab.project(t); // [B, T, V]
  g.node(
    'Add',
    [logits, g.floatInitializer('vocab_projector.bias', [config.vocab_size], w('vocab_projector.bias'))],
    {},
    'logits',
  );
  g.output('logits', 'float', ['batch', 'sequence', config.vocab_size]);
  return g.encode('distilbert_student', 17, 'distill');
}

/**
 * The word embeddings E [V, H]: the lookup of the ids' rows, and the tied projector t @ Eᵀ. Quantized, one int8
 * table (stored [H, V], a scale per token) serves both: its rows dequantized for the lookup, the projector as an
 * int8 product (onnxruntime folds the lookup's transpose at load).
 */
function wordEmbeddings(
  g: OnnxGraphBuilder,
  E: Float32Array,
  V: number,
  H: number,
  quantize: boolean,
): { lookup: (ids: string) => string; project: (t: string) => string } {
  if (!quantize) {
    const table = g.floatInitializer('distilbert.embeddings.word_embeddings.weight', [V, H], E);
    return {
      lookup: (ids) => g.node('Gather', [table, ids], { axis: 0 }),
      project: (t) => g.node('MatMul', [t, g.node('Transpose', [table], { perm: [1, 0] })]),
    };
  }
  const int8 = g.int8Weight('distilbert.embeddings.word_embeddings', transpose2d(E, V, H), H, V);
  return {
    lookup: (ids) => {
      const rows = g.node('Gather', [g.node('Transpose', [int8.values], { perm: [1, 0] }), ids], { axis: 0 }); // int8
      const scales = g.node('Gather', [int8.scale, ids], { axis: 0 }); // [B, T]
      const lastAxis = g.int64Initializer(g.name('axis_last'), [-1]);
      return g.node('Mul', [g.node('Cast', [rows], { to: 1 }), g.node('Unsqueeze', [scales, lastAxis])]);
    },
    project: (t) => g.quantizedMatMulOf(t, int8, 'vocab_projector'),
  };
}
