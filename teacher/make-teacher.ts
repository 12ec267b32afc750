// A BERT teacher folder written by this project: the ONNX graph of BertForMaskedLM (opset 17, inputs
// input_ids and attention_mask, output logits only, as a plain transformers export), config.json,
// model.safetensors with transformers' names, and a WordPiece vocabulary. `distill make-teacher` fills it
// with random weights (BERT's initialisation: normal(0, 0.02), LayerNorm 1 and 0), so that a BERT-base-shaped
// teacher exists for benchmarks without a download; bertToOnnx also writes a trained model's weights (the
// tests rebuild the embedded tiny teacher this way and compare it with its transformers export).
//
// The graph computes what transformers computes: embeddings word + position + token type 0 (no
// token_type_ids input: every token is of type 0), LayerNorm; per layer post-LN attention and GELU FFN; the
// MLM head dense → GELU → LayerNorm → the word embeddings transposed (tied) + bias.

import { makeDir, writeFileAtomic } from '../src/core/out.js';
import { join } from 'node:path';
import { OnnxGraphBuilder } from '../src/core/onnx-writer.js';
import { writeSafetensors } from '../src/core/safetensors.js';
import { Rng } from '../corpus/rng.js';
import { torchLayers } from '../src/core/bert-onnx.js';
import type { EncoderConfig } from '../src/core/model-dir.js';

/** The dimensions of a BERT (those of config.json that set the graph's shapes). */
export type BertShape = Pick<
  EncoderConfig,
  'vocabSize' | 'hiddenSize' | 'numLayers' | 'numHeads' | 'intermediateSize' | 'maxPositions'
>;

/** bert-base-cased's shape, and the embedded tiny teacher's. */
export const BERT_SHAPES: Record<'base' | 'tiny', BertShape> = {
  base: { vocabSize: 28996, hiddenSize: 768, numLayers: 12, numHeads: 12, intermediateSize: 3072, maxPositions: 512 },
  tiny: { vocabSize: 6144, hiddenSize: 192, numLayers: 4, numHeads: 4, intermediateSize: 768, maxPositions: 128 },
};

const LAYER_NORM_EPS = 1e-12;
const TYPE_VOCAB = 2;

/** Parameter names and shapes of BertForMaskedLM (transformers' names; linear weights [out, in]). */
export function bertParamShapes(s: BertShape): Map<string, number[]> {
  const H = s.hiddenSize;
  const m = new Map<string, number[]>();
  const lin = (name: string, out: number, inp: number): void => {
    m.set(`${name}.weight`, [out, inp]);
    m.set(`${name}.bias`, [out]);
  };
  const ln = (name: string): void => {
    m.set(`${name}.weight`, [H]);
    m.set(`${name}.bias`, [H]);
  };
  m.set('bert.embeddings.word_embeddings.weight', [s.vocabSize, H]);
  m.set('bert.embeddings.position_embeddings.weight', [s.maxPositions, H]);
  m.set('bert.embeddings.token_type_embeddings.weight', [TYPE_VOCAB, H]);
  ln('bert.embeddings.LayerNorm');
  for (let i = 0; i < s.numLayers; i++) {
    const p = `bert.encoder.layer.${i}`;
    lin(`${p}.attention.self.query`, H, H);
    lin(`${p}.attention.self.key`, H, H);
    lin(`${p}.attention.self.value`, H, H);
    lin(`${p}.attention.output.dense`, H, H);
    ln(`${p}.attention.output.LayerNorm`);
    lin(`${p}.intermediate.dense`, s.intermediateSize, H);
    lin(`${p}.output.dense`, H, s.intermediateSize);
    ln(`${p}.output.LayerNorm`);
  }
  lin('cls.predictions.transform.dense', H, H);
  ln('cls.predictions.transform.LayerNorm');
  m.set('cls.predictions.bias', [s.vocabSize]);
  return m;
}

/** BERT's initialisation: weights normal(0, 0.02), biases 0, LayerNorm weight 1 and bias 0. */
export function randomBertWeights(s: BertShape, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of bertParamShapes(s)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(n);
    if (name.includes('LayerNorm.weight')) values.fill(1);
    else if (!name.endsWith('bias')) {
      for (let i = 0; i < n; i += 2) {
        // Box–Muller: two normals from two uniforms.
        const u = Math.max(rng.next(), 1e-12);
        const r = Math.sqrt(-2 * Math.log(u)) * 0.02;
        const a = 2 * Math.PI * rng.next();
        values[i] = r * Math.cos(a);
        if (i + 1 < n) values[i + 1] = r * Math.sin(a);
      }
    }
    out.set(name, values);
  }
  return out;
}

/** The ONNX graph of BertForMaskedLM with these weights (logits only; hidden states come by graph surgery). */
export function bertToOnnx(s: BertShape, weights: Map<string, Float32Array>): Uint8Array {
  const g = new OnnxGraphBuilder();
  const H = s.hiddenSize;
  const { w, linear, layerNorm } = torchLayers(g, weights, 'make-teacher', LAYER_NORM_EPS);

  const ids = g.input('input_ids', 'int64', ['batch', 'sequence']);
  const mask = g.input('attention_mask', 'int64', ['batch', 'sequence']);
  const words = g.floatInitializer(
    'bert.embeddings.word_embeddings.weight',
    [s.vocabSize, H],
    w('bert.embeddings.word_embeddings.weight'),
  );
  const positionTable = g.floatInitializer(
    'bert.embeddings.position_embeddings.weight',
    [s.maxPositions, H],
    w('bert.embeddings.position_embeddings.weight'),
  );
  const typeZero = g.floatInitializer(
    'bert.embeddings.token_type_embeddings.0',
    [H],
    w('bert.embeddings.token_type_embeddings.weight').subarray(0, H),
  );
  const embedded = g.node('Add', [
    g.node('Add', [
      g.node('Gather', [words, ids], { axis: 0 }),
      g.node('Gather', [positionTable, g.positions(ids)], { axis: 0 }),
    ]),
    typeZero,
  ]); // [B, T, H]
  let x = layerNorm(embedded, 'bert.embeddings.LayerNorm');

  const bias = g.attentionBias(mask); // [B, 1, 1, T]
  for (let i = 0; i < s.numLayers; i++) {
    const p = `bert.encoder.layer.${i}`;
    const context = g.attention(
      linear(x, `${p}.attention.self.query`, H, H),
      linear(x, `${p}.attention.self.key`, H, H),
      linear(x, `${p}.attention.self.value`, H, H),
      bias,
      s.numHeads,
      H,
    ); // [B, T, H]
    const attended = layerNorm(
      g.node('Add', [linear(context, `${p}.attention.output.dense`, H, H), x]),
      `${p}.attention.output.LayerNorm`,
    );
    const inner = g.gelu(linear(attended, `${p}.intermediate.dense`, s.intermediateSize, H)); // [B, T, F]
    x = layerNorm(
      g.node('Add', [linear(inner, `${p}.output.dense`, H, s.intermediateSize), attended]),
      `${p}.output.LayerNorm`,
    );
  }
  const t = layerNorm(
    g.gelu(linear(x, 'cls.predictions.transform.dense', H, H)),
    'cls.predictions.transform.LayerNorm',
  );
  const decoder = g.node('Transpose', [words], { perm: [1, 0] }); // [H, V], tied
  g.node(
    'Add',
    [
      g.node('MatMul', [t, decoder]),
      g.floatInitializer('cls.predictions.bias', [s.vocabSize], w('cls.predictions.bias')),
    ],
    {},
    'logits',
  );
  g.output('logits', 'float', ['batch', 'sequence', s.vocabSize]);
  return g.encode('bert_for_masked_lm', 17, 'distill make-teacher');
}

/** transformers' config.json of this shape. */
export function bertConfigJson(s: BertShape): Record<string, unknown> {
  return {
    architectures: ['BertForMaskedLM'],
    model_type: 'bert',
    vocab_size: s.vocabSize,
    hidden_size: s.hiddenSize,
    num_hidden_layers: s.numLayers,
    num_attention_heads: s.numHeads,
    intermediate_size: s.intermediateSize,
    max_position_embeddings: s.maxPositions,
    type_vocab_size: TYPE_VOCAB,
    hidden_act: 'gelu',
    layer_norm_eps: LAYER_NORM_EPS,
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    initializer_range: 0.02,
    pad_token_id: 0,
    tie_word_embeddings: true,
  };
}

/**
 * A WordPiece vocabulary of `size` entries laid out as bert-base-cased's ([PAD] 0, [unused1..99], [UNK] 100,
 * [CLS] 101, [SEP] 102, [MASK] 103), then the characters of printable ASCII, then synthetic word pieces.
 */
export function syntheticVocab(size: number): string[] {
  if (size < 200) throw new Error(`make-teacher: a vocabulary needs at least 200 entries, got ${size}`);
  const vocab = ['[PAD]'];
  for (let i = 1; i < 100; i++) vocab.push(`[unused${i}]`);
  vocab.push('[UNK]', '[CLS]', '[SEP]', '[MASK]');
  for (let c = 33; c < 127; c++) vocab.push(String.fromCharCode(c));
  for (let c = 33; c < 127 && vocab.length < size; c++) vocab.push(`##${String.fromCharCode(c)}`);
  for (let i = 0; vocab.length < size; i++) vocab.push(`w${i.toString(36)}`);
  return vocab;
}

export interface MadeTeacher {
  dir: string;
  parameters: number;
  onnxBytes: number;
}

/** Write a random-weight BERT teacher's files into the folder `dir` (a new one: see writeOutputFolder). */
export function writeRandomTeacher(dir: string, s: BertShape, seed: number): MadeTeacher {
  makeDir(dir);
  const weights = randomBertWeights(s, seed);
  const onnx = bertToOnnx(s, weights);
  writeFileAtomic(join(dir, 'model.onnx'), onnx);
  const tensors = new Map([...bertParamShapes(s)].map(([name, shape]) => [name, { data: weights.get(name)!, shape }]));
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileAtomic(join(dir, 'config.json'), JSON.stringify(bertConfigJson(s), null, 2) + '\n');
  writeFileAtomic(join(dir, 'vocab.txt'), syntheticVocab(s.vocabSize).join('\n') + '\n');
  writeFileAtomic(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify(
      {
        do_lower_case: false,
        strip_accents: null,
        tokenize_chinese_chars: true,
        model_max_length: s.maxPositions,
        pad_token: '[PAD]',
        unk_token: '[UNK]',
        cls_token: '[CLS]',
        sep_token: '[SEP]',
        mask_token: '[MASK]',
        tokenizer_class: 'BertTokenizer',
      },
      null,
      2,
    ) + '\n',
  );
  writeFileAtomic(
    join(dir, 'README.md'),
    `A BERT teacher with random weights (BERT's initialisation, seed ${seed}), written by \`distill make-teacher\`:\n` +
      (`${s.numLayers} layers × ${s.hiddenSize}, ${s.numHeads} heads, FFN ${s.intermediateSize}, vocabulary ` +
        `${s.vocabSize} (synthetic), `) +
      `${s.maxPositions} positions. For benchmarks only: its predictions mean nothing.\n`,
  );
  const parameters = [...weights.values()].reduce((n, v) => n + v.length, 0);
  return { dir, parameters, onnxBytes: onnx.byteLength };
}
