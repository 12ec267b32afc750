// The DistilBERT student in tfjs ops (transformers' DistilBertForMaskedLM, computed the same way):
//   embeddings: word + learned position (no token types) → LayerNorm(1e-12) → dropout
//   each layer: x → MHSA → LayerNorm(x + ·) → FFN (lin1, GELU, lin2) → LayerNorm(· + ·)
//   MLM head:   vocab_transform → GELU → vocab_layer_norm → vocab_projector (tied to the word embeddings) + bias
//
// Parameters are tf.Variables keyed by their Hugging Face names. Linear weights are held as [in, out]
// (PyTorch stores [out, in]) so that the forward product is a plain `x @ W`. The model calls tf ops only:
// products take transpose flags, and whatever runs them fast on each backend is behind tfjs's kernel names
// (student/kernels/, chosen once when the backend starts).

import * as tf from '@tensorflow/tfjs';
import { MismatchError, ShapeError } from '../src/core/errors.js';
import { LAYER_NORM_EPS, type StudentConfig } from './config.js';
import { transpose2d } from '../src/core/math.js';
import { biasGelu } from './ops/gelu.js';
import { layerNorm as layerNormKernel } from './ops/layer-norm.js';
import { maskedSoftmax } from './ops/attention-softmax.js';
import { dropout as dropoutKernel } from './ops/dropout.js';

export interface ParamSpec {
  /** Hugging Face parameter name. */
  name: string;
  /** Shape as transformers stores it ([out, in] for linear weights). */
  hfShape: number[];
  /** A linear weight: held transposed ([in, out]) in the variable. */
  linear: boolean;
  /**
   * Excluded from weight decay, by the reference's rule (train.py: no_decay = ["bias", "LayerNorm.weight"]
   * matched as substrings of the name): every bias and the embedding LayerNorm weight. The other LayerNorm
   * weights of DistilBERT (sa_layer_norm, output_layer_norm, vocab_layer_norm) do not match and are decayed.
   */
  noDecay: boolean;
  /** Training only (the hidden-state projection): saved beside the model, never exported. */
  aux?: boolean;
}

/** The learned projection of student hidden states to the teacher's width (StudentConfig.projection_dim). */
export const PROJECTION = 'distill.hidden_projection';

export function studentParamSpecs(c: StudentConfig): ParamSpec[] {
  const H = c.dim;
  const specs: ParamSpec[] = [];
  const push = (name: string, hfShape: number[], linear: boolean): void => {
    specs.push({ name, hfShape, linear, noDecay: name.includes('bias') || name.includes('LayerNorm.weight') });
  };
  const lin = (name: string, out: number, inp: number): void => {
    push(`${name}.weight`, [out, inp], true);
    push(`${name}.bias`, [out], false);
  };
  const ln = (name: string): void => {
    push(`${name}.weight`, [H], false);
    push(`${name}.bias`, [H], false);
  };
  push('distilbert.embeddings.word_embeddings.weight', [c.vocab_size, H], false);
  push('distilbert.embeddings.position_embeddings.weight', [c.max_position_embeddings, H], false);
  ln('distilbert.embeddings.LayerNorm');
  for (let i = 0; i < c.n_layers; i++) {
    const p = `distilbert.transformer.layer.${i}`;
    lin(`${p}.attention.q_lin`, H, H);
    lin(`${p}.attention.k_lin`, H, H);
    lin(`${p}.attention.v_lin`, H, H);
    lin(`${p}.attention.out_lin`, H, H);
    ln(`${p}.sa_layer_norm`);
    lin(`${p}.ffn.lin1`, c.hidden_dim, H);
    lin(`${p}.ffn.lin2`, H, c.hidden_dim);
    ln(`${p}.output_layer_norm`);
  }
  lin('vocab_transform', H, H);
  ln('vocab_layer_norm');
  push('vocab_projector.bias', [c.vocab_size], false);
  if (c.projection_dim !== undefined) {
    specs.push({
      name: `${PROJECTION}.weight`,
      hfShape: [c.projection_dim, H],
      linear: true,
      noDecay: false,
      aux: true,
    });
    specs.push({ name: `${PROJECTION}.bias`, hfShape: [c.projection_dim], linear: false, noDecay: true, aux: true });
  }
  return specs;
}

/**
 * The tied projector: logits = h @ Eᵀ + b for h [N, H], E [V, H] (the word embeddings), b [V]. Its gradients
 * are arranged so that every product keeps its large operand on the left and a small one on the right
 * (the `wasm` backend repacks the right operand on every call): ∂h = g @ E, ∂E = gᵀ @ h, ∂b = 1ᵀ @ g.
 */
export function tiedProjector(h: tf.Tensor2D, embeddings: tf.Tensor2D, bias: tf.Tensor1D): tf.Tensor2D {
  const f = tf.customGrad(((x: tf.Tensor2D, e: tf.Tensor2D, b: tf.Tensor1D, save: tf.GradSaveFunc) => {
    save([x, e]);
    return {
      value: tf.add(tf.matMul(x, e, false, true), b),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, es] = saved as [tf.Tensor2D, tf.Tensor2D];
        const g = dy as tf.Tensor2D; // [N, V]
        const n = g.shape[0];
        return [
          tf.matMul(g, es), // [N, H]
          tf.matMul(g, xs, true, false), // [V, H]
          tf.reshape(tf.matMul(tf.ones([1, n]), g), [g.shape[1]]), // [V]
        ];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(h, embeddings, bias) as tf.Tensor2D;
}

/** GELU, erf form (BERT's "gelu"): student/ops/gelu.ts. */
export { gelu } from './ops/gelu.js';

/**
 * LayerNorm over the last axis (student/ops/layer-norm.ts:
 * one kernel each way on webgpu, wasm and cpu; tfjs ops on tensorflow).
 */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps = LAYER_NORM_EPS): tf.Tensor {
  return layerNormKernel(x, gamma, beta, eps);
}

export interface ForwardOptions {
  /** Dropout on (training) or off (evaluation, golden tests). */
  training: boolean;
  /** Seed for this forward pass's dropout masks (each dropout call derives its own from it). */
  dropoutSeed?: number;
}

/** What one layer's self-attention computed (encodeWithInternals). */
export interface LayerInternals {
  /**
   * q·kᵀ/√d_head + the mask's bias, before the softmax: [B, heads, T, T], made when called (inside the caller's tidy).
   */
  scores: () => tf.Tensor4D;
  /** The query, key and value projections (bias added, before the split into heads): [B·T, dim]. */
  query: tf.Tensor2D;
  key: tf.Tensor2D;
  value: tf.Tensor2D;
}

export interface StudentOutput {
  /** [B, T, V] */
  logits: tf.Tensor3D;
  /** Embedding output, then each layer's output: n_layers + 1 tensors [B, T, H]. */
  hiddenStates: tf.Tensor3D[];
}

let studentCounter = 0;

/** The Hugging Face name of a student variable (tfjs names are `studentN/<hf name>`). */
export function hfNameOfVariable(variableName: string): string {
  return variableName.slice(variableName.indexOf('/') + 1);
}

/** Rows [first, first + rows) of a padded batch. */
export interface RowBlock {
  first: number;
  rows: number;
}

/**
 * The blocks of rows of a batch to encode at once outside training (validation, probe features): at most
 * `rowsTimesT2` (rows × T²) attention scores per head. A tidy keeps every layer's activations until it ends: 16
 * sequences of 512 tokens held ~3 GiB of them at bert-base's shape, more than the wasm backend's 4 GiB leave beside a
 * model's weights (and a training run's moments). Rows are encoded independently, so the split changes no result
 * beyond a product's rounding. The default 2^19 keeps 32 rows of 128 tokens in one piece; 2 rows at 512, 8 at 256.
 */
export function rowBlocks(batchSize: number, seqLen: number, rowsTimesT2 = 1 << 19): RowBlock[] {
  const step = Math.max(1, Math.floor(rowsTimesT2 / (seqLen * seqLen)));
  const blocks: RowBlock[] = [];
  for (let first = 0; first < batchSize; first += step) blocks.push({ first, rows: Math.min(step, batchSize - first) });
  return blocks;
}

/**
 * The last hidden states of one block of a padded batch (ids and mask [B·T], row-major), without dropout:
 * [rows, T, H]. The tensors it makes are the caller's to tidy.
 */
export function lastHiddenOfRows(
  student: DistilBertStudent,
  ids: Int32Array,
  mask: Int32Array,
  seqLen: number,
  { first, rows }: RowBlock,
): tf.Tensor {
  const part = (x: Int32Array): tf.Tensor2D =>
    tf.tensor2d(x.subarray(first * seqLen, (first + rows) * seqLen), [rows, seqLen], 'int32'); // [rows, T]
  const states = student.encode(part(ids), part(mask), { training: false });
  return states[states.length - 1]!;
}

export class DistilBertStudent {
  readonly config: StudentConfig;
  readonly specs: ParamSpec[];
  /** tf.Variables by Hugging Face name (linear weights transposed, see the top of this file). */
  readonly params: Map<string, tf.Variable>;

  private constructor(config: StudentConfig, params: Map<string, tf.Variable>) {
    this.config = config;
    this.specs = studentParamSpecs(config);
    this.params = params;
  }

  /** Build from weights in transformers' layout (name → values of hfShape). */
  static fromHfWeights(
    config: StudentConfig,
    weights: (name: string, hfShape: number[]) => Float32Array,
  ): DistilBertStudent {
    const params = new Map<string, tf.Variable>();
    studentCounter++;
    for (const spec of studentParamSpecs(config)) {
      const values = weights(spec.name, spec.hfShape);
      const expected = spec.hfShape.reduce((a, b) => a * b, 1);
      if (values.length !== expected)
        throw new MismatchError(`parameter ${spec.name}: ${values.length} values, expected [${spec.hfShape}]`);
      const [out, inp] = spec.hfShape as [number, number];
      const tensor = spec.linear
        ? tf.tensor2d(transpose2d(values, out, inp), [inp, out])
        : tf.tensor(values, spec.hfShape);
      // tfjs variable names must be unique in the process: prefix the HF name with this student's number.
      params.set(spec.name, tf.variable(tensor, true, `student${studentCounter}/${spec.name}`));
      tensor.dispose();
    }
    return new DistilBertStudent(config, params);
  }

  /** Current weights in transformers' layout, for saving (reads every variable back to the host). */
  hfWeights(): Map<string, { data: Float32Array; shape: number[] }> {
    const out = new Map<string, { data: Float32Array; shape: number[] }>();
    for (const spec of this.specs) {
      const v = this.params.get(spec.name)!;
      const data = v.dataSync() as Float32Array;
      const [outDim, inDim] = spec.hfShape as [number, number];
      out.set(spec.name, {
        data: spec.linear ? transpose2d(data, inDim, outDim) : Float32Array.from(data),
        shape: spec.hfShape,
      });
    }
    return out;
  }

  /** The trainable variables in a fixed order (the order of `specs`). */
  variables(): tf.Variable[] {
    return this.specs.map((s) => this.params.get(s.name)!);
  }

  parameterCount(): number {
    return this.specs.reduce((n, s) => n + s.hfShape.reduce((a, b) => a * b, 1), 0);
  }

  private p(name: string): tf.Variable {
    const v = this.params.get(name);
    if (!v) throw new MismatchError(`student has no parameter ${name}`);
    return v;
  }

  private linear(x: tf.Tensor2D, name: string): tf.Tensor2D {
    return tf.add(this.product(x, name), this.p(`${name}.bias`));
  }

  /** x @ W of the linear layer `name`, its bias not added: [N, in] → [N, out]. */
  private product(x: tf.Tensor2D, name: string): tf.Tensor2D {
    return tf.matMul(x, this.p(`${name}.weight`) as tf.Tensor2D);
  }

  /**
   * Embeddings and transformer layers. `inputIds` and `attentionMask` are int32 [B, T].
   * Returns the hidden states (n_layers + 1, each [B, T, H]).
   */
  encode(inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, options: ForwardOptions): tf.Tensor3D[] {
    return this.encodeWithInternals(inputIds, attentionMask, options).hiddenStates;
  }

  /**
   * encode(), also returning what the intermediate-layer losses read of each layer: the attention scores
   * before the softmax (mask added, dropout not applied) and the query/key/value projections.
   */
  encodeWithInternals(
    inputIds: tf.Tensor2D,
    attentionMask: tf.Tensor2D,
    options: ForwardOptions,
  ): { hiddenStates: tf.Tensor3D[]; layers: LayerInternals[] } {
    const c = this.config;
    const [B, T] = inputIds.shape;
    if (attentionMask.shape[0] !== B || attentionMask.shape[1] !== T) {
      throw new ShapeError(`attention_mask is [${attentionMask.shape}], input_ids is [${inputIds.shape}]`);
    }
    if (T > c.max_position_embeddings) {
      throw new ShapeError(`sequence length ${T} exceeds the student's ${c.max_position_embeddings} positions`);
    }
    const H = c.dim;
    const nh = c.n_heads;
    const dh = H / nh;
    let seed = options.dropoutSeed ?? 0;
    const dropout = (x: tf.Tensor, rate: number): tf.Tensor =>
      options.training && rate > 0 ? dropoutKernel(x, rate, seed++) : x;

    // Embeddings.
    // [B*T, H]
    const words = tf.gather(this.p('distilbert.embeddings.word_embeddings.weight'), tf.reshape(inputIds, [B * T]));
    const positions = tf.slice(this.p('distilbert.embeddings.position_embeddings.weight'), [0, 0], [T, H]); // [T, H]
    let x = tf.reshape(tf.add(tf.reshape(words, [B, T, H]), positions), [B * T, H]) as tf.Tensor2D; // [B*T, H]
    x = layerNorm(
      x,
      this.p('distilbert.embeddings.LayerNorm.weight'),
      this.p('distilbert.embeddings.LayerNorm.bias'),
    ) as tf.Tensor2D;
    x = dropout(x, c.dropout) as tf.Tensor2D;
    const hidden: tf.Tensor3D[] = [tf.reshape(x, [B, T, H])];

    // Additive attention mask: 0 for real keys, -1e9 for padding: softmax gives padding exactly 0,
    // as transformers' masked_fill with the dtype's minimum does.
    // [B, 1, 1, T]
    const maskBias = tf.reshape(tf.mul(tf.sub(1, tf.cast(attentionMask, 'float32')), -1e9), [B, 1, 1, T]);
    const heads = (t: tf.Tensor2D): tf.Tensor3D =>
      tf.reshape(tf.transpose(tf.reshape(t, [B, T, nh, dh]), [0, 2, 1, 3]), [B * nh, T, dh]);

    const layers: LayerInternals[] = [];
    for (let i = 0; i < c.n_layers; i++) {
      const p = `distilbert.transformer.layer.${i}`;
      const query = this.linear(x, `${p}.attention.q_lin`); // [B*T, H]
      const key = this.linear(x, `${p}.attention.k_lin`);
      const value = this.linear(x, `${p}.attention.v_lin`);
      const q = heads(tf.mul(query, 1 / Math.sqrt(dh)) as tf.Tensor2D); // [B*nh, T, dh]
      const k = heads(key);
      const v = heads(value);
      // Batched products (B·nh of them): the kernel behind tf.matMul runs each one fast (student/kernels/products.ts).
      const qk = tf.matMul(q, k, false, true); // [B*nh, T, T]
      const qk4 = tf.reshape(qk, [B, nh, T, T]) as tf.Tensor4D; // [B, nh, T, T]
      // The scores with the mask's bias are made only if a loss reads them: the softmax adds the bias itself.
      layers.push({ scores: () => tf.add(qk4, maskBias) as tf.Tensor4D, query, key, value });
      const probs = dropout(maskedSoftmax(qk4, maskBias as tf.Tensor4D), c.attention_dropout); // [B, nh, T, T]
      const context = tf.matMul(tf.reshape(probs, [B * nh, T, T]) as tf.Tensor3D, v); // [B*nh, T, dh]
      const merged = tf.reshape(tf.transpose(tf.reshape(context, [B, nh, T, dh]), [0, 2, 1, 3]), [
        B * T,
        H,
      ]) as tf.Tensor2D; // [B*T, H]
      const sa = layerNorm(
        tf.add(this.linear(merged, `${p}.attention.out_lin`), x),
        this.p(`${p}.sa_layer_norm.weight`),
        this.p(`${p}.sa_layer_norm.bias`),
      ) as tf.Tensor2D;
      // [B*T, F]
      const inner = biasGelu(this.product(sa, `${p}.ffn.lin1`), this.p(`${p}.ffn.lin1.bias`) as tf.Tensor1D);
      const ffn = dropout(this.linear(inner, `${p}.ffn.lin2`), c.dropout);
      x = layerNorm(
        tf.add(ffn, sa),
        this.p(`${p}.output_layer_norm.weight`),
        this.p(`${p}.output_layer_norm.bias`),
      ) as tf.Tensor2D;
      hidden.push(tf.reshape(x, [B, T, H]));
    }
    return { hiddenStates: hidden, layers };
  }

  /**
   * Student hidden states [N, dim] → the teacher's width [N, projection_dim] through the learned projection;
   * unchanged when the student has none (the widths match).
   */
  projectHidden(h: tf.Tensor2D): tf.Tensor2D {
    return this.config.projection_dim === undefined ? h : this.linear(h, PROJECTION);
  }

  /** The MLM head before the projector: vocab_transform → GELU → vocab_layer_norm, [N, H] → [N, H]. */
  vocabTransform(h: tf.Tensor2D): tf.Tensor2D {
    return layerNorm(
      biasGelu(this.product(h, 'vocab_transform'), this.p('vocab_transform.bias') as tf.Tensor1D),
      this.p('vocab_layer_norm.weight'),
      this.p('vocab_layer_norm.bias'),
    ) as tf.Tensor2D;
  }

  /** The word embeddings [V, H] and the vocab bias [V]: the tied projector. */
  projector(): { embeddings: tf.Tensor2D; bias: tf.Tensor1D } {
    return {
      embeddings: this.p('distilbert.embeddings.word_embeddings.weight') as tf.Tensor2D,
      bias: this.p('vocab_projector.bias') as tf.Tensor1D,
    };
  }

  /** MLM head on rows of hidden states [N, H] → logits [N, V]. */
  mlmHead(h: tf.Tensor2D): tf.Tensor2D {
    const t = this.vocabTransform(h);
    return tiedProjector(
      t,
      this.p('distilbert.embeddings.word_embeddings.weight') as tf.Tensor2D,
      this.p('vocab_projector.bias') as tf.Tensor1D,
    ); // [N, V]
  }

  forward(inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, options: ForwardOptions): StudentOutput {
    const [B, T] = inputIds.shape;
    const hiddenStates = this.encode(inputIds, attentionMask, options);
    const last = tf.reshape(hiddenStates[hiddenStates.length - 1]!, [B * T, this.config.dim]) as tf.Tensor2D;
    const logits = tf.reshape(this.mlmHead(last), [B, T, this.config.vocab_size]) as tf.Tensor3D;
    return { logits, hiddenStates };
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }
}
