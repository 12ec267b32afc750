// The student as an ONNX graph (opset 17): inputs input_ids, attention_mask (int64 [batch, sequence]);
// outputs logits [batch, sequence, V] and hidden_states.0 … hidden_states.L [batch, sequence, H], computing
// what student/model.ts computes (dropout off). The exported folder (model.onnx + config.json + tokenizer) is a
// model folder like a teacher's: fill-mask and the teacher code load it as they load any BERT export.

import type { StudentConfig } from './config.js';
import { OnnxGraphBuilder } from '../src/core/onnx-writer.js';
import { torchLayers, type HfWeights } from '../src/core/bert-onnx.js';
import { LAYER_NORM_EPS } from './config.js';

export function studentToOnnx(config: StudentConfig, weights: HfWeights): Uint8Array {
  const g = new OnnxGraphBuilder();
  const H = config.dim;
  const { w, linear, layerNorm } = torchLayers(g, weights, 'export', LAYER_NORM_EPS);

  const ids = g.input('input_ids', 'int64', ['batch', 'sequence']);
  const mask = g.input('attention_mask', 'int64', ['batch', 'sequence']);

  // Embeddings: word + learned position (positions 0..T-1), LayerNorm.
  const embeddings = g.floatInitializer(
    'distilbert.embeddings.word_embeddings.weight',
    [config.vocab_size, H],
    w('distilbert.embeddings.word_embeddings.weight'),
  );
  const words = g.node('Gather', [embeddings, ids], { axis: 0 }); // [B, T, H]
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

  // MLM head with the projector tied to the word embeddings.
  const t = layerNorm(g.gelu(linear(x, 'vocab_transform', H, H)), 'vocab_layer_norm');
  const projector = g.node('Transpose', [embeddings], { perm: [1, 0] }); // [H, V]
  g.node(
    'Add',
    [
      g.node('MatMul', [t, projector]),
      g.floatInitializer('vocab_projector.bias', [config.vocab_size], w('vocab_projector.bias')),
    ],
    {},
    'logits',
  );
  g.output('logits', 'float', ['batch', 'sequence', config.vocab_size]);
  return g.encode('distilbert_student', 17, 'distill');
}
